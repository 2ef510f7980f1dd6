"""A deterministic synthetic catalogue at production scale, for benchmarks/search.py and the
tests of search at scale.

Each track is a few sections of lines recombined from the sample corpus's own lyrics (so the
vocabulary, line lengths and topic mix are realistic), under a generated title and one of 600
generated artists, with release years, explicit flags, moods and quality scores spread as in
the sample. The same ``seed`` and ``n`` give the same catalogue on every machine.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from functools import cache
from importlib import resources
from typing import Any

import psycopg
import yaml

from rap_assets.analysis import Mood
from rap_assets.embeddings import Embedder, chunk_sections
from rap_assets.lyrics import Section
from rap_assets.metadata import Timer
from rap_assets.search import SongVectors, load_embeddings
from rap_assets.warehouse import Warehouse

ARTISTS = 600
SONG_ID_BASE = 90_000_000
ARTIST_ID_BASE = 9_000_000


@dataclass(frozen=True)
class SyntheticTrack:
    song_id: int
    artist_id: int
    artist: str
    title: str
    year: int
    explicit: bool
    mood: str
    quality: float
    sections: tuple[tuple[str, tuple[str, ...]], ...]  # (header, lines)

    @property
    def text(self) -> str:
        return "\n\n".join(f"[{header}]\n" + "\n".join(lines) for header, lines in self.sections)


@cache
def _sample_songs() -> tuple[tuple[str, ...], ...]:
    """Each sample song's lyric lines (headers and short ad-libs left out)."""
    songs: list[tuple[str, ...]] = []
    source = resources.files("rap_assets.sample_corpus").joinpath("source")
    for path in sorted(source.iterdir(), key=lambda p: p.name):
        if not path.name.endswith(".yaml"):
            continue
        for song in yaml.safe_load(path.read_text())["songs"]:
            lines = [
                line.strip()
                for line in (song.get("lyrics") or "").splitlines()
                if line.strip() and not line.startswith("[") and len(line) > 20
            ]
            if lines:
                songs.append(tuple(dict.fromkeys(lines)))
    return tuple(songs)


@cache
def sample_lines() -> tuple[str, ...]:
    return tuple(dict.fromkeys(line for song in _sample_songs() for line in song))


@cache
def vocabulary() -> tuple[str, ...]:
    return tuple(
        sorted(
            {
                w.strip(",.!?\"'").lower()
                for line in sample_lines()
                for w in line.split()
                if len(w) > 3
            }
        )
    )


# Where a track's lines come from. A real song is about something, so most lines come from
# one sample song (its topic) and some from a second; a few are from anywhere. Lines drawn
# uniformly from the whole corpus would average every track towards the same centroid (mean
# pairwise cosine 0.82 against 0.54 between the real sample songs), a crowding no real
# catalogue has and that makes every nearest neighbour a near-tie.
PRIMARY, SECONDARY = 0.8, 0.15
# and a word or two per line swapped for another corpus word, so no two tracks share a line set
WORD_SWAP = 0.35


def _line(rng: random.Random, line: str, words: Sequence[str]) -> str:
    tokens = line.split()
    for _ in range(2):
        if rng.random() < WORD_SWAP:
            tokens[rng.randrange(len(tokens))] = rng.choice(words)
    return " ".join(tokens)


def _draw(rng: random.Random, sources: Sequence[Sequence[str]], words: Sequence[str]) -> str:
    primary, secondary, anywhere = sources
    roll = rng.random()
    pool = primary if roll < PRIMARY else secondary if roll < PRIMARY + SECONDARY else anywhere
    return _line(rng, rng.choice(pool), words)


def tracks(n: int, seed: int = 57_718) -> Iterator[SyntheticTrack]:
    rng = random.Random(seed)
    songs, lines, words = _sample_songs(), sample_lines(), vocabulary()
    moods = [m.value for m in Mood]
    for i in range(n):
        artist = i % ARTISTS
        sources = (rng.choice(songs), rng.choice(songs), lines)
        sections = []
        for header in ("Verse 1", "Chorus", "Verse 2", "Bridge")[: rng.randint(2, 4)]:
            count = 4 if header == "Chorus" else rng.randint(6, 12)
            drawn = (_draw(rng, sources, words) for _ in range(count))
            sections.append((header, tuple(drawn)))
        yield SyntheticTrack(
            song_id=SONG_ID_BASE + i,
            artist_id=ARTIST_ID_BASE + artist,
            artist=f"Synthetic Artist {artist:03d}",
            title=" ".join(rng.sample(words, rng.randint(1, 3))).title(),
            year=rng.randint(1988, 2026),
            explicit=rng.random() < 0.55,
            mood=rng.choice(moods),
            quality=round(rng.uniform(2.0, 9.5), 2),
            sections=tuple(sections),
        )


