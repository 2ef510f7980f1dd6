"""The asset graph.

Per artist partition: song index -> lyrics -> Spotify tracks -> lyric features -> analyses ->
embeddings. Over all artists: the search index and the evaluation metrics.

Every asset diffs its inputs against the warehouse (content hashes, source ids), so an unchanged
partition writes nothing and calls no remote source; writes are idempotent upserts in batches
that each commit on their own, so a rerun after a crash converges without duplicates.
"""

import json
import time
from collections import Counter
from itertools import islice
from typing import Any, Literal

import dagster as dg
import psycopg
from psycopg.types.json import Jsonb

from rap_assets.analysis import LyricAnalyzer
from rap_assets.automation import artist_partitions, watchlist_entry
from rap_assets.cache import Cache
from rap_assets.embeddings import (
    STATIC_MODEL_NAME,
    TextEmbedder,
    chunk_sections,
    distill_static_model,
    static_model_dir,
    static_model_ready,
)
from rap_assets.evaluation import (
    EvaluationSettings,
    evaluate,
    load_dataset,
    load_model,
    load_unlabelled,
    persist_evaluation,
    predict,
    save_model,
)
from rap_assets.features import FEATURE_VERSION, STORED_COLUMNS, LyricFeatures, compute_features
from rap_assets.genius import ArtistRef, GeniusClient, GeniusSource, SongListing, skip_reason
from rap_assets.llm import Outcome, SongForAnalysis
from rap_assets.lyrics import Section, UnreadablePage, parse_lyrics_html
from rap_assets.matching import SongToMatch, fold
from rap_assets.metadata import Timer, breakdown, markdown_table, percentile, stage_metadata
from rap_assets.resilience import CircuitOpenError, UpstreamError
from rap_assets.search import (
    HNSW_EF_CONSTRUCTION,
    HNSW_M,
    MAINTENANCE_WORK_MEM,
    SongVectors,
    build_search_index,
    load_embeddings,
)
from rap_assets.spotify import FeatureUnavailable, SpotifyClient, SpotifySource
from rap_assets.warehouse import Warehouse, batched, content_hash

BATCH = 25  # rows per transaction for stages that call remote services


class RefreshConfig(dg.Config):
    full_refresh: bool = False
    """Ignore what the warehouse already holds and fetch or compute everything again."""


class LyricsConfig(RefreshConfig):
    batch_size: int = 10
    """Songs per transaction. At the default 2 requests/s a batch commits every ~5 s, so a crash
    loses little, and a rerun fetches only what was not committed."""


class SongIndexConfig(RefreshConfig):
    sort: Literal["popularity", "title"] = "popularity"
    max_songs: int | None = None
    """Cap on the songs listed per artist (Genius lists thousands for prolific artists)."""
    listing_ttl_seconds: int = 3600
    """How long an artist's song listing is served from the cache before Genius is asked again."""


# --- helpers --------------------------------------------------------------------------------


def _artist_id(warehouse: Warehouse, partition_key: str) -> int:
    rows = warehouse.fetch_all(
        "SELECT artist_id FROM artists WHERE partition_key = %s", (partition_key,)
    )
    if not rows:
        raise dg.Failure(
            f"artist partition {partition_key!r} has no song index yet: materialize genius_song_index first"
        )
    return int(rows[0][0])


def _resolve_artist(warehouse: Warehouse, client: GeniusClient, partition_key: str) -> ArtistRef:
    """The warehouse first (no remote call), then the watchlist entry through the Genius API."""
    rows = warehouse.fetch_all(
        "SELECT artist_id, name, url, image_url FROM artists WHERE partition_key = %s",
        (partition_key,),
    )
    if rows:
        return ArtistRef(*rows[0])
    entry = watchlist_entry(partition_key)
    if entry is None:
        raise dg.Failure(
            f"artist partition {partition_key!r} is not on the watchlist, so it cannot be resolved"
        )
    if entry.genius_id:
        return client.artist(entry.genius_id)
    if entry.genius_slug:
        return client.resolve_artist_slug(entry.genius_slug)
    return client.resolve_artist(entry.name)


def load_sections(conn: psycopg.Connection[Any], song_ids: list[int]) -> dict[int, list[Section]]:
    sections: dict[int, list[Section]] = {song_id: [] for song_id in song_ids}
    rows = conn.execute(
        "SELECT song_id, header, performers, lines FROM lyric_sections "
        "WHERE song_id = ANY(%s) ORDER BY song_id, ordinal",
        (song_ids,),
    ).fetchall()
    for song_id, header, performers, lines in rows:
        sections[song_id].append(Section(header, list(performers), list(lines)))
    return sections


def _seen_member(song: dict[str, Any]) -> str:
    # the state is part of the member: a song whose lyrics_state changes is unseen again
    return f"{song['song_id']}:{song['lyrics_state']}"


def _http_metadata(stats: dict[str, float | int | None]) -> dict[str, float | int]:
    return {f"http_{k}": v for k, v in stats.items() if v is not None}


def _index_hash(listing: SongListing) -> str:
    # pageviews change by the minute; they are refreshed with details, not diffed
    return content_hash(
        listing.title, listing.full_title, listing.path, listing.url, listing.lyrics_state
    )


# --- Genius ---------------------------------------------------------------------------------


