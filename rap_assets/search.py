"""Search over the warehouse: bulk loading of vectors, the HNSW index build, and the
``RapSearch`` resource (semantic, keyword and hybrid), which works inside Dagster and from
plain Python (``from rap_assets import RapSearch``)."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Literal

import dagster as dg
import numpy as np
import psycopg
from psycopg import sql
from pydantic import BaseModel, Field, PrivateAttr

from rap_assets.analysis import Mood
from rap_assets.embeddings import (
    BACKENDS,
    DEFAULT_BACKEND,
    Chunk,
    EmbeddingSpec,
    embedding_env,
    get_embedder,
)
from rap_assets.warehouse import Warehouse

# HNSW parameters, chosen by benchmarks/search.py at 57,718 tracks. Short text queries land
# far from every pooled song vector, where the graph is hardest to navigate: pgvector's
# defaults (m=16, ef_construction=64, ef_search=40) found only half of the exact top 10 in a
# trial at 20,000 tracks. m=24 / ef_construction=256 / ef_search=600 reach the 0.95 target
# for a 23 s build and p95 under 7 ms; the benchmark sweeps ef_search (see the README).
HNSW_M = 24
HNSW_EF_CONSTRUCTION = 256
#: candidate list per query (SET LOCAL hnsw.ef_search); pgvector caps it at 1,000
DEFAULT_EF_SEARCH = 600
#: HNSW builds in memory when the graph fits; 57,718 x 256-d vectors need ~100 MB
MAINTENANCE_WORK_MEM = "512MB"
MAX_QUERY_CHARS = 1000
MAX_LIMIT = 100
#: reciprocal rank fusion constant (Cormack et al., 2009): damps the weight of the top ranks
RRF_K = 60
#: how deep each ranking goes before fusion
FUSION_DEPTH = 50
#: tsvector weights in ts_rank's {D, C, B, A} order: a title hit (A) counts 2.5x a lyric hit (B)
KEYWORD_WEIGHTS = "{0.1, 0.2, 0.4, 1.0}"
SearchMode = Literal["semantic", "keyword", "hybrid"]
MODES: tuple[str, ...] = ("semantic", "keyword", "hybrid")


def index_name_for(model: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "_", model.lower()).strip("_")
    return f"song_embeddings_hnsw_{slug}"[:63]


@dataclass
class IndexBuild:
    model: str
    index_name: str
    vectors: int
    action: str  # created | refreshed | unchanged
    seconds: float
    size_bytes: int
    by_artist: list[dict[str, Any]] = field(default_factory=list)

    @property
    def rebuilt(self) -> bool:
        return self.action != "unchanged"


def build_search_index(
    warehouse: Warehouse, model: str, dim: int, *, force: bool = False
) -> IndexBuild:
    """Create the partial HNSW expression index for ``model`` if it is missing (or ``force``),
    refresh planner statistics when the indexed vectors changed, and record the build.

    pgvector maintains HNSW on insert, so later upserts need no rebuild; building once after
    the first bulk load is much faster than growing the graph row by row, which is why the
    index lives in this asset and not in a migration.
    """
    name = index_name_for(model)
    started = time.perf_counter()
    with warehouse.connection() as conn:
        vectors, fingerprint = conn.execute(
            """SELECT count(*), coalesce(md5(string_agg(song_id::text || ':' || content_hash, ','
                                                      ORDER BY song_id)), '')
                 FROM song_embeddings WHERE model = %s""",
            (model,),
        ).fetchone() or (0, "")
        previous = conn.execute(
            "SELECT fingerprint FROM search_index_builds WHERE model = %s", (model,)
        ).fetchone()
        exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()
        if force or not (exists and exists[0]):
            action = "created"
            conn.execute(
                "SELECT set_config('maintenance_work_mem', %s, true)", (MAINTENANCE_WORK_MEM,)
            )
            conn.execute(sql.SQL("DROP INDEX IF EXISTS {}").format(sql.Identifier(name)))
            conn.execute(
                sql.SQL(
                    "CREATE INDEX {name} ON song_embeddings USING hnsw "
                    "((embedding::vector({dim})) vector_cosine_ops) "
                    "WITH (m = {m}, ef_construction = {ef}) WHERE model = {model}"
                ).format(
                    name=sql.Identifier(name),
                    dim=sql.Literal(int(dim)),
                    m=sql.Literal(HNSW_M),
                    ef=sql.Literal(HNSW_EF_CONSTRUCTION),
                    model=sql.Literal(model),
                )
            )
        elif previous is None or previous[0] != fingerprint:
            action = "refreshed"
        else:
            action = "unchanged"
        if action != "unchanged":
            conn.execute("ANALYZE song_embeddings")
            conn.execute(
                """INSERT INTO search_index_builds (model, index_name, fingerprint, vectors, build_seconds)
                   VALUES (%s, %s, %s, %s, %s)
                   ON CONFLICT (model) DO UPDATE SET index_name = EXCLUDED.index_name,
                       fingerprint = EXCLUDED.fingerprint, vectors = EXCLUDED.vectors,
                       build_seconds = EXCLUDED.build_seconds, built_at = now()""",
                (model, name, fingerprint, vectors, time.perf_counter() - started),
            )
        size = conn.execute(
            "SELECT coalesce(pg_relation_size(to_regclass(%s)), 0)", (name,)
        ).fetchone()
        by_artist = conn.execute(
            """SELECT a.name, count(*) FROM song_embeddings e JOIN songs s USING (song_id)
                 JOIN artists a USING (artist_id) WHERE e.model = %s GROUP BY a.name ORDER BY a.name""",
            (model,),
        ).fetchall()
    return IndexBuild(
        model=model,
        index_name=name,
        vectors=int(vectors),
        action=action,
        seconds=round(time.perf_counter() - started, 3),
        size_bytes=int(size[0]) if size else 0,
        by_artist=[{"artist": a, "songs": n} for a, n in by_artist],
    )


# --- loading -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SongVectors:
    """One song's chunks, their vectors, and the lyrics hash they were computed from."""

    song_id: int
    content_hash: str
    chunks: Sequence[Chunk]
    vectors: np.ndarray

    @property
    def pooled(self) -> np.ndarray:
        mean = self.vectors.mean(axis=0)
        norm = float(np.linalg.norm(mean))
        return (mean / norm if norm else mean).astype(np.float32)