def load(
    warehouse: Warehouse,
    catalogue: Sequence[SyntheticTrack],
    embedder: Embedder,
    batch_size: int = 2_000,
) -> dict[str, float]:
    """Load ``catalogue`` as the pipeline would have stored it (songs, lyrics, sections,
    Spotify matches, analyses) and embed it, every table by binary COPY, one transaction per
    batch. Returns seconds per phase and the number of section vectors."""
    timer = Timer()
    sections_loaded = 0
    with warehouse.connection() as conn:
        conn.cursor().executemany(
            "INSERT INTO artists (artist_id, partition_key, name) VALUES (%s, %s, %s) "
            "ON CONFLICT (artist_id) DO NOTHING",
            sorted({(t.artist_id, f"synthetic-{t.artist_id}", t.artist) for t in catalogue}),
        )
    for start in range(0, len(catalogue), batch_size):
        batch = catalogue[start : start + batch_size]
        with timer.phase("load_catalogue"), warehouse.connection() as conn:
            _copy_catalogue(conn, batch)
        chunks = {
            t.song_id: chunk_sections(
                t.title, [Section(h, [], list(lines)) for h, lines in t.sections]
            )
            for t in batch
        }
        with timer.phase("embed"):
            vectors = embedder.embed([c.text for t in batch for c in chunks[t.song_id]])
        songs, offset = [], 0
        for track in batch:
            n = len(chunks[track.song_id])
            songs.append(
                SongVectors(
                    track.song_id, "synthetic", chunks[track.song_id], vectors[offset : offset + n]
                )
            )
            offset += n
        with timer.phase("load_vectors"), warehouse.connection() as conn:
            sections_loaded += load_embeddings(conn, embedder.name, songs)
    return {**timer.seconds, "section_vectors": sections_loaded}


def _copy_catalogue(conn: psycopg.Connection[Any], batch: Sequence[SyntheticTrack]) -> None:
    def copy(table: str, columns: str, types: list[str], rows: Iterable[tuple[Any, ...]]) -> None:
        with conn.cursor().copy(
            f"COPY {table} ({columns}) FROM STDIN (FORMAT BINARY)"  # fixed names, no input
        ) as writer:
            writer.set_types(types)
            for row in rows:
                writer.write_row(row)

    copy(
        "songs",
        "song_id, artist_id, title, url, path, lyrics_state, release_date, index_hash",
        ["int8", "int8", "text", "text", "text", "text", "date", "text"],
        (
            (
                t.song_id,
                t.artist_id,
                t.title,
                f"https://example.invalid/{t.song_id}",
                f"/{t.song_id}",
                "complete",
                date(t.year, 1 + t.song_id % 12, 1 + t.song_id % 28),
                "synthetic",
            )
            for t in batch
        ),
    )
    copy(
        "lyrics",
        "song_id, status, text, content_hash, fetched_lyrics_state, source_url",
        ["int8", "text", "text", "text", "text", "text"],
        ((t.song_id, "lyrics", t.text, "synthetic", "complete", "synthetic") for t in batch),
    )
    copy(
        "lyric_sections",
        "song_id, ordinal, header, lines",
        ["int8", "int4", "text", "text[]"],
        (
            (t.song_id, i, header, list(lines))
            for t in batch
            for i, (header, lines) in enumerate(t.sections)
        ),
    )
    copy(
        "spotify_tracks",
        "song_id, match_status, explicit, input_hash",
        ["int8", "text", "bool", "text"],
        ((t.song_id, "matched", t.explicit, "synthetic") for t in batch),
    )
    copy(
        "analyses",
        "song_id, model, prompt_version, analyzer, content_hash, mood, sentiment, themes, "
        "rhyme, wordplay, flow, storytelling, complexity, quality, explicitness, language, summary",
        ["int8", "text", "text", "text", "text", "text", "float4", "text[]"]
        + ["int2"] * 5
        + ["float4", "text", "text", "text"],
        (
            (
                t.song_id,
                "synthetic",
                "v1",
                "synthetic",
                "synthetic",
                t.mood,
                0.0,
                ["synthetic"],
                5,
                5,
                5,
                5,
                5,
                t.quality,
                "mild",
                "en",
                "",
            )
            for t in batch
        ),
    )
