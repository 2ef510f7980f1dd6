"""The bundled sample corpus: original lyrics by six fictional artists, rendered as Genius API
JSON, genius.com song pages in the 2024 layout, and a Spotify Web API catalog.

``source/*.yaml`` is what people edit; ``python -m rap_assets.sample_corpus`` renders the rest,
and a test fails when the rendered files are stale. The embedded default serves these files
through the same Genius and Spotify client code that talks to the real services (see
``rap_assets.sample_corpus.replay``), so the page parser and the matcher run in the demo.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import random
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import yaml

from rap_assets.lyrics import parse_header

ROOT = Path(__file__).resolve().parent
SOURCE_DIR = ROOT / "source"
GENIUS_DIR = ROOT / "genius"
SPOTIFY_DIR = ROOT / "spotify"
WEB_BASE = "https://genius.com"
API_BASE = "https://api.genius.com"

# Per style: ranges the Spotify audio features are drawn from, so the catalog looks like what
# Spotify reports for such music (trap is slow-ish and loud, party rap danceable and happy, ...).
_STYLE_AUDIO: dict[str, dict[str, tuple[float, float]]] = {
    "battle rap": {
        "danceability": (0.55, 0.75),
        "energy": (0.7, 0.9),
        "valence": (0.3, 0.5),
        "tempo": (88, 98),
    },
    "conscious": {
        "danceability": (0.6, 0.75),
        "energy": (0.5, 0.7),
        "valence": (0.35, 0.6),
        "tempo": (84, 96),
    },
    "party": {
        "danceability": (0.78, 0.92),
        "energy": (0.75, 0.95),
        "valence": (0.7, 0.95),
        "tempo": (118, 128),
    },
    "storytelling": {
        "danceability": (0.55, 0.7),
        "energy": (0.45, 0.65),
        "valence": (0.3, 0.55),
        "tempo": (86, 94),
    },
    "trap": {
        "danceability": (0.7, 0.85),
        "energy": (0.6, 0.8),
        "valence": (0.2, 0.45),
        "tempo": (135, 150),
    },
    "introspective": {
        "danceability": (0.45, 0.6),
        "energy": (0.3, 0.5),
        "valence": (0.1, 0.3),
        "tempo": (70, 85),
    },
}


@dataclass
class SongSource:
    song_id: int
    title: str
    album: str
    release_date: date
    pageviews: int
    lyrics: str
    features: list[str] = field(default_factory=list)
    lyrics_state: str = "complete"
    kind: str = "song"
    spotify: dict[str, Any] = field(default_factory=dict)

    @property
    def title_with_featured(self) -> str:
        return self.title


@dataclass
class ArtistSource:
    artist_id: int
    name: str
    style: str
    spotify: dict[str, Any]
    songs: list[SongSource]

    @property
    def slug(self) -> str:
        return slugify(self.name).capitalize()


def slugify(text: str) -> str:
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")


def _stable_id(*parts: object, length: int = 22) -> str:
    """A deterministic base62-looking Spotify id."""
    digest = hashlib.sha256("|".join(map(str, parts)).encode()).digest()
    return (
        base64.b64encode(digest).decode().replace("+", "a").replace("/", "b").rstrip("=")[:length]
    )


def load_sources(source_dir: Path = SOURCE_DIR) -> list[ArtistSource]:
    artists: list[ArtistSource] = []
    for path in sorted(source_dir.glob("*.yaml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        meta = data["artist"]
        songs = [
            SongSource(
                song_id=meta["id"] * 100 + index,
                title=song["title"],
                album=song["album"],
                release_date=song["release_date"],
                pageviews=song["pageviews"],
                lyrics=song.get("lyrics", ""),
                features=song.get("features", []),
                lyrics_state=song.get("lyrics_state", "complete"),
                kind=song.get("kind", "song"),
                spotify=song.get("spotify", {}),
            )
            for index, song in enumerate(data["songs"], start=1)
        ]
        artists.append(
            ArtistSource(meta["id"], meta["name"], meta["style"], meta["spotify"], songs)
        )
    return artists


# --- Genius ---------------------------------------------------------------------------------


def _song_path(artist: ArtistSource, song: SongSource) -> str:
    return f"/{artist.slug}-{slugify(song.title)}-lyrics"


def _artist_json(artist: ArtistSource) -> dict[str, Any]:
    return {
        "api_path": f"/artists/{artist.artist_id}",
        "header_image_url": f"https://images.genius.com/sample/{artist.artist_id}-header.jpg",
        "id": artist.artist_id,
        "image_url": f"https://images.genius.com/sample/{artist.artist_id}.jpg",
        "is_meme_verified": False,
        "is_verified": True,
        "name": artist.name,
        "url": f"{WEB_BASE}/artists/{artist.slug}",
    }


def _song_summary(
    artist: ArtistSource, song: SongSource, by_name: dict[str, ArtistSource]
) -> dict[str, Any]:
    featured = " (Ft. " + " & ".join(song.features) + ")" if song.features else ""
    title = song.title if "(Ft." in song.title else song.title + featured
    path = _song_path(artist, song)
    return {
        "annotation_count": song.pageviews % 7,
        "api_path": f"/songs/{song.song_id}",
        "full_title": f"{title} by\u00a0{artist.name}",
        "header_image_thumbnail_url": f"https://images.genius.com/sample/{song.song_id}.300x300x1.jpg",
        "header_image_url": f"https://images.genius.com/sample/{song.song_id}.1000x1000x1.jpg",
        "id": song.song_id,
        "lyrics_owner_id": artist.artist_id,
        "lyrics_state": song.lyrics_state,
        "path": path,
        "pyongs_count": None,
        "song_art_image_thumbnail_url": f"https://images.genius.com/sample/{song.song_id}.300x300x1.jpg",
        "song_art_image_url": f"https://images.genius.com/sample/{song.song_id}.1000x1000x1.jpg",
        "stats": {"unreviewed_annotations": 0, "hot": False, "pageviews": song.pageviews},
        "title": song.title.split(" (Ft.")[0],
        "title_with_featured": title,
        "url": f"{WEB_BASE}{path}",
        "primary_artist": _artist_json(artist),
    }


def _song_full(
    artist: ArtistSource, song: SongSource, by_name: dict[str, ArtistSource]
) -> dict[str, Any]:
    summary = _song_summary(artist, song, by_name)
    album_id = int(hashlib.sha256(song.album.encode()).hexdigest()[:6], 16)
    summary.update(
        {
            "album": {
                "api_path": f"/albums/{album_id}",
                "full_title": f"{song.album} by {artist.name}",
                "id": album_id,
                "name": song.album,
                "url": f"{WEB_BASE}/albums/{artist.slug}/{slugify(song.album)}",
                "artist": _artist_json(artist),
            },
            "release_date": song.release_date.isoformat(),
            "release_date_for_display": song.release_date.strftime("%B %-d, %Y"),
            "featured_artists": [_artist_json(by_name[name]) for name in song.features],
            "instrumental": song.kind == "instrumental",
            "description": {"plain": f"A {artist.style} track from {song.album}."},
            "media": [],
        }
    )
    return summary


def _line_html(line: str, index: int, song: SongSource) -> str:
    text = html.escape(line, quote=False)
    # Genius wraps annotated lines in referent links; italics mark ad-libs. Both must survive
    # parsing as plain text, so the sample uses them the way real pages do.
    if index % 3 == 1:
        return (
            f'<a href="/{song.song_id}{index}/annotation" class="ReferentFragmentdesktop__ClickTarget-sc-110r0d9-0">'
            f'<span class="ReferentFragmentdesktop__Highlight-sc-110r0d9-1">{text}</span></a>'
            '<span tabindex="0" style="position:absolute;opacity:0"></span>'
        )
    if index % 5 == 4 and " " in text:
        head, _, tail = text.rpartition(" ")
        return f"{head} <i>{tail}</i>"
    return text


def render_song_page(artist: ArtistSource, song: SongSource) -> str:
    """A genius.com song page in the 2024 layout: a LyricsHeader, several lyrics containers with
    an ad slot between them, a "You might also like" aside and an Embed footer."""
    title = html.escape(song.title)
    head = (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"/>'
        f"<title>{html.escape(artist.name)} – {title} Lyrics | Genius Lyrics</title>"
        f'<meta content="{html.escape(artist.name)} – {title}" property="og:title"/>'
        "</head><body><main>"
    )
    header = (
        '<div class="LyricsHeader__Container-ejidji-1 hbjTyd">'
        '<button class="ContributorsCreditSong__Container-sc-12hq27v-0"><span>'
        f"{2 + song.pageviews % 11} Contributors</span></button>"
        '<div class="LyricsHeader__TranslationsContainer-ejidji-6"><span>Translations</span></div>'
        f'<h2 class="LyricsHeader__Title-ejidji-0">{title} Lyrics</h2></div>'
    )
    footer = (
        '<div class="RightSidebar__Container-pajcl2-0"><aside><div>You might also like</div>'
        f'<a class="RecommendedSong__Container-ntae2r-0" href="{WEB_BASE}/sample">Another Song</a>'
        '</aside></div><div class="LyricsFooter__Container-iqbcge-0"><button>Embed</button></div>'
    )
    if song.kind == "instrumental":
        body = (
            '<div class="LyricsPlaceholder__Container-uen8er-1"><div class="LyricsPlaceholder__Message-uen8er-3">'
            "This song is an instrumental</div></div>"
        )
        return head + '<div id="lyrics-root">' + header + body + "</div></main></body></html>"
    if song.lyrics_state != "complete":
        body = (
            '<div class="LyricsPlaceholder__Container-uen8er-1"><div class="LyricsPlaceholder__Message-uen8er-3">'
            "Lyrics for this song have yet to be released. Please check back once the song has been released.</div></div>"
        )
        return head + '<div id="lyrics-root">' + header + body + "</div></main></body></html>"

    lines = song.lyrics.strip("\n").split("\n")
    rendered = [
        _line_html(line, i, song) if not parse_header(line) else html.escape(line)
        for i, line in enumerate(lines)
    ]
    # Split into containers at the second stanza break, as Genius splits around ad slots.
    breaks = [i for i, line in enumerate(lines) if line == ""]
    cut = breaks[1] if len(breaks) > 1 else len(lines)
    chunks = [rendered[:cut], rendered[cut:]] if cut < len(lines) else [rendered]
    ad = (
        '<div data-exclude-from-selection="true" class="InreadContainer__Container-sc-19040w5-0">'
        '<div class="DfpAd__Container-sc-1tnbv7f-0"><div id="div-gpt-ad-inread"></div></div></div>'
    )
    containers = ad.join(
        '<div data-lyrics-container="true" class="Lyrics__Container-sc-1ynbvzw-1 kUgSbL">'
        + "<br/>".join(chunk)
        + "</div>"
        for chunk in chunks
    )
    return (
        head
        + '<div id="lyrics-root">'
        + header
        + containers
        + footer
        + "</div></main></body></html>"
    )


# --- Spotify --------------------------------------------------------------------------------


def _spotify_artist(artist: ArtistSource) -> dict[str, Any]:
    spotify_id = _stable_id("artist", artist.artist_id)
    return {
        "external_urls": {"spotify": f"https://open.spotify.com/artist/{spotify_id}"},
        "followers": {"href": None, "total": artist.spotify["followers"]},
        "genres": artist.spotify["genres"],
        "href": f"https://api.spotify.com/v1/artists/{spotify_id}",
        "id": spotify_id,
        "images": [],
        "name": artist.name,
        "popularity": artist.spotify["popularity"],
        "type": "artist",
        "uri": f"spotify:artist:{spotify_id}",
    }


def _artist_ref(artist: dict[str, Any]) -> dict[str, Any]:
    return {k: artist[k] for k in ("external_urls", "href", "id", "name", "type", "uri")}


def _track(
    artist: ArtistSource,
    song: SongSource,
    name: str,
    artist_refs: list[dict[str, Any]],
    rng: random.Random,
    *,
    version: str = "original",
) -> dict[str, Any]:
    track_id = _stable_id("track", song.song_id, version)
    album_id = _stable_id("album", artist.artist_id, song.album, version)
    duration = int(rng.uniform(150_000, 245_000))
    popularity = int(song.spotify.get("popularity", 40))
    if version != "original":
        popularity = max(5, popularity - rng.randint(10, 30))
    isrc = f"QZ{artist.artist_id % 100:02d}{song.release_date.year % 100:02d}{song.song_id % 100000:05d}"
    return {
        "album": {
            "album_type": "album" if version == "original" else "single",
            "artists": artist_refs[:1],
            "id": album_id,
            "name": song.album if version == "original" else f"{name} ({version.title()})",
            "release_date": song.release_date.isoformat(),
            "release_date_precision": "day",
            "type": "album",
            "uri": f"spotify:album:{album_id}",
        },
        "artists": artist_refs,
        "disc_number": 1,
        "duration_ms": duration,
        "explicit": bool(song.spotify.get("explicit", False)),
        "external_ids": {"isrc": isrc + ("" if version == "original" else version[:1].upper())},
        "external_urls": {"spotify": f"https://open.spotify.com/track/{track_id}"},
        "href": f"https://api.spotify.com/v1/tracks/{track_id}",
        "id": track_id,
        "is_local": False,
        "name": name,
        "popularity": popularity,
        "track_number": 1,
        "type": "track",
        "uri": f"spotify:track:{track_id}",
    }


def _audio_features(track: dict[str, Any], style: str, rng: random.Random) -> dict[str, Any]:
    ranges = _STYLE_AUDIO[style]
    features: dict[str, Any] = {
        key: round(rng.uniform(*bounds), 3) for key, bounds in ranges.items()
    }
    features.update(
        {
            "acousticness": round(rng.uniform(0.01, 0.3), 4),
            "instrumentalness": round(rng.uniform(0.0, 0.02), 5),
            "key": rng.randint(0, 11),
            "liveness": round(rng.uniform(0.05, 0.35), 3),
            "loudness": round(rng.uniform(-9.0, -4.0), 3),
            "mode": rng.randint(0, 1),
            "speechiness": round(rng.uniform(0.15, 0.45), 3),
            "time_signature": 4,
            "duration_ms": track["duration_ms"],
            "id": track["id"],
            "type": "audio_features",
            "uri": track["uri"],
            "track_href": track["href"],
        }
    )
    return features


def _plain_title(title: str) -> str:
    return title.split(" (Ft.")[0]


def build_spotify(artists: list[ArtistSource]) -> dict[str, Any]:
    by_name = {a.name: a for a in artists}
    artist_objs = {a.name: _spotify_artist(a) for a in artists}
    tracks: list[dict[str, Any]] = []
    features: dict[str, Any] = {}
    for artist in artists:
        for song in artist.songs:
            if song.kind not in ("song", "variant") or song.lyrics_state != "complete":
                continue
            rng = random.Random(song.song_id)
            refs = [_artist_ref(artist_objs[artist.name])] + [
                _artist_ref(artist_objs[by_name[f].name]) for f in song.features
            ]
            name = _plain_title(song.title)
            if song.features:
                name += " (feat. " + ", ".join(song.features) + ")"
            track = _track(artist, song, name, refs, rng)
            tracks.append(track)
            features[track["id"]] = _audio_features(track, artist.style, rng)
            # Decoys: the versions a naive matcher would pick by mistake.
            if song.kind == "song" and song.song_id % 3 == 0:
                live = _track(artist, song, f"{name} - Live", refs, rng, version="live")
                tracks.append(live)
                features[live["id"]] = _audio_features(live, artist.style, rng)
            if song.kind == "song" and song.song_id % 4 == 0:
                sped = _track(artist, song, f"{name} - Sped Up", refs, rng, version="sped up")
                tracks.append(sped)
                features[sped["id"]] = _audio_features(sped, artist.style, rng)
    return {
        "artists": sorted(artist_objs.values(), key=lambda a: a["id"]),
        "tracks": sorted(tracks, key=lambda t: t["id"]),
        "audio_features": [features[k] for k in sorted(features)],
    }


# --- rendering ------------------------------------------------------------------------------


def render(artists: list[ArtistSource]) -> dict[Path, str]:
    """Every generated file, path relative to this package directory, and its text."""
    by_name = {a.name: a for a in artists}
    files: dict[Path, str] = {}

    def dump(obj: Any) -> str:
        return json.dumps(obj, indent=1, ensure_ascii=False, sort_keys=True) + "\n"

    files[Path("genius/artists.json")] = dump([_artist_json(a) for a in artists])
    for artist in artists:
        summaries = [_song_summary(artist, s, by_name) for s in artist.songs]
        files[Path(f"genius/artist_songs/{artist.artist_id}.json")] = dump(summaries)
        for song in artist.songs:
            files[Path(f"genius/songs/{song.song_id}.json")] = dump(
                _song_full(artist, song, by_name)
            )
            page = render_song_page(artist, song)
            files[Path(f"genius/pages{_song_path(artist, song)}.html")] = page + "\n"
    spotify = build_spotify(artists)
    for name, value in spotify.items():
        files[Path(f"spotify/{name}.json")] = dump(value)
    return files


def build(root: Path = ROOT) -> list[Path]:
    """Render the corpus under ``root``; return the paths written."""
    written = []
    for rel, text in render(load_sources()).items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def watchlist_names() -> list[str]:
    return [a.name for a in load_sources()]