@dg.asset(
    partitions_def=artist_partitions,
    group_name="ingest",
    kinds={"postgres", "python"},
    description=(
        "Every song Genius lists for the artist, with album, release date, featured artists and "
        "pageviews. Non-songs (tracklists, liner notes, skits, credits) and songs whose lyrics are "
        "not complete are kept with a skip reason. Only new or changed listings are fetched."
    ),
)
def genius_song_index(
    context: dg.AssetExecutionContext,
    config: SongIndexConfig,
    warehouse: Warehouse,
    genius: GeniusSource,
    cache: Cache,
) -> dg.MaterializeResult:
    key = context.partition_key
    timer = Timer()
    with genius.client(cache) as client:
        artist = _resolve_artist(warehouse, client, key)
        listing_key = cache.key(
            "genius", "listing", artist.artist_id, config.sort, config.max_songs or "all"
        )
        cached = None if config.full_refresh else cache.get_json(listing_key)
        with timer.phase("listing"):
            if cached is not None:
                listings = [SongListing.from_json(item) for item in cached]
            else:
                listings = list(
                    islice(client.artist_songs(artist.artist_id, config.sort), config.max_songs)
                )
                cache.set_json(
                    listing_key, [s.to_json() for s in listings], config.listing_ttl_seconds
                )

        known = dict(
            warehouse.fetch_all(
                "SELECT song_id, index_hash FROM songs WHERE artist_id = %s", (artist.artist_id,)
            )
        )
        skipped: Counter[str] = Counter()
        failed: Counter[str] = Counter()
        rows: list[dict[str, Any]] = []
        new = changed = 0
        with timer.phase("details"):
            for listing in listings:
                if listing.artist_id != artist.artist_id:
                    skipped["featured only (another artist's song)"] += 1
                    continue
                index_hash = _index_hash(listing)
                if not config.full_refresh and known.get(listing.song_id) == index_hash:
                    continue
                reason = skip_reason(listing.title, listing.lyrics_state)
                detail = listing
                if reason is None:
                    try:
                        detail = client.song(listing.song_id)
                    except CircuitOpenError:
                        raise
                    except UpstreamError as exc:
                        failed[str(exc)] += 1
                        continue
                else:
                    skipped[reason] += 1
                new += listing.song_id not in known
                changed += listing.song_id in known
                rows.append(
                    {
                        "song_id": listing.song_id,
                        "artist_id": artist.artist_id,
                        "title": listing.title,
                        "full_title": listing.full_title,
                        "url": listing.url,
                        "path": listing.path,
                        "lyrics_state": listing.lyrics_state,
                        "release_date": detail.release_date,
                        "album": detail.album,
                        "featured_artists": list(detail.featured_artists),
                        "pageviews": detail.pageviews
                        if detail.pageviews is not None
                        else listing.pageviews,
                        "skip_reason": reason,
                        "index_hash": index_hash,
                    }
                )
        with timer.phase("write"):
            with warehouse.connection() as conn:
                conn.execute(
                    """INSERT INTO artists (artist_id, partition_key, name, url, image_url)
                       VALUES (%s, %s, %s, %s, %s)
                       ON CONFLICT (artist_id) DO UPDATE SET
                           name = EXCLUDED.name, url = EXCLUDED.url, image_url = EXCLUDED.image_url,
                           updated_at = now()
                       WHERE (artists.name, artists.url, artists.image_url)
                             IS DISTINCT FROM (EXCLUDED.name, EXCLUDED.url, EXCLUDED.image_url)""",
                    (artist.artist_id, key, artist.name, artist.url, artist.image_url),
                )
            written = warehouse.upsert("songs", rows, key=["song_id"], batch_size=BATCH)
        stats = client.stats.as_metadata()

    mine = [s for s in listings if s.artist_id == artist.artist_id]
    return dg.MaterializeResult(
        metadata=stage_metadata(
            written=written,
            unchanged=len(mine) - written - sum(failed.values()),
            failed=failed,
            skipped=skipped,
            preview=markdown_table(
                rows, ["song_id", "title", "album", "release_date", "skip_reason"]
            ),
            timer=timer,
            artist=artist.name,
            source=genius.mode,
            songs_listed=len(listings),
            songs_new=new,
            songs_changed=changed,
            listing_from_cache=cached is not None,
            cache_backend=cache.backend_name,
        )
        | _http_metadata(stats)
    )


