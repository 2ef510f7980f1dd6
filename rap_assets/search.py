"""Semantic search over the warehouse: the HNSW index build and the ``RapSearch`` resource,
which works inside Dagster and from plain Python (``from rap_assets import RapSearch``)."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import dagster as dg
from psycopg import sql
from pydantic import BaseModel, Field, PrivateAttr

from rap_assets.embeddings import get_embedder
from rap_assets.warehouse import Warehouse

# m=16 / ef_construction=64 are pgvector's defaults and reach recall@10 > 0.95 at this scale;
# ef_search is raised per query (40 by default, like pgvector) when callers want more recall.
HNSW_M = 16
HNSW_EF_CONSTRUCTION = 64
MAX_QUERY_CHARS = 1000


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
    the first bulk load is much faster than growing the graph row by row.
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
            conn.execute("SET LOCAL maintenance_work_mem = '512MB'")
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

    def __str__(self) -> str:
        where = f" [{self.section}]" if self.section else ""
        return f"{self.score:.3f}  {self.artist} – {self.title}{where}: {self.snippet}"


_SEARCH_SQL = """
WITH hits AS (
    SELECT e.song_id, (e.embedding::vector({dim})) <=> %(q)s AS distance
      FROM song_embeddings e
     WHERE e.model = %(model)s
     ORDER BY (e.embedding::vector({dim})) <=> %(q)s
     LIMIT %(k)s
)
SELECT h.song_id, a.name, s.title, s.url, s.release_date, 1 - h.distance AS score,
       best.header, best.text, an.mood, an.themes, an.quality
  FROM hits h
  JOIN songs s USING (song_id)
  JOIN artists a USING (artist_id)
  LEFT JOIN LATERAL (
        SELECT c.header, c.text FROM section_embeddings c
         WHERE c.song_id = h.song_id AND c.model = %(model)s
         ORDER BY (c.embedding::vector({dim})) <=> %(q)s LIMIT 1) best ON true
  LEFT JOIN LATERAL (
        -- an LLM analysis, when there is one, over the rule-based one
        SELECT x.mood, x.themes, x.quality FROM analyses x
         WHERE x.song_id = h.song_id
         ORDER BY (x.model = 'rule-based'), x.updated_at DESC LIMIT 1) an ON true
 ORDER BY h.distance
"""


def _snippet(chunk_text: str | None, max_chars: int = 160) -> str:
    if not chunk_text:
        return ""
    lines = chunk_text.split("\n")[1:]  # the first line of a chunk is the song title
    snippet = " / ".join(lines[:2])
    return snippet if len(snippet) <= max_chars else snippet[: max_chars - 1].rstrip() + "…"


class RapSearch(dg.ConfigurableResource):
    """Natural-language search over the lyrics warehouse.

    ``RapSearch()`` searches the embedded warehouse; ``RapSearch(database_url=...)`` another.
    Thread-safe: each call takes its own pooled connection.
    """

    database_url: str | None = Field(
        default=None, description="Warehouse URL; unset: embedded pgserver."
    )
    embedding_backend: str = Field(
        default="hashing", description="Must match the backend that embedded the corpus."
    )
    embedding_dim: int = Field(default=384)
    ef_search: int = Field(
        default=40, description="HNSW candidate list size per query (recall vs latency)."
    )

    _warehouse: Warehouse | None = PrivateAttr(default=None)

    @property
    def warehouse(self) -> Warehouse:
        if self._warehouse is None:
            self._warehouse = Warehouse(database_url=self.database_url)
        return self._warehouse

    def search(self, query: str, limit: int = 10) -> list[SearchHit]:
        if not isinstance(query, str) or not query.strip():
            raise ValueError("query must be a non-empty string")
        if len(query) > MAX_QUERY_CHARS:
            raise ValueError(f"query is {len(query)} characters; the limit is {MAX_QUERY_CHARS}")
        if not isinstance(limit, int) or not 1 <= limit <= 100:
            raise ValueError(f"limit must be an integer from 1 to 100, got {limit!r}")
        embedder = get_embedder(self.embedding_backend, self.embedding_dim)
        vector = embedder.embed([query.strip()])[0]
        statement = sql.SQL(_SEARCH_SQL).format(dim=sql.Literal(int(embedder.dim)))
        with self.warehouse.connection() as conn:
            conn.execute(
                "SELECT set_config('hnsw.ef_search', %s, true)", (str(max(self.ef_search, limit)),)
            )
            rows = conn.execute(
                statement, {"q": vector, "model": embedder.name, "k": limit}
            ).fetchall()
        return [
            SearchHit(
                song_id=song_id,
                artist=artist,
                title=title,
                url=url,
                release_date=release_date,
                score=round(float(score), 4),
                section=header,
                snippet=_snippet(text),
                mood=mood,
                themes=list(themes or []),
                quality=quality,
            )
            for song_id, artist, title, url, release_date, score, header, text, mood, themes, quality in rows
        ]