def load_embeddings(conn: psycopg.Connection[Any], model: str, songs: Iterable[SongVectors]) -> int:
    """Replace the vectors of ``songs`` for ``model`` in the caller's transaction, with binary
    COPY: pgvector's binary format skips the float→text→float round trip, and COPY skips
    per-row statement overhead (measured in benchmarks/search.py).

    Song vectors are upserted (through a temporary table, since COPY cannot ON CONFLICT) and the
    section vectors replaced, so a rerun after a crash converges. Returns the section count.
    """
    songs = [s for s in songs if len(s.chunks)]
    if not songs:
        return 0
    ids = [s.song_id for s in songs]
    conn.execute(
        "DELETE FROM section_embeddings WHERE model = %s AND song_id = ANY(%s)", (model, ids)
    )
    conn.execute(
        "CREATE TEMP TABLE IF NOT EXISTS song_embeddings_load "
        "(song_id bigint, dim integer, content_hash text, embedding vector) ON COMMIT DELETE ROWS"
    )
    with conn.cursor() as cur:
        with cur.copy(
            "COPY song_embeddings_load (song_id, dim, content_hash, embedding) "
            "FROM STDIN (FORMAT BINARY)"
        ) as copy:
            copy.set_types(["int8", "int4", "text", "vector"])
            for song in songs:
                copy.write_row(
                    (song.song_id, int(song.vectors.shape[1]), song.content_hash, song.pooled)
                )
        cur.execute(
            """INSERT INTO song_embeddings (song_id, model, dim, content_hash, embedding)
               SELECT song_id, %s, dim, content_hash, embedding FROM song_embeddings_load
               ON CONFLICT (song_id, model) DO UPDATE SET dim = EXCLUDED.dim,
                   content_hash = EXCLUDED.content_hash, embedding = EXCLUDED.embedding,
                   updated_at = now()""",
            (model,),
        )
        cur.execute("TRUNCATE song_embeddings_load")
        sections = 0
        with cur.copy(
            "COPY section_embeddings (song_id, model, ordinal, header, text, embedding) "
            "FROM STDIN (FORMAT BINARY)"
        ) as copy:
            copy.set_types(["int8", "text", "int4", "text", "text", "vector"])
            for song in songs:
                for chunk, vector in zip(song.chunks, song.vectors, strict=True):
                    copy.write_row(
                        (song.song_id, model, chunk.ordinal, chunk.header, chunk.text, vector)
                    )
                    sections += 1
    return sections