@dg.asset(
    partitions_def=artist_partitions,
    deps=[genius_song_index],
    group_name="ingest",
    kinds={"postgres", "python"},
    description=(
        "Lyrics scraped from each song's genius.com page and split into sections with their "
        "performers. Fetches only songs with no lyrics yet or whose lyrics_state changed."
    ),
)
def genius_lyrics(
    context: dg.AssetExecutionContext,
    config: LyricsConfig,
    warehouse: Warehouse,
    genius: GeniusSource,
    cache: Cache,
) -> dg.MaterializeResult:
    artist_id = _artist_id(warehouse, context.partition_key)
    eligible = warehouse.fetch_dicts(
        """SELECT song_id, title, path, url, lyrics_state FROM songs
            WHERE artist_id = %s AND skip_reason IS NULL ORDER BY song_id""",
        (artist_id,),
    )
    # Fast path: the cache's set of songs already stored under their current lyrics_state.
    # It only ever vouches for rows committed to this warehouse (members are added after the
    # commit, and the key carries the warehouse's identity); whatever it does not vouch for is
    # checked against the warehouse, which stays the truth.
    seen_key = cache.key("genius", "seen", warehouse.identity, artist_id)
    seen = set() if config.full_refresh else cache.backend.smembers(seen_key)
    unseen = [s for s in eligible if _seen_member(s) not in seen]
    stored = {
        row["song_id"]: row
        for row in warehouse.fetch_dicts(
            "SELECT song_id, fetched_lyrics_state, content_hash FROM lyrics WHERE song_id = ANY(%s)",
            ([s["song_id"] for s in unseen],),
        )
    }
    todo = []
    for song in unseen:
        previous = stored.get(song["song_id"], {})
        song["content_hash"] = previous.get("content_hash")
        if config.full_refresh or previous.get("fetched_lyrics_state") != song["lyrics_state"]:
            todo.append(song)
    confirmed = [_seen_member(s) for s in unseen if s not in todo]
    if confirmed:
        cache.backend.sadd(seen_key, *confirmed)
    timer = Timer()
    statuses: Counter[str] = Counter()
    failed: Counter[str] = Counter()
    preview: list[dict[str, Any]] = []
    written = unchanged_content = 0
    circuit_error: CircuitOpenError | None = None
    with genius.client(cache) as client:
        for batch in batched(todo, config.batch_size):
            parsed_rows: list[tuple[dict[str, Any], Any]] = []
            with timer.phase("fetch"):
                for song in batch:
                    try:
                        status, page = client.song_page(song["path"])
                    except CircuitOpenError as exc:
                        circuit_error = exc
                        break
                    except UpstreamError as exc:
                        failed[str(exc)] += 1
                        continue
                    if status != 200:
                        failed[f"HTTP {status} for the song page"] += 1
                        continue
                    try:
                        parsed = parse_lyrics_html(page)
                    except UnreadablePage as exc:
                        failed[f"unreadable page: {exc}"] += 1
                        continue
                    parsed_rows.append((song, parsed))
            with timer.phase("write"), warehouse.connection() as conn:
                for song, parsed in parsed_rows:
                    digest = content_hash(parsed.status, parsed.text)
                    unchanged_content += digest == song["content_hash"]
                    conn.execute(
                        """INSERT INTO lyrics (song_id, status, text, content_hash, fetched_lyrics_state, source_url)
                           VALUES (%s, %s, %s, %s, %s, %s)
                           ON CONFLICT (song_id) DO UPDATE SET
                               status = EXCLUDED.status, text = EXCLUDED.text,
                               content_hash = EXCLUDED.content_hash,
                               fetched_lyrics_state = EXCLUDED.fetched_lyrics_state,
                               source_url = EXCLUDED.source_url, fetched_at = now(), updated_at = now()""",
                        (
                            song["song_id"],
                            parsed.status,
                            parsed.text,
                            digest,
                            song["lyrics_state"],
                            song["url"],
                        ),
                    )
                    conn.execute(
                        "DELETE FROM lyric_sections WHERE song_id = %s", (song["song_id"],)
                    )
                    with conn.cursor() as cur:
                        cur.executemany(
                            "INSERT INTO lyric_sections (song_id, ordinal, header, performers, lines) "
                            "VALUES (%s, %s, %s, %s, %s)",
                            [
                                (song["song_id"], i, s.header, s.performers, s.lines)
                                for i, s in enumerate(parsed.sections)
                            ],
                        )
                    statuses[parsed.status] += 1
                    written += 1
                    preview.append(
                        {
                            "title": song["title"],
                            "status": parsed.status,
                            "sections": len(parsed.sections),
                            "first line": parsed.lines[0] if parsed.lines else "",
                        }
                    )
            if parsed_rows:
                cache.backend.sadd(seen_key, *(_seen_member(song) for song, _ in parsed_rows))
            if circuit_error:
                break
        stats = client.stats.as_metadata()
    if circuit_error:
        raise dg.Failure(
            description=f"{circuit_error} — {written} songs were saved; a rerun fetches only the rest.",
            metadata={"rows_written": written, "songs_remaining": len(todo) - written},
        )
    return dg.MaterializeResult(
        metadata=stage_metadata(
            written=written,
            unchanged=len(eligible) - len(todo),
            failed=failed,
            preview=markdown_table(preview, ["title", "status", "sections", "first line"]),
            timer=timer,
            source=genius.mode,
            songs_eligible=len(eligible),
            seen_set_hits=len(eligible) - len(unseen),
            songs_fetched=len(todo) - sum(failed.values()),
            lyrics=statuses["lyrics"],
            instrumental=statuses["instrumental"],
            missing=statuses["missing"],
            refetched_same_content=unchanged_content,
        )
        | _http_metadata(stats)
    )


# --- Spotify --------------------------------------------------------------------------------


def _spotify_artist(
    client: SpotifyClient,
    cache: Cache,
    spotify: SpotifySource,
    artist_name: str,
    tracks: list[dict[str, Any]],
    unavailable: list[str],
) -> dict[str, Any] | None:
    """The partition artist's Spotify id, followers, popularity and genres, from a cached (1 h)
    batch lookup. Fields the app may not read come back as None and are reported once."""
    wanted = fold(artist_name)
    spotify_id = next(
        (
            a["id"]
            for t in tracks
            for a in t.get("artists", [])
            if fold(a.get("name", "")) == wanted
        ),
        None,
    )
    if spotify_id is None:
        return None
    key = cache.key("spotify", "artist", spotify_id)
    artist = cache.get_json(key)
    if artist is None:
        try:
            found = client.artists([spotify_id])
        except FeatureUnavailable:
            unavailable.append("artists (HTTP 403: not available to this app)")
            return {"spotify_id": spotify_id, "followers": None, "popularity": None, "genres": None}
        artist = found[0] if found else {}
        cache.set_json(key, artist, ttl_seconds=spotify.artist_cache_seconds)
    followers = (artist.get("followers") or {}).get("total")
    popularity = artist.get("popularity")
    if followers is None or popularity is None:
        unavailable.append(
            "artist followers/popularity (absent from the response: restricted for this app)"
        )
    return {
        "spotify_id": spotify_id,
        "followers": followers,
        "popularity": popularity,
        "genres": artist.get("genres"),
    }


