"""The Spotify source: spotipy with client credentials, matching, batch calls, and graceful
handling of endpoints the app may not read. Without credentials it reads the bundled sample
catalog through a replay adapter beneath spotipy."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any

import dagster as dg
import requests
import spotipy
from pydantic import Field
from requests.adapters import HTTPAdapter
from spotipy.cache_handler import MemoryCacheHandler
from spotipy.oauth2 import SpotifyClientCredentials
from urllib3.util.retry import Retry

from rap_assets.matching import MatchResult, SongToMatch, best_match
from rap_assets.resilience import UpstreamError

log = logging.getLogger(__name__)
SERVICE = "Spotify"

# spotipy logs request headers at DEBUG: the Basic credentials on token requests and the bearer
# token on API calls. Nothing of ours needs its debug output, so it never emits it.
logging.getLogger("spotipy").setLevel(logging.INFO)


class FeatureUnavailable(Exception):
    """The endpoint answered 403: this app may not read it (e.g. audio-features for apps
    registered after 2024-11-27). Not an error to retry."""


def chunks(items: Sequence[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


class SpotifyClient:
    def __init__(self, sp: spotipy.Spotify, *, search_limit: int = 10) -> None:
        self.sp = sp
        self.search_limit = search_limit
        self.calls: Counter[str] = Counter()

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        for attempt in (1, 2):
            self.calls[what] += 1
            try:
                return fn(*args, **kwargs)
            except spotipy.SpotifyException as exc:
                if exc.http_status == 401 and attempt == 1:
                    # the token expired server-side before its stated expiry: fetch a new one
                    self._forget_token()
                    continue
                if exc.http_status == 403:
                    raise FeatureUnavailable(what) from None
                raise UpstreamError(SERVICE, f"HTTP {exc.http_status} on {what}") from None
            except requests.RequestException as exc:
                raise UpstreamError(SERVICE, f"{type(exc).__name__} on {what}") from None
        raise AssertionError("unreachable")

    def _forget_token(self) -> None:
        manager = self.sp.auth_manager
        if manager is not None and isinstance(manager.cache_handler, MemoryCacheHandler):
            manager.cache_handler.token_info = None

    def search_tracks(self, title: str, artist: str) -> list[dict[str, Any]]:
        """Field-filtered search first; a looser free-text query if that finds nothing."""
        clean_title = title.replace('"', " ")
        clean_artist = artist.replace('"', " ")
        for query in (
            f'track:"{clean_title}" artist:"{clean_artist}"',
            f"{clean_title} {clean_artist}",
        ):
            result = self._call(
                "search", self.sp.search, q=query, type="track", limit=self.search_limit
            )
            items = [t for t in (result or {}).get("tracks", {}).get("items", []) if t]
            if items:
                return items
        return []

    def match(self, song: SongToMatch, threshold: float) -> MatchResult:
        return best_match(song, self.search_tracks(song.title, song.artist), threshold)

    def tracks(self, ids: Sequence[str]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for chunk in chunks(ids, 50):
            out.extend(t for t in self._call("tracks", self.sp.tracks, chunk)["tracks"] if t)
        return out

    def artists(self, ids: Sequence[str]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for chunk in chunks(ids, 50):
            out.extend(a for a in self._call("artists", self.sp.artists, chunk)["artists"] if a)
        return out

    def audio_features(self, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for chunk in chunks(ids, 100):
            for features in self._call("audio-features", self.sp.audio_features, chunk) or []:
                if features:
                    out[features["id"]] = features
        return out


class SpotifySource(dg.ConfigurableResource):
    """Spotify Web API via spotipy (client credentials). Without credentials it serves the
    bundled sample catalog beneath the same spotipy client."""

    client_id: str | None = Field(default=None, description="SPOTIPY_CLIENT_ID")
    client_secret: str | None = Field(default=None, description="SPOTIPY_CLIENT_SECRET")
    api_base_url: str = Field(default="https://api.spotify.com", description="SPOTIFY_API_BASE_URL")
    auth_url: str = Field(
        default="https://accounts.spotify.com/api/token", description="SPOTIFY_AUTH_URL"
    )
    timeout_seconds: float = Field(default=10.0)
    max_retries: int = Field(default=4)
    search_limit: int = Field(
        default=10, description="Search page size; 10 is the development-mode cap."
    )
    match_threshold: float = Field(default=0.75, description="Minimum confidence to store a match.")
    artist_cache_seconds: int = Field(default=3600, description="TTL of cached artist lookups.")

    @property
    def uses_sample_catalog(self) -> bool:
        return not (self.client_id and self.client_secret)

    @property
    def mode(self) -> str:
        return (
            "sample catalog (no SPOTIPY_CLIENT_ID)"
            if self.uses_sample_catalog
            else "Spotify Web API"
        )

    def client(self) -> SpotifyClient:
        session = requests.Session()
        if self.uses_sample_catalog:
            from rap_assets.sample_corpus.replay import SpotifyReplayAdapter

            adapter: requests.adapters.BaseAdapter = SpotifyReplayAdapter()
            client_id, client_secret = "sample-corpus", "sample-corpus"
        else:
            adapter = HTTPAdapter(
                max_retries=Retry(
                    total=self.max_retries,
                    status_forcelist=(429, 500, 502, 503, 504),
                    allowed_methods=frozenset({"GET", "POST"}),
                    backoff_factor=0.5,
                    respect_retry_after_header=True,
                    raise_on_status=False,
                )
            )
            client_id, client_secret = self.client_id or "", self.client_secret or ""
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        auth = SpotifyClientCredentials(
            client_id=client_id,
            client_secret=client_secret,
            requests_session=session,
            requests_timeout=self.timeout_seconds,
            # spotipy's default cache handler writes the token to ./.cache
            cache_handler=MemoryCacheHandler(),
        )
        auth.OAUTH_TOKEN_URL = self.auth_url
        sp = spotipy.Spotify(
            auth_manager=auth,
            requests_session=session,
            requests_timeout=self.timeout_seconds,
            retries=0,
        )
        sp.prefix = self.api_base_url.rstrip("/") + "/v1/"
        return SpotifyClient(sp, search_limit=self.search_limit)