# --- querying ------------------------------------------------------------------------------


class SearchHit(BaseModel):
    """One search result: the song, its score, and the section that matched best."""

    song_id: int
    artist: str
    title: str
    score: float
    section: str | None
    snippet: str
    url: str
    release_date: date | None = None
    mood: str | None = None
    themes: list[str] = Field(default_factory=list)
    quality: float | None = None
    explicit: bool | None = None

    def __str__(self) -> str:
        where = f" [{self.section}]" if self.section else ""
        return f"{self.score:.3f}  {self.artist} – {self.title}{where}: {self.snippet}"


@dataclass(frozen=True)
class SearchFilters:
    """Narrow a search. Unknown or impossible values raise ``ValueError`` when built, so a bad
    filter fails loudly instead of quietly returning nothing."""

    artists: tuple[str, ...] = ()  # lower-cased, to match lower(artists.name)
    year_from: int | None = None
    year_to: int | None = None
    moods: tuple[str, ...] = ()
    min_quality: float | None = None
    explicit: bool | None = None

    @classmethod
    def build(
        cls,
        artists: str | Sequence[str] | None = None,
        year_from: int | None = None,
        year_to: int | None = None,
        mood: str | Sequence[str] | None = None,
        min_quality: float | None = None,
        explicit: bool | None = None,
    ) -> SearchFilters:
        names = _strings("artist", artists)
        moods = tuple(m.lower() for m in _strings("mood", mood))
        unknown = sorted(set(moods) - {m.value for m in Mood})
        if unknown:
            raise ValueError(
                f"unknown mood {', '.join(map(repr, unknown))}; "
                f"choose from: {', '.join(m.value for m in Mood)}"
            )
        for name, year in (("year_from", year_from), ("year_to", year_to)):
            if year is not None and (
                isinstance(year, bool) or not isinstance(year, int) or not 1900 <= year <= 2100
            ):
                raise ValueError(f"{name} must be a year from 1900 to 2100, got {year!r}")
        if year_from is not None and year_to is not None and year_from > year_to:
            raise ValueError(f"year_from ({year_from}) is after year_to ({year_to})")
        if min_quality is not None and (
            isinstance(min_quality, bool)
            or not isinstance(min_quality, int | float)
            or not 1 <= min_quality <= 10
        ):
            raise ValueError(f"min_quality must be a number from 1 to 10, got {min_quality!r}")
        if explicit is not None and not isinstance(explicit, bool):
            raise ValueError(f"explicit must be True, False or None, got {explicit!r}")
        return cls(
            tuple(n.lower() for n in names), year_from, year_to, moods, min_quality, explicit
        )

    @property
    def active(self) -> bool:
        return self != SearchFilters()

    def sql(self, song_id: sql.Composable) -> tuple[sql.Composable, sql.Composable, dict[str, Any]]:
        """The joins and the WHERE condition that apply these filters to rows whose song id is
        ``song_id``, with their parameters. Only the joins a filter needs are added."""
        joins: list[sql.Composable] = [
            sql.SQL("JOIN songs fs ON fs.song_id = {}").format(song_id),
        ]
        where: list[sql.Composable] = [sql.SQL("true")]
        params: dict[str, Any] = {}
        if self.artists:
            joins.append(sql.SQL("JOIN artists fa ON fa.artist_id = fs.artist_id"))
            where.append(sql.SQL("lower(fa.name) = ANY(%(f_artists)s)"))
            params["f_artists"] = list(self.artists)
        if self.year_from is not None:
            where.append(sql.SQL("fs.release_date >= make_date(%(f_year_from)s, 1, 1)"))
            params["f_year_from"] = self.year_from
        if self.year_to is not None:
            where.append(sql.SQL("fs.release_date < make_date(%(f_year_to)s + 1, 1, 1)"))
            params["f_year_to"] = self.year_to
        if self.explicit is not None:
            joins.append(
                sql.SQL(
                    "JOIN spotify_tracks ft ON ft.song_id = {} AND ft.match_status = 'matched'"
                ).format(song_id)
            )
            where.append(sql.SQL("ft.explicit = %(f_explicit)s"))
            params["f_explicit"] = self.explicit
        if self.moods or self.min_quality is not None:
            joins.append(
                sql.SQL(_BEST_ANALYSIS).format(alias=sql.Identifier("fan"), song_id=song_id)
            )
            if self.moods:
                where.append(sql.SQL("fan.mood = ANY(%(f_moods)s)"))
                params["f_moods"] = list(self.moods)
            if self.min_quality is not None:
                where.append(sql.SQL("fan.quality >= %(f_min_quality)s"))
                params["f_min_quality"] = float(self.min_quality)
        return sql.SQL("\n").join(joins), sql.SQL(" AND ").join(where), params