def _confidence_histogram(confidences: list[float]) -> str:
    if not confidences:
        return "_no matches attempted_"
    bins = Counter(min(9, int(c * 10)) for c in confidences)
    lines = ["| confidence | songs |", "|---|---|"]
    for b in range(10):
        if bins[b]:
            lines.append(f"| {b / 10:.1f}–{(b + 1) / 10:.1f} | {'█' * bins[b]} {bins[b]} |")
    return "\n".join(lines)


@dg.asset(
    partitions_def=artist_partitions,
    deps=[genius_lyrics],
    group_name="ingest",
    kinds={"postgres", "python"},
    description=(
        "Each song matched to its Spotify track (never a remix, live or sped-up version of it), "
        "with popularity, duration, explicit flag, ISRC and, where the app may read them, audio "
        "features. Songs already matched are not searched again."
    ),
)
def spotify_tracks(
    context: dg.AssetExecutionContext,
    config: RefreshConfig,
    warehouse: Warehouse,
    spotify: SpotifySource,
    cache: Cache,
) -> dg.MaterializeResult:
    artist_id = _artist_id(warehouse, context.partition_key)
    songs = warehouse.fetch_dicts(
        """SELECT s.song_id, s.title, a.name AS artist, s.featured_artists, s.release_date,
                  t.input_hash
             FROM songs s JOIN artists a USING (artist_id)
             LEFT JOIN spotify_tracks t USING (song_id)
            WHERE s.artist_id = %s AND s.skip_reason IS NULL
            ORDER BY s.song_id""",
        (artist_id,),
    )
    timer = Timer()
    todo: list[tuple[SongToMatch, str]] = []
    for song in songs:
        target = SongToMatch(
            song_id=song["song_id"],
            title=song["title"],
            artist=song["artist"],
            featured=tuple(song["featured_artists"]),
            year=song["release_date"].year if song["release_date"] else None,
        )
        digest = content_hash(target)
        if config.full_refresh or song["input_hash"] != digest:
            todo.append((target, digest))

    client = spotify.client() if todo else None
    matches: dict[int, dict[str, Any]] = {}
    unmatched: Counter[str] = Counter()
    unavailable: list[str] = []
    rows: list[dict[str, Any]] = []
    with timer.phase("match"):
        for target, digest in todo:
            assert client is not None
            match_key = cache.key("spotify", "match", target.song_id, digest)
            cached = None if config.full_refresh else cache.get_json(match_key)
            if cached is None:
                result = client.match(target, spotify.match_threshold)
                cached = {
                    "track_id": result.track["id"] if result.track else None,
                    "confidence": result.confidence,
                    "margin": result.margin,
                    "reason": result.reason,
                }
                cache.set_json(match_key, cached, ttl_seconds=30 * 24 * 3600)
            matches[target.song_id] = {**cached, "input_hash": digest}
    track_ids = sorted({m["track_id"] for m in matches.values() if m["track_id"]})
    with timer.phase("batch"):
        tracks = {t["id"]: t for t in client.tracks(track_ids)} if client and track_ids else {}
        features: dict[str, dict[str, Any]] = {}
        if client and track_ids:
            try:
                features = client.audio_features(track_ids)
            except FeatureUnavailable:
                unavailable.append("audio-features (HTTP 403: not available to this app)")
    artist_row: dict[str, Any] | None = None
    if client and tracks and songs:
        with timer.phase("artist"):
            artist_row = _spotify_artist(
                client, cache, spotify, songs[0]["artist"], list(tracks.values()), unavailable
            )
        if artist_row is not None:
            with warehouse.connection() as conn:
                conn.execute(
                    """UPDATE artists SET spotify_id = %(spotify_id)s, spotify_followers = %(followers)s,
                              spotify_popularity = %(popularity)s, spotify_genres = %(genres)s,
                              spotify_updated_at = now()
                        WHERE artist_id = %(artist_id)s""",
                    {**artist_row, "artist_id": artist_id},
                )
    for song_id, match in matches.items():
        track = tracks.get(match["track_id"] or "")
        af = features.get(match["track_id"] or "", {})
        if match["track_id"] and track is None:
            unmatched["matched track not returned by /tracks"] += 1
        elif not track:
            unmatched[match["reason"] or "no match"] += 1
        rows.append(
            {
                "song_id": song_id,
                "match_status": "matched" if track else "unmatched",
                "unmatched_reason": None
                if track
                else (match["reason"] or "matched track not returned by /tracks"),
                "confidence": match["confidence"],
                "margin": match["margin"],
                "spotify_id": track["id"] if track else None,
                "name": track["name"] if track else None,
                "artists": [a["name"] for a in track["artists"]] if track else None,
                "album": track["album"]["name"] if track else None,
                "release_date": track["album"].get("release_date") if track else None,
                "duration_ms": track.get("duration_ms") if track else None,
                "popularity": track.get("popularity") if track else None,
                "explicit": track.get("explicit") if track else None,
                "isrc": (track.get("external_ids") or {}).get("isrc") if track else None,
                **{
                    name: af.get(name)
                    for name in (
                        "danceability",
                        "energy",
                        "valence",
                        "tempo",
                        "speechiness",
                        "acousticness",
                        "instrumentalness",
                        "liveness",
                        "loudness",
                    )
                },
                "input_hash": match["input_hash"],
            }
        )
    with timer.phase("write"):
        written = warehouse.upsert("spotify_tracks", rows, key=["song_id"], batch_size=BATCH)
    confidences = [m["confidence"] for m in matches.values()]
    matched = [r for r in rows if r["match_status"] == "matched"]
    return dg.MaterializeResult(
        metadata=stage_metadata(
            written=written,
            unchanged=len(songs) - len(todo),
            failed=Counter(),
            preview=markdown_table(
                matched, ["name", "album", "popularity", "confidence", "margin"]
            ),
            timer=timer,
            source=spotify.mode,
            matched=len(matched),
            unmatched=len(rows) - len(matched),
            unmatched_by_reason=dg.MetadataValue.md(breakdown(unmatched)),
            low_confidence=sum(1 for r in matched if (r["confidence"] or 0) < 0.85),
            confidence_histogram=dg.MetadataValue.md(_confidence_histogram(confidences)),
            audio_features_available=not unavailable and bool(track_ids),
            unavailable_for_this_app=", ".join(unavailable) or "none",
            api_calls=sum(client.calls.values()) if client else 0,
            cache_backend=cache.backend_name,
        )
    )


