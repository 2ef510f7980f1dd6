"""The Genius source: an httpx client for the Genius API and genius.com song pages.

With no ``GENIUS_ACCESS_TOKEN`` the same client is pointed at the bundled sample corpus through a
replay transport, so the embedded default runs every line of this module but the socket.
"""

from __future__ import annotations

import logging
import re
import time
import unicodedata
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import date
from typing import Any

import dagster as dg
import httpx
from pydantic import Field

from rap_assets.cache import Cache
from rap_assets.resilience import (
    CircuitBreaker,
    RequestStats,
    RetryPolicy,
    TokenBucket,
    UpstreamError,
    retry_after_seconds,
)

log = logging.getLogger(__name__)
SERVICE = "Genius"
_RETRY_STATUS = {429, 500, 502, 503, 504}
_NON_SONG = re.compile(
    r"\((?:tracklist|track list|album art(?:work)?|liner notes|credits|interview|skit)\)"
    r"|\b(?:tracklist|liner notes|album credits|album art)\b",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class ArtistRef:
    artist_id: int
    name: str
    url: str | None = None
    image_url: str | None = None


@dataclass(frozen=True)
class SongListing:
    """One row of an artist's song index, with the fields from ``/songs/{id}`` once fetched."""

    song_id: int
    artist_id: int
    title: str
    full_title: str
    url: str
    path: str
    lyrics_state: str
    pageviews: int | None = None
    album: str | None = None
    release_date: date | None = None
    featured_artists: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["release_date"] = self.release_date.isoformat() if self.release_date else None
        data["featured_artists"] = list(self.featured_artists)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SongListing:
        release = data.get("release_date")
        return cls(
            **{
                **data,
                "release_date": date.fromisoformat(release) if release else None,
                "featured_artists": tuple(data.get("featured_artists") or ()),
            }
        )


def skip_reason(title: str, lyrics_state: str) -> str | None:
    """Why a listing is not a song to analyse, or None for a song."""
    if lyrics_state != "complete":
        return f"lyrics_state={lyrics_state}"
    match = _NON_SONG.search(title)
    if match:
        return "non-song: " + re.sub(r"[()]", "", match.group(0)).strip().lower()
    return None


def listing_from_api(song: dict[str, Any]) -> SongListing:
    """Map a Genius song object (summary or full) onto a SongListing."""
    try:
        release = song.get("release_date")
        album = song.get("album") or {}
        return SongListing(
            song_id=int(song["id"]),
            artist_id=int(song["primary_artist"]["id"]),
            title=str(song["title"]),
            full_title=str(song.get("full_title") or song["title"]).replace("\u00a0", " "),
            url=str(song["url"]),
            path=str(song["path"]),
            lyrics_state=str(song.get("lyrics_state") or "unknown"),
            pageviews=(song.get("stats") or {}).get("pageviews"),
            album=album.get("name") if isinstance(album, dict) else None,
            release_date=date.fromisoformat(release) if release else None,
            featured_artists=tuple(a["name"] for a in song.get("featured_artists") or ()),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise UpstreamError(
            SERVICE, f"malformed song object ({type(exc).__name__}: {exc})"
        ) from exc


class GeniusClient:
    """Genius API and song pages over httpx, rate-limited, retried and circuit-broken."""

    def __init__(
        self,
        http: httpx.Client,
        *,
        api_base_url: str,
        web_base_url: str,
        limiter: TokenBucket,
        retry: RetryPolicy,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        self.http = http
        self.api_base_url = api_base_url.rstrip("/")
        self.web_base_url = web_base_url.rstrip("/")
        self.limiter = limiter
        self.retry = retry
        self.breaker = breaker
        self.stats = RequestStats()

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> GeniusClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transport -------------------------------------------------------------------------

    def _get(self, url: str, params: dict[str, Any] | None = None) -> httpx.Response:
        last_problem = "no attempt made"
        for attempt in range(self.retry.max_attempts):
            if self.breaker:
                self.breaker.check()
            self.limiter.acquire()
            started = time.perf_counter()
            try:
                response = self.http.get(url, params=params)
            except (httpx.TimeoutException, httpx.TransportError) as exc:
                self.stats.record(type(exc).__name__, (time.perf_counter() - started) * 1000)
                last_problem = f"{type(exc).__name__} on {httpx.URL(url).path}"
                wait = self.retry.backoff(attempt)
            else:
                self.stats.record(str(response.status_code), (time.perf_counter() - started) * 1000)
                if response.status_code not in _RETRY_STATUS:
                    if self.breaker:
                        self.breaker.record_success()
                    return response
                last_problem = f"HTTP {response.status_code} on {response.url.path}"
                hinted = retry_after_seconds(response.headers.get("retry-after"))
                wait = hinted if hinted is not None else self.retry.backoff(attempt)
                wait = min(wait, self.retry.max_delay)
            if self.breaker:
                self.breaker.record_failure()
            if attempt + 1 < self.retry.max_attempts:
                self.stats.record_retry()
                log.info("Genius: %s; retrying in %.2fs", last_problem, wait)
                time.sleep(wait)
        raise UpstreamError(
            SERVICE, f"gave up after {self.retry.max_attempts} attempts: {last_problem}"
        )

    def _api(self, path: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        response = self._get(f"{self.api_base_url}{path}", params)
        if response.status_code in (401, 403):
            raise UpstreamError(
                SERVICE, f"HTTP {response.status_code} on {path}: check GENIUS_ACCESS_TOKEN"
            )
        if response.status_code == 404:
            raise UpstreamError(SERVICE, f"not found: {path}")
        if response.status_code >= 400:
            raise UpstreamError(SERVICE, f"HTTP {response.status_code} on {path}")
        try:
            body = response.json()
            payload = body["response"]
        except (ValueError, KeyError, TypeError) as exc:
            raise UpstreamError(SERVICE, f"malformed JSON response for {path}") from exc
        if not isinstance(payload, dict):
            raise UpstreamError(SERVICE, f"malformed JSON response for {path}")
        return payload

    # -- API -------------------------------------------------------------------------------

    def artist(self, artist_id: int) -> ArtistRef:
        data = self._api(f"/artists/{artist_id}")["artist"]
        return ArtistRef(int(data["id"]), data["name"], data.get("url"), data.get("image_url"))

    def resolve_artist(self, name: str) -> ArtistRef:
        """Find an artist by name through search hits' ``primary_artist``.

        The exact (case- and accent-insensitive) name wins; otherwise the primary artist of the
        most hits. A name that no hit's primary artist carries is an error, not a guess.
        """
        hits = self._api("/search", {"q": name, "per_page": 20}).get("hits", [])
        wanted = fold_name(name)
        counts: dict[int, tuple[int, dict[str, Any]]] = {}
        for hit in hits:
            artist = (hit.get("result") or {}).get("primary_artist")
            if not artist:
                continue
            if fold_name(artist["name"]) == wanted:
                return ArtistRef(
                    int(artist["id"]), artist["name"], artist.get("url"), artist.get("image_url")
                )
            seen, _ = counts.get(int(artist["id"]), (0, artist))
            counts[int(artist["id"])] = (seen + 1, artist)
        raise UpstreamError(SERVICE, f"no artist named {name!r} among {len(hits)} search hits")

    def resolve_artist_slug(self, slug: str) -> ArtistRef:
        """Find an artist by the slug of its genius.com URL (``/artists/Kilo-vance``): the search
        hit whose primary artist's URL ends in that slug; exact, so namesakes cannot collide."""
        slug = slug.strip().strip("/").rsplit("/", 1)[-1]
        hits = self._api("/search", {"q": slug.replace("-", " "), "per_page": 20}).get("hits", [])
        for hit in hits:
            artist = (hit.get("result") or {}).get("primary_artist") or {}
            url = str(artist.get("url") or "")
            if url.lower().rstrip("/").endswith(f"/artists/{slug.lower()}"):
                return ArtistRef(int(artist["id"]), artist["name"], url, artist.get("image_url"))
        raise UpstreamError(
            SERVICE, f"no artist with URL slug {slug!r} among {len(hits)} search hits"
        )

    def artist_songs(
        self, artist_id: int, sort: str = "popularity", per_page: int = 50
    ) -> Iterator[SongListing]:
        """Every song of the artist, following ``next_page`` until Genius says there is none."""
        page: int | None = 1
        while page is not None:
            payload = self._api(
                f"/artists/{artist_id}/songs", {"sort": sort, "per_page": per_page, "page": page}
            )
            songs = payload.get("songs")
            if not isinstance(songs, list):
                raise UpstreamError(
                    SERVICE, f"malformed song list on page {page} of artist {artist_id}"
                )
            for song in songs:
                yield listing_from_api(song)
            next_page = payload.get("next_page")
            if next_page is not None and (not isinstance(next_page, int) or next_page <= page):
                raise UpstreamError(SERVICE, f"malformed next_page {next_page!r} after page {page}")
            page = next_page

    def song(self, song_id: int) -> SongListing:
        return listing_from_api(self._api(f"/songs/{song_id}")["song"])

    def song_page(self, path: str) -> tuple[int, bytes]:
        """The raw song page and its status. A 404 or bot-wall page is returned, not raised:
        the parser decides (and never calls it lyrics)."""
        response = self._get(f"{self.web_base_url}{path}")
        return response.status_code, response.content


def fold_name(text: str) -> str:
    """Case-, accent- and punctuation-insensitive form of a name, for comparing names."""
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", " ", text.lower()).strip()


class GeniusSource(dg.ConfigurableResource):
    """Genius API + genius.com pages. Without an access token it serves the bundled sample
    corpus through the same client (a replay transport instead of the network)."""

    access_token: str | None = Field(
        default=None, description="Genius API token (GENIUS_ACCESS_TOKEN)."
    )
    api_base_url: str = Field(default="https://api.genius.com", description="GENIUS_API_BASE_URL")
    web_base_url: str = Field(default="https://genius.com", description="GENIUS_WEB_BASE_URL")
    requests_per_second: float = Field(
        default=2.0, description="Token-bucket rate, shared by API and pages."
    )
    timeout_seconds: float = Field(default=15.0, description="Per-request timeout.")
    max_attempts: int = Field(default=5, description="Attempts per request before giving up.")
    backoff_base_seconds: float = Field(default=0.5)
    backoff_max_seconds: float = Field(default=30.0)
    circuit_failure_threshold: int = Field(default=8)
    circuit_reset_seconds: float = Field(default=60.0)

    @property
    def uses_sample_corpus(self) -> bool:
        return not self.access_token

    @property
    def mode(self) -> str:
        return "sample corpus (no GENIUS_ACCESS_TOKEN)" if self.uses_sample_corpus else "Genius API"

    def client(self, cache: Cache | None = None) -> GeniusClient:
        headers = {
            "User-Agent": "rap-assets (+https://github.com/rap-assets)",
            "Accept": "application/json",
        }
        transport: httpx.BaseTransport | None = None
        rate = self.requests_per_second
        if self.uses_sample_corpus:
            from rap_assets.sample_corpus.replay import GeniusReplayTransport

            transport = GeniusReplayTransport()
            rate = 1000.0  # nothing remote to be polite to
        else:
            headers["Authorization"] = f"Bearer {self.access_token}"
        http = httpx.Client(
            headers=headers,
            timeout=httpx.Timeout(self.timeout_seconds),
            transport=transport,
            follow_redirects=True,
        )
        breaker = (
            CircuitBreaker(
                cache, SERVICE, self.circuit_failure_threshold, self.circuit_reset_seconds
            )
            if cache is not None
            else None
        )
        return GeniusClient(
            http,
            api_base_url=self.api_base_url,
            web_base_url=self.web_base_url,
            # capacity 1: requests are evenly spaced, never bursty (politeness, not throughput)
            limiter=TokenBucket(rate, capacity=1.0),
            retry=RetryPolicy(
                self.max_attempts, self.backoff_base_seconds, self.backoff_max_seconds
            ),
            breaker=breaker,
        )