def _strings(name: str, value: str | Sequence[str] | None) -> tuple[str, ...]:
    if value is None:
        return ()
    values = (value,) if isinstance(value, str) else tuple(value)
    if not all(isinstance(v, str) and v.strip() for v in values):
        raise ValueError(f"{name} filter values must be non-empty strings, got {value!r}")
    return tuple(v.strip() for v in values)


# an LLM analysis, when there is one, over the rule-based one
_BEST_ANALYSIS = """LEFT JOIN LATERAL (
        SELECT x.mood, x.themes, x.quality FROM analyses x
         WHERE x.song_id = {song_id}
         ORDER BY (x.model = 'rule-based'), x.updated_at DESC LIMIT 1) {alias} ON true"""

# HNSW candidates first (the index answers the inner ORDER BY ... LIMIT), filters after
_SEMANTIC_SQL = """
SELECT c.song_id, c.distance FROM (
    SELECT e.song_id, (e.embedding::vector({dim})) <=> %(q)s AS distance
      FROM song_embeddings e
     WHERE e.model = %(model)s
     ORDER BY (e.embedding::vector({dim})) <=> %(q)s
     LIMIT %(candidates)s) c
{joins}
 WHERE {where}
 ORDER BY c.distance
 LIMIT %(k)s
"""

# exact: every vector that passes the filters, for when filters left HNSW's candidates short
_SEMANTIC_EXACT_SQL = """
SELECT e.song_id, (e.embedding::vector({dim})) <=> %(q)s AS distance
  FROM song_embeddings e
{joins}
 WHERE e.model = %(model)s AND {where}
 ORDER BY 2
 LIMIT %(k)s
"""

# OR of the query's lexemes: a lyric need not contain every word of a natural-language query
_KEYWORD_SQL = """
WITH q AS (
    SELECT replace(plainto_tsquery('english', %(text)s)::text, ' & ', ' | ')::tsquery AS query)
SELECT l.song_id, ts_rank(%(weights)s, l.search_vector, q.query, 1) AS rank
  FROM lyrics l CROSS JOIN q
{joins}
 WHERE l.search_vector @@ q.query AND {where}
 ORDER BY rank DESC, l.song_id
 LIMIT %(k)s
"""

_DETAILS_SQL = """
SELECT s.song_id, a.name, s.title, s.url, s.release_date, best.header, best.text,
       an.mood, an.themes, an.quality, t.explicit
  FROM unnest(%(ids)s::bigint[]) WITH ORDINALITY AS h(song_id, position)
  JOIN songs s ON s.song_id = h.song_id
  JOIN artists a ON a.artist_id = s.artist_id
  LEFT JOIN spotify_tracks t ON t.song_id = s.song_id AND t.match_status = 'matched'
  {best}
  {analysis}
 ORDER BY h.position
"""

_BEST_CHUNK_BY_VECTOR = """LEFT JOIN LATERAL (
        SELECT c.header, c.text FROM section_embeddings c
         WHERE c.song_id = s.song_id AND c.model = %(model)s
         ORDER BY (c.embedding::vector({dim})) <=> %(q)s LIMIT 1) best ON true"""

_BEST_SECTION_BY_WORDS = """LEFT JOIN LATERAL (
        SELECT ls.header, s.title || E'\\n' || array_to_string(ls.lines, E'\\n') AS text
          FROM lyric_sections ls
         WHERE ls.song_id = s.song_id
         ORDER BY ts_rank(to_tsvector('english', array_to_string(ls.lines, ' ')),
                          replace(plainto_tsquery('english', %(text)s)::text, ' & ', ' | ')::tsquery)
                  DESC, ls.ordinal
         LIMIT 1) best ON true"""