# --- features, analyses, embeddings ---------------------------------------------------------


@dg.asset(
    partitions_def=artist_partitions,
    deps=[genius_lyrics, spotify_tracks],
    group_name="enrich",
    kinds={"postgres", "python"},
    description=(
        "Rule-based lyric features: line and word counts, lexical diversity, syllables per line, "
        "end-rhyme density, multisyllabic words, repetition, explicit language, performers."
    ),
)
def lyric_features(
    context: dg.AssetExecutionContext, config: RefreshConfig, warehouse: Warehouse
) -> dg.MaterializeResult:
    artist_id = _artist_id(warehouse, context.partition_key)
    timer = Timer()
    with timer.phase("read"):
        candidates = warehouse.fetch_dicts(
            """SELECT l.song_id, s.title, l.content_hash, f.content_hash AS done_hash, f.feature_version
                 FROM lyrics l JOIN songs s USING (song_id)
                 LEFT JOIN lyric_features f USING (song_id)
                WHERE s.artist_id = %s AND l.status = 'lyrics' ORDER BY l.song_id""",
            (artist_id,),
        )
        todo = [
            c
            for c in candidates
            if config.full_refresh
            or c["done_hash"] != c["content_hash"]
            or c["feature_version"] != FEATURE_VERSION
        ]
    rows: list[dict[str, Any]] = []
    with timer.phase("compute"):
        with warehouse.connection() as conn:
            sections = load_sections(conn, [c["song_id"] for c in todo])
        for song in todo:
            f = compute_features(sections[song["song_id"]])
            rows.append(
                {
                    "song_id": song["song_id"],
                    "feature_version": FEATURE_VERSION,
                    "content_hash": song["content_hash"],
                    **{k: v for k, v in f.as_dict().items() if k in STORED_COLUMNS},
                    "features": Jsonb(f.as_dict()),
                    "_title": song["title"],
                }
            )
    preview = [
        {
            "title": r["_title"],
            **{k: r[k] for k in ("word_count", "unique_word_ratio", "rhyme_density")},
        }
        for r in rows
    ]
    with timer.phase("write"):
        written = warehouse.upsert(
            "lyric_features",
            [{k: v for k, v in r.items() if k != "_title"} for r in rows],
            key=["song_id"],
        )
    return dg.MaterializeResult(
        metadata=stage_metadata(
            written=written,
            unchanged=len(candidates) - len(todo),
            preview=markdown_table(
                preview, ["title", "word_count", "unique_word_ratio", "rhyme_density"]
            ),
            timer=timer,
            feature_version=FEATURE_VERSION,
        )
    )


