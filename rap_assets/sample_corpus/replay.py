"""Transports that answer Genius and Spotify requests from the bundled sample corpus.

They plug in beneath the real clients (an ``httpx`` transport for Genius, a ``requests`` adapter
for spotipy), so the embedded default exercises the same request, pagination, parsing and
matching code as production; only the bytes come from disk instead of the network.
"""

from __future__ import annotations

import json
import re
import threading
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import requests
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict

from rap_assets.genius import fold_name
from rap_assets.sample_corpus import GENIUS_DIR, SPOTIFY_DIR

_NOT_FOUND_PAGE = (
    "<!DOCTYPE html><html><head><title>Oops! Page not found</title></head>"
    "<body><h1>Page not found</h1><p>Sorry, we couldn't find that page.</p></body></html>"
)


@cache
def _load_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


class GeniusReplayTransport(httpx.BaseTransport):
    """Serves api.genius.com and genius.com from ``sample_corpus/genius``."""

    def __init__(self, root: Path = GENIUS_DIR) -> None:
        self.root = root
        self.requests: list[str] = []
        self._lock = threading.Lock()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        with self._lock:
            self.requests.append(f"{request.method} {request.url.path}")
        path = request.url.path
        params = {k: v for k, v in request.url.params.items()}
        if request.url.host.startswith("api."):
            return self._api(path, params)
        page = self.root / "pages" / (path.strip("/") + ".html")
        if page.is_file():
            return httpx.Response(
                200, content=page.read_bytes(), headers={"content-type": "text/html; charset=utf-8"}
            )
        return httpx.Response(404, text=_NOT_FOUND_PAGE, headers={"content-type": "text/html"})

    def _api(self, path: str, params: dict[str, str]) -> httpx.Response:
        artists = {a["id"]: a for a in _load_json(self.root / "artists.json")}
        if path == "/search":
            query = fold_name(params.get("q", ""))
            hits = []
            for artist_id in sorted(artists):
                for song in _load_json(self.root / "artist_songs" / f"{artist_id}.json"):
                    haystack = fold_name(song["title"] + " " + song["primary_artist"]["name"])
                    if query and all(word in haystack.split() for word in query.split()):
                        hits.append(
                            {"highlights": [], "index": "song", "type": "song", "result": song}
                        )
            per_page = int(params.get("per_page", 10))
            return _api_ok({"hits": hits[:per_page]})
        if match := re.fullmatch(r"/artists/(\d+)", path):
            artist = artists.get(int(match[1]))
            return _api_ok({"artist": artist}) if artist else _api_error(404)
        if match := re.fullmatch(r"/artists/(\d+)/songs", path):
            file = self.root / "artist_songs" / f"{match[1]}.json"
            if not file.is_file():
                return _api_error(404)
            songs = list(_load_json(file))
            if params.get("sort", "title") == "popularity":
                songs.sort(key=lambda s: -s["stats"]["pageviews"])
            else:
                songs.sort(key=lambda s: s["title"].lower())
            per_page = min(int(params.get("per_page", 20)), 50)
            page = int(params.get("page", 1))
            chunk = songs[(page - 1) * per_page : page * per_page]
            next_page = page + 1 if page * per_page < len(songs) else None
            return _api_ok({"songs": chunk, "next_page": next_page})
        if match := re.fullmatch(r"/songs/(\d+)", path):
            file = self.root / "songs" / f"{match[1]}.json"
            return _api_ok({"song": _load_json(file)}) if file.is_file() else _api_error(404)
        return _api_error(404)


def _api_ok(response: dict[str, Any]) -> httpx.Response:
    return httpx.Response(200, json={"meta": {"status": 200}, "response": response})


def _api_error(status: int) -> httpx.Response:
    return httpx.Response(status, json={"meta": {"status": status, "message": "Not found"}})


class SpotifyReplayAdapter(BaseAdapter):
    """A ``requests`` adapter serving the Spotify token endpoint and the Web API calls the
    pipeline makes (search, tracks, artists, audio-features) from ``sample_corpus/spotify``."""

    def __init__(self, root: Path = SPOTIFY_DIR) -> None:
        super().__init__()
        self.root = root
        self.requests: list[str] = []
        self._lock = threading.Lock()

    def close(self) -> None:
        pass

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        url = urlsplit(request.url or "")
        with self._lock:
            self.requests.append(f"{request.method} {url.path}")
        params = {k: v[0] for k, v in parse_qs(url.query).items()}
        if url.path.endswith("/api/token"):
            return _response(
                request,
                200,
                {"access_token": "sample-corpus", "token_type": "Bearer", "expires_in": 3600},
            )
        path = url.path.split("/v1", 1)[-1].rstrip("/")
        tracks = {t["id"]: t for t in _load_json(self.root / "tracks.json")}
        if path == "/search":
            return _response(request, 200, {"tracks": self._search(list(tracks.values()), params)})
        ids = [i for i in params.get("ids", "").split(",") if i]
        if path == "/tracks":
            return _response(request, 200, {"tracks": [tracks.get(i) for i in ids]})
        if path == "/artists":
            artists = {a["id"]: a for a in _load_json(self.root / "artists.json")}
            return _response(request, 200, {"artists": [artists.get(i) for i in ids]})
        if path == "/audio-features":
            features = {f["id"]: f for f in _load_json(self.root / "audio_features.json")}
            return _response(request, 200, {"audio_features": [features.get(i) for i in ids]})
        return _response(request, 404, {"error": {"status": 404, "message": "Service not found"}})

    @staticmethod
    def _search(tracks: list[dict[str, Any]], params: dict[str, str]) -> dict[str, Any]:
        query = params.get("q", "")
        fields = dict(re.findall(r'(track|artist):"([^"]*)"', query))
        free = re.sub(r'(track|artist):"[^"]*"', " ", query)

        def matches(track: dict[str, Any]) -> bool:
            name = fold_name(track["name"]).split()
            artists = " ".join(fold_name(a["name"]) for a in track["artists"]).split()
            if "track" in fields and not all(w in name for w in fold_name(fields["track"]).split()):
                return False
            if "artist" in fields and not all(
                w in artists for w in fold_name(fields["artist"]).split()
            ):
                return False
            return all(w in name + artists for w in fold_name(free).split())

        hits = sorted((t for t in tracks if matches(t)), key=lambda t: -t["popularity"])
        limit = int(params.get("limit", 10))
        offset = int(params.get("offset", 0))
        return {
            "items": hits[offset : offset + limit],
            "limit": limit,
            "offset": offset,
            "total": len(hits),
            "next": None,
            "previous": None,
        }


def _response(request: requests.PreparedRequest, status: int, body: Any) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response._content = json.dumps(body).encode()
    response.headers = CaseInsensitiveDict({"Content-Type": "application/json"})
    response.url = request.url or ""
    response.request = request
    response.encoding = "utf-8"
    return response