def reciprocal_rank_fusion(
    rankings: Sequence[Sequence[int]], k: int = RRF_K
) -> list[tuple[int, float]]:
    """Fuse ranked id lists: each id scores sum(1 / (k + rank)) over the lists it appears in
    (rank from 1). Ties keep the order of first appearance, so the result is deterministic."""
    scores: dict[int, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + 1.0 / (k + rank)
    order = {item: i for i, item in enumerate(dict.fromkeys(i for r in rankings for i in r))}
    return sorted(scores.items(), key=lambda pair: (-pair[1], order[pair[0]]))


def validate_query(query: object, limit: object, mode: object) -> str:
    if not isinstance(query, str) or not query.strip():
        raise ValueError("query must be a non-empty string")
    if len(query) > MAX_QUERY_CHARS:
        raise ValueError(f"query is {len(query)} characters; the limit is {MAX_QUERY_CHARS}")
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be an integer from 1 to {MAX_LIMIT}, got {limit!r}")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    return query.strip()


class RapSearch(dg.ConfigurableResource):
    """Search over the lyrics warehouse: ``semantic`` (HNSW over song vectors), ``keyword``
    (PostgreSQL full text, title weighted over lyrics) or ``hybrid`` (reciprocal rank fusion
    of the two), with filters on artist, year, mood, quality and explicitness.

    ``RapSearch()`` searches the embedded warehouse; ``RapSearch(database_url=...)`` another.
    Thread-safe: the embedder is shared and read-only, and each call takes its own pooled
    connection.
    """

    database_url: str | None = Field(
        default=None, description="Warehouse URL; unset: embedded pgserver."
    )
    embedding_backend: str = Field(
        default=DEFAULT_BACKEND,
        description=f"Must match the backend that embedded the corpus: {', '.join(BACKENDS)}.",
    )
    embedding_dim: int | None = Field(default=None, description="hashing/openai: vector size.")
    embedding_model: str | None = Field(default=None, description="openai: the model id.")
    embedding_base_url: str | None = Field(default=None, description="openai: the base URL.")
    embedding_api_key: str | None = Field(default=None, description="openai: the API key.")
    ef_search: int = Field(
        default=DEFAULT_EF_SEARCH,
        description="HNSW candidate list size per query, 1–1000: recall against latency.",
    )
    default_mode: str = Field(
        default="semantic",
        description=f"One of {', '.join(MODES)}. Semantic is the fast one; hybrid ranks better "
        "on the graded set but full-text ranking costs ~100 ms more at 57K tracks.",
    )
    pool_max_size: int = Field(default=8, description="Warehouse connections per process.")

    _warehouse: Warehouse | None = PrivateAttr(default=None)

    @classmethod
    def from_env(cls, **overrides: Any) -> RapSearch:
        """Configured from the same environment variables as the pipeline (DATABASE_URL,
        RAP_ASSETS_EMBEDDING_BACKEND, EMBEDDING_*), for use outside Dagster."""
        embedding = embedding_env() | {"api_key": os.environ.get("EMBEDDING_API_KEY") or None}
        settings: dict[str, Any] = {
            "database_url": os.environ.get("DATABASE_URL") or None,
            **{f"embedding_{k}": v for k, v in embedding.items()},
        }
        return cls(**(settings | overrides))

    @property
    def warehouse(self) -> Warehouse:
        if self._warehouse is None:
            self._warehouse = Warehouse(
                database_url=self.database_url, pool_max_size=self.pool_max_size
            )
        return self._warehouse

    @property
    def embedding_spec(self) -> EmbeddingSpec:
        return EmbeddingSpec(
            self.embedding_backend,
            self.embedding_dim,
            self.embedding_model,
            self.embedding_base_url,
            self.embedding_api_key,
        )

    def search(
        self,
        query: str,
        limit: int = 10,
        *,
        mode: str | None = None,
        artists: str | Sequence[str] | None = None,
        year_from: int | None = None,
        year_to: int | None = None,
        mood: str | Sequence[str] | None = None,
        min_quality: float | None = None,
        explicit: bool | None = None,
    ) -> list[SearchHit]:
        """The ``limit`` best songs for ``query``. Raises ``ValueError`` for an empty or over-
        long query, a limit outside 1–100, an unknown mode or a bad filter value."""
        mode = mode or self.default_mode
        text = validate_query(query, limit, mode)
        filters = SearchFilters.build(artists, year_from, year_to, mood, min_quality, explicit)
        vector = None
        if mode != "keyword":
            vector = get_embedder(self.embedding_spec).embed([text])[0]
        depth = limit if mode != "hybrid" else max(limit, FUSION_DEPTH)
        with self.warehouse.connection() as conn:
            semantic = self._semantic(conn, vector, filters, depth) if vector is not None else []
            keyword = self._keyword(conn, text, filters, depth) if mode != "semantic" else []
            if mode == "semantic":
                ranked = [(song_id, 1.0 - distance) for song_id, distance in semantic]
            elif mode == "keyword":
                ranked = keyword
            else:
                ranked = reciprocal_rank_fusion([[i for i, _ in semantic], [i for i, _ in keyword]])
            ranked = ranked[:limit]
            return self._details(conn, ranked, text, vector)

    # the three steps share the caller's connection (one transaction, one pool checkout)

    def _semantic(
        self,
        conn: psycopg.Connection[Any],
        vector: np.ndarray,
        filters: SearchFilters,
        k: int,
    ) -> list[tuple[int, float]]:
        embedder = get_embedder(self.embedding_spec)
        dim = sql.Literal(int(embedder.dim))
        # filters drop candidates after the index scan, so over-fetch when there are any
        candidates = k if not filters.active else min(1000, max(10 * k, 200))
        conn.execute(
            "SELECT set_config('hnsw.ef_search', %s, true)",
            (str(min(1000, max(self.ef_search, candidates))),),
        )
        joins, where, params = filters.sql(sql.SQL("c.song_id"))
        params |= {"q": vector, "model": embedder.name, "k": k, "candidates": candidates}
        rows = conn.execute(
            sql.SQL(_SEMANTIC_SQL).format(dim=dim, joins=joins, where=where), params
        ).fetchall()
        if len(rows) < k and filters.active:
            # an index scan would stop at ef_search rows again; this query must see them all
            conn.execute("SELECT set_config('enable_indexscan', 'off', true)")
            joins, where, params = filters.sql(sql.SQL("e.song_id"))
            params |= {"q": vector, "model": embedder.name, "k": k}
            rows = conn.execute(
                sql.SQL(_SEMANTIC_EXACT_SQL).format(dim=dim, joins=joins, where=where), params
            ).fetchall()
            conn.execute("SELECT set_config('enable_indexscan', 'on', true)")
        return [(int(song_id), float(distance)) for song_id, distance in rows]

    def _keyword(
        self, conn: psycopg.Connection[Any], text: str, filters: SearchFilters, k: int
    ) -> list[tuple[int, float]]:
        joins, where, params = filters.sql(sql.SQL("l.song_id"))
        params |= {"text": text, "weights": KEYWORD_WEIGHTS, "k": k}
        rows = conn.execute(
            sql.SQL(_KEYWORD_SQL).format(joins=joins, where=where), params
        ).fetchall()
        return [(int(song_id), float(rank)) for song_id, rank in rows]

    def _details(
        self,
        conn: psycopg.Connection[Any],
        ranked: Sequence[tuple[int, float]],
        text: str,
        vector: np.ndarray | None,
    ) -> list[SearchHit]:
        if not ranked:
            return []
        params: dict[str, Any] = {"ids": [song_id for song_id, _ in ranked], "text": text}
        best: sql.Composable
        if vector is not None:
            embedder = get_embedder(self.embedding_spec)
            best = sql.SQL(_BEST_CHUNK_BY_VECTOR).format(dim=sql.Literal(int(embedder.dim)))
            params |= {"q": vector, "model": embedder.name}
        else:
            best = sql.SQL(_BEST_SECTION_BY_WORDS)
        analysis = sql.SQL(_BEST_ANALYSIS).format(
            alias=sql.Identifier("an"), song_id=sql.SQL("s.song_id")
        )
        rows = conn.execute(
            sql.SQL(_DETAILS_SQL).format(best=best, analysis=analysis), params
        ).fetchall()
        scores = dict(ranked)
        return [
            SearchHit(
                song_id=song_id,
                artist=artist,
                title=title,
                url=url,
                release_date=release_date,
                score=round(scores[song_id], 4),
                section=header,
                snippet=_snippet(chunk),
                mood=mood,
                themes=list(themes or []),
                quality=quality,
                explicit=explicit,
            )
            for song_id, artist, title, url, release_date, header, chunk, mood, themes, quality, explicit in rows
        ]


def _snippet(chunk_text: str | None, max_chars: int = 160) -> str:
    if not chunk_text:
        return ""
    lines = chunk_text.split("\n")[1:]  # the first line of a chunk is the song title
    snippet = " / ".join(lines[:2])
    return snippet if len(snippet) <= max_chars else snippet[: max_chars - 1].rstrip() + "…"