@dg.asset(
    partitions_def=artist_partitions,
    deps=[lyric_features],
    group_name="enrich",
    kinds={"postgres", "python"},
    description=(
        "Structured analyses (mood, sentiment, themes, rhyme/wordplay/flow/storytelling/complexity "
        "sub-scores, overall quality, explicitness, summary) validated against one schema. Each row "
        "records its analyzer, model and prompt version; unchanged lyrics are never analysed twice."
    ),
)
def lyric_analyses(
    context: dg.AssetExecutionContext,
    config: RefreshConfig,
    warehouse: Warehouse,
    analyzer: LyricAnalyzer,
    cache: Cache,
) -> dg.MaterializeResult:
    artist_id = _artist_id(warehouse, context.partition_key)
    timer = Timer()
    candidates = warehouse.fetch_dicts(
        """SELECT l.song_id, s.title, ar.name AS artist, l.text, l.content_hash, f.features,
                  a.content_hash AS done_hash, a.analyzer AS done_by
             FROM lyrics l JOIN songs s USING (song_id) JOIN artists ar USING (artist_id)
             JOIN lyric_features f USING (song_id)
             LEFT JOIN analyses a ON a.song_id = l.song_id AND a.model = %s AND a.prompt_version = %s
            WHERE s.artist_id = %s AND l.status = 'lyrics' ORDER BY l.song_id""",
        (analyzer.model, analyzer.prompt_version, artist_id),
    )
    # A row that fell back to the rules never got the LLM analysis it is filed under: retry it.
    todo = [
        c
        for c in candidates
        if config.full_refresh
        or c["done_hash"] != c["content_hash"]
        or (analyzer.uses_llm and str(c["done_by"]).startswith("rule-based (fallback"))
    ]
    with warehouse.connection() as conn:
        sections = load_sections(conn, [c["song_id"] for c in todo])
    songs = [
        SongForAnalysis(
            song_id=c["song_id"],
            title=c["title"],
            artist=c["artist"],
            content_hash=c["content_hash"],
            lyrics=c["text"],
            sections=sections[c["song_id"]],
            features=LyricFeatures(**c["features"]),
        )
        for c in todo
    ]
    llm_stats = None
    with timer.phase("analyze"):
        if analyzer.uses_llm and songs:
            runtime = analyzer.runtime(cache)
            outcomes = runtime.run(songs)
            llm_stats = runtime.stats
        else:
            outcomes = []
            for song in songs:
                started = time.perf_counter()
                analysis = analyzer.analyze(song.title, song.sections, song.features)
                latency = (time.perf_counter() - started) * 1000
                outcomes.append(
                    Outcome(song.song_id, analysis, analyzer.mode, "rules", latency_ms=latency)
                )
    titles = {song.song_id: song.title for song in songs}
    hashes = {song.song_id: song.content_hash for song in songs}
    rows = [
        {
            "song_id": o.song_id,
            "model": analyzer.model,
            "prompt_version": analyzer.prompt_version,
            "analyzer": o.analyzer,
            "content_hash": hashes[o.song_id],
            **o.analysis.model_dump(mode="json"),
            "tokens_in": o.tokens_in or None,
            "tokens_out": o.tokens_out or None,
            "latency_ms": o.latency_ms,
        }
        for o in outcomes
    ]
    with timer.phase("write"):
        written = warehouse.upsert("analyses", rows, key=["song_id", "model", "prompt_version"])
    preview = [
        {
            "title": titles[r["song_id"]],
            "mood": r["mood"],
            "themes": ", ".join(r["themes"][:3]),
            "quality": r["quality"],
            "analyzer": r["analyzer"],
        }
        for r in rows
    ]
    sources = Counter(o.source for o in outcomes)
    extra: dict[str, Any] = {}
    if llm_stats is not None:
        extra = {
            "tokens_in": llm_stats.tokens_in,
            "tokens_out": llm_stats.tokens_out,
            "estimated_cost_usd": dg.MetadataValue.float(
                analyzer.cost_usd(llm_stats.tokens_in, llm_stats.tokens_out)
            ),
            "llm_requests": llm_stats.requests,
            "llm_retries": llm_stats.retries,
            "repairs": llm_stats.repairs,
            "fallback_by_reason": dg.MetadataValue.md(breakdown(llm_stats.fallbacks)),
        }
        for q in (50, 95):
            value = percentile(llm_stats.latencies_ms, q)
            if value is not None:
                extra[f"latency_p{q}_ms"] = round(value, 1)
    return dg.MaterializeResult(
        metadata=stage_metadata(
            written=written,
            unchanged=len(candidates) - len(todo),
            preview=markdown_table(preview, ["title", "mood", "themes", "quality", "analyzer"]),
            timer=timer,
            analyzer=analyzer.mode,
            model=analyzer.model,
            prompt_version=analyzer.prompt_version,
            analyzed=sources["llm"] + sources["rules"],
            from_cache=sources["cache"],
            from_warehouse=len(candidates) - len(todo),
            fallback=sources["fallback"],
            **extra,
        )
    )


@dg.asset(
    group_name="enrich",
    kinds={"python"},
    description=(
        f"{STATIC_MODEL_NAME}: a model2vec static embedding model distilled from "
        "all-MiniLM-L6-v2 (the default embedding backend), built once and cached on disk "
        "under RAP_ASSETS_MODEL_DIR. Not needed, and not built, for other backends."
    ),
)
def static_embedding_model(config: RefreshConfig, embedder: TextEmbedder) -> dg.MaterializeResult:
    path = static_model_dir()
    if embedder.backend != "model2vec":
        return dg.MaterializeResult(
            metadata={"status": f"not used: the embedding backend is {embedder.backend}"}
        )
    timer = Timer()
    built = config.full_refresh or not static_model_ready(path)
    if built:
        with timer.phase("distill"):
            distill_static_model(path, replace=True)
    info = json.loads((path / "rap_assets.json").read_text())
    size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return dg.MaterializeResult(
        metadata={
            "model": STATIC_MODEL_NAME,
            "path": dg.MetadataValue.path(str(path)),
            "rebuilt": built,
            "rows_written": dg.MetadataValue.int(1 if built else 0),
            "distill_seconds": dg.MetadataValue.float(round(timer.seconds.get("distill", 0.0), 2)),
            "dimension": info["pca_dims"],
            "vocabulary_size": info["vocabulary_size"],
            "model2vec_version": info["model2vec"],
            "size_bytes": dg.MetadataValue.int(size),
        }
    )


@dg.asset(
    partitions_def=artist_partitions,
    deps=[lyric_analyses, static_embedding_model],
    group_name="enrich",
    kinds={"postgres", "pgvector"},
    description=(
        "One vector per lyric section (so a search hit can say which verse matched) and a pooled "
        "vector per song, from the configured embedding backend."
    ),
)
def lyric_embeddings(
    context: dg.AssetExecutionContext,
    config: RefreshConfig,
    warehouse: Warehouse,
    embedder: TextEmbedder,
) -> dg.MaterializeResult:
    artist_id = _artist_id(warehouse, context.partition_key)
    model = embedder.model_name
    timer = Timer()
    candidates = warehouse.fetch_dicts(
        """SELECT l.song_id, s.title, l.content_hash, e.content_hash AS done_hash
             FROM lyrics l JOIN songs s USING (song_id)
             LEFT JOIN song_embeddings e ON e.song_id = l.song_id AND e.model = %s
            WHERE s.artist_id = %s AND l.status = 'lyrics' ORDER BY l.song_id""",
        (model, artist_id),
    )
    todo = [c for c in candidates if config.full_refresh or c["done_hash"] != c["content_hash"]]
    written = chunks_written = 0
    for batch in batched(todo, 200):
        with warehouse.connection() as conn:
            sections = load_sections(conn, [c["song_id"] for c in batch])
        song_chunks = {
            c["song_id"]: chunk_sections(c["title"], sections[c["song_id"]]) for c in batch
        }
        texts = [chunk.text for chunks in song_chunks.values() for chunk in chunks]
        with timer.phase("embed"):
            vectors = embedder.embedder.embed(texts)
        songs, offset = [], 0
        for song in batch:
            chunks = song_chunks[song["song_id"]]
            songs.append(
                SongVectors(
                    song["song_id"],
                    song["content_hash"],
                    chunks,
                    vectors[offset : offset + len(chunks)],
                )
            )
            offset += len(chunks)
        # one transaction per batch: a crash loses at most this batch, and the rerun redoes it
        with timer.phase("write"), warehouse.connection() as conn:
            chunks_written += load_embeddings(conn, model, songs)
        written += sum(1 for song in songs if song.chunks)
    return dg.MaterializeResult(
        metadata=stage_metadata(
            written=written,
            unchanged=len(candidates) - len(todo),
            preview=markdown_table([{"title": c["title"]} for c in todo], ["title"]),
            timer=timer,
            model=model,
            dimension=embedder.dimension,
            section_vectors_written=chunks_written,
            texts_per_second=round(chunks_written / timer.seconds["embed"], 1)
            if timer.seconds.get("embed")
            else None,
        )
    )


# --- corpus-wide ----------------------------------------------------------------------------


@dg.asset(
    deps=[lyric_embeddings],
    group_name="serve",
    kinds={"postgres", "pgvector"},
    automation_condition=dg.AutomationCondition.eager(),
    description=(
        "The HNSW (cosine) index over every song vector of the configured embedding model, which "
        "RapSearch queries. Rebuilt only when the indexed vectors changed."
    ),
)
def search_index(
    config: RefreshConfig, warehouse: Warehouse, embedder: TextEmbedder
) -> dg.MaterializeResult:
    build = build_search_index(
        warehouse, embedder.model_name, embedder.dimension, force=config.full_refresh
    )
    return dg.MaterializeResult(
        metadata={
            "model": build.model,
            "index_name": build.index_name,
            "vectors_indexed": dg.MetadataValue.int(build.vectors),
            "songs_by_artist": dg.MetadataValue.md(
                markdown_table(build.by_artist, ["artist", "songs"], limit=50)
            ),
            "rebuilt": build.rebuilt,
            "rows_written": dg.MetadataValue.int(1 if build.rebuilt else 0),
            "rows_unchanged": dg.MetadataValue.int(0 if build.rebuilt else build.vectors),
            "build_seconds": dg.MetadataValue.float(build.seconds),
            "index_size_bytes": dg.MetadataValue.int(build.size_bytes),
            "hnsw_m": HNSW_M,
            "hnsw_ef_construction": HNSW_EF_CONSTRUCTION,
            "maintenance_work_mem": MAINTENANCE_WORK_MEM,
        }
    )


class EvaluationConfig(dg.Config):
    seed: int = 7
    test_fraction: float = 0.25
    min_labelled: int = 30
    """Fewer LLM-labelled songs than this: no metrics are computed, and the metadata says so."""
    bootstrap_rounds: int = 1000


@dg.asset(
    deps=[lyric_analyses, lyric_embeddings, spotify_tracks],
    group_name="evaluate",
    kinds={"postgres"},
    automation_condition=dg.AutomationCondition.eager(),
    description=(
        "The labelled dataset: every song with a quality label from an LLM analyzer (rows the "
        "rule-based analyzer wrote, or fell back to, never count), with its artist and the "
        "rule-based score it is compared against. Replaced whole when it changes."
    ),
)
def evaluation_dataset(warehouse: Warehouse, embedder: TextEmbedder) -> dg.MaterializeResult:
    dataset = load_dataset(warehouse, embedder.model_name)
    digest = dataset.hash()
    previous = warehouse.fetch_all("SELECT DISTINCT dataset_hash FROM evaluation_dataset")
    excluded = warehouse.fetch_all(
        "SELECT count(*) FROM analyses WHERE model <> 'rule-based' AND analyzer LIKE 'rule-based%%'"
    )[0][0]
    written = 0
    if previous != [(digest,)] and (previous or dataset.n_labelled):
        with warehouse.connection() as conn:
            conn.execute("DELETE FROM evaluation_dataset")
            with conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO evaluation_dataset (song_id, artist_id, label, label_model, rule_score, dataset_hash) "
                    "VALUES (%s, %s, %s, %s, %s, %s)",
                    [
                        (
                            int(sid),
                            int(group),
                            float(label),
                            dataset.label_source,
                            float(rule),
                            digest,
                        )
                        for sid, group, label, rule in zip(
                            dataset.song_ids,
                            dataset.groups,
                            dataset.labels,
                            dataset.rule_scores,
                            strict=True,
                        )
                    ],
                )
        written = dataset.n_labelled
    return dg.MaterializeResult(
        metadata={
            "labelled_songs": dg.MetadataValue.int(dataset.n_labelled),
            "artists": dg.MetadataValue.int(len(set(dataset.groups.tolist()))),
            "label_source": dataset.label_source,
            "fallback_rows_excluded": dg.MetadataValue.int(int(excluded)),
            "dataset_hash": digest,
            "rows_written": dg.MetadataValue.int(written),
            "rows_unchanged": dg.MetadataValue.int(0 if written else dataset.n_labelled),
        }
    )


@dg.asset(
    deps=[evaluation_dataset],
    group_name="evaluate",
    kinds={"postgres", "scikitlearn"},
    automation_condition=dg.AutomationCondition.eager(),
    description=(
        "Can a cheap model predict the LLM's quality score from lyric features and embeddings? "
        "Ridge (features + embeddings) and gradient boosting (features) are tuned by grouped "
        "cross-validation on a seeded, artist-grouped train split and compared on held-out "
        "artists with the rule-based score, the train mean and a uniform random guess: MAE, "
        "RMSE and Spearman with bootstrap 95% intervals. The best learned model is saved."
    ),
)
def evaluation_metrics(
    context: dg.AssetExecutionContext,
    config: EvaluationConfig,
    warehouse: Warehouse,
    embedder: TextEmbedder,
) -> dg.MaterializeResult:
    dataset = load_dataset(warehouse, embedder.model_name)
    settings = EvaluationSettings(
        seed=config.seed,
        test_fraction=config.test_fraction,
        min_labelled=config.min_labelled,
        bootstrap_rounds=config.bootstrap_rounds,
    )
    result = evaluate(dataset, settings)
    if result.skipped_reason:
        context.log.warning(result.skipped_reason)
        return dg.MaterializeResult(
            metadata={
                "status": "not evaluated",
                "reason": result.skipped_reason,
                "labelled_songs": dg.MetadataValue.int(dataset.n_labelled),
                "min_labelled": dg.MetadataValue.int(config.min_labelled),
                "rows_written": dg.MetadataValue.int(0),
            }
        )
    run_id = context.run.run_id
    persist_evaluation(warehouse, run_id, result)
    best = result.best_learned
    assert best is not None
    version = save_model(warehouse, run_id, result, best.name, embedder.model_name)
    metadata: dict[str, Any] = {
        "status": "evaluated",
        "run_id": run_id,
        "dataset_hash": result.dataset_hash,
        "label_source": result.label_source,
        "split": f"train {result.n_train} songs / {result.n_train_artists} artists, "
        f"test {result.n_test} songs / {result.n_test_artists} artists (seed {result.seed})",
        "n_train": dg.MetadataValue.int(result.n_train),
        "n_test": dg.MetadataValue.int(result.n_test),
        "metrics": dg.MetadataValue.md(result.markdown()),
        "best_model": best.name,
        "saved_model_version": version,
        "rows_written": dg.MetadataValue.int(len(result.models)),
    }
    for model in result.models:
        metadata[f"{model.name}_mae"] = dg.MetadataValue.float(model.mae)
        metadata[f"{model.name}_rmse"] = dg.MetadataValue.float(model.rmse)
        if model.spearman is not None:
            metadata[f"{model.name}_spearman"] = dg.MetadataValue.float(model.spearman)
    if best.improvement_vs_rule_based_pct is not None:
        metadata["best_mae_improvement_vs_rule_based_pct"] = dg.MetadataValue.float(
            best.improvement_vs_rule_based_pct
        )
    return dg.MaterializeResult(metadata=metadata)


@dg.asset(
    deps=[evaluation_metrics],
    group_name="evaluate",
    kinds={"postgres", "scikitlearn"},
    automation_condition=dg.AutomationCondition.eager(),
    description=(
        "Quality scores for songs without an LLM analysis, from the latest saved model; every "
        "row is marked predicted, so it is never mistaken for an analysis."
    ),
)
def predicted_quality(warehouse: Warehouse, embedder: TextEmbedder) -> dg.MaterializeResult:
    latest = warehouse.fetch_all(
        "SELECT version, model_name FROM quality_models WHERE embedding_model = %s ORDER BY created_at DESC LIMIT 1",
        (embedder.model_name,),
    )
    if not latest:
        return dg.MaterializeResult(
            metadata={
                "status": "no trained model yet: evaluation_metrics saves one once enough songs are LLM-labelled",
                "rows_written": dg.MetadataValue.int(0),
            }
        )
    version, name = latest[0]
    songs = load_unlabelled(warehouse, embedder.model_name)
    done = dict(
        warehouse.fetch_all(
            "SELECT song_id, model_version || ':' || content_hash FROM quality_predictions"
        )
    )
    todo = [
        i
        for i, sid in enumerate(songs.song_ids)
        if done.get(sid) != f"{version}:{songs.content_hashes[i]}"
    ]
    rows: list[dict[str, Any]] = []
    if todo:
        scores = predict(
            load_model(warehouse, version), songs.features[todo], songs.embeddings[todo]
        )
        rows = [
            {
                "song_id": songs.song_ids[i],
                "model_version": version,
                "score": round(float(score), 3),
                "predicted": True,
                "content_hash": songs.content_hashes[i],
            }
            for i, score in zip(todo, scores, strict=True)
        ]
    written = warehouse.upsert("quality_predictions", rows, key=["song_id"])
    return dg.MaterializeResult(
        metadata={
            "model_version": version,
            "model": name,
            "songs_without_llm_analysis": dg.MetadataValue.int(len(songs.song_ids)),
            "rows_written": dg.MetadataValue.int(written),
            "rows_unchanged": dg.MetadataValue.int(len(songs.song_ids) - written),
            "preview": dg.MetadataValue.md(
                markdown_table(rows, ["song_id", "score", "model_version"])
            ),
        }
    )


ARTIST_ASSETS = [
    genius_song_index,
    genius_lyrics,
    spotify_tracks,
    lyric_features,
    lyric_analyses,
    lyric_embeddings,
]
#: built once, cached on disk; the artist runs load it
MODEL_ASSETS = [static_embedding_model]
CORPUS_ASSETS = [search_index, evaluation_dataset, evaluation_metrics, predicted_quality]
#: The assets whose config takes ``full_refresh`` (``rap-assets materialize --full-refresh``).
REFRESHABLE_ASSETS = [*MODEL_ASSETS, *ARTIST_ASSETS, search_index]
