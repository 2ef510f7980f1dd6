"""Retrieval quality: the graded query set written for the sample corpus, and nDCG@k and
recall@k over it, for any search mode and embedding backend.

The metrics are pure functions over ranked ids and grades; ``evaluate`` runs a ``RapSearch``
over the set. ``benchmarks/retrieval_quality.py`` prints the table for every backend, and
``rap_assets_tests/test_retrieval.py`` holds each figure at a threshold.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from statistics import fmean
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    import dagster as dg

    from rap_assets.embeddings import TextEmbedder
    from rap_assets.search import RapSearch
    from rap_assets.warehouse import Warehouse

K = 10


@dataclass(frozen=True)
class Judged:
    query: str
    grades: Mapping[tuple[str, str], int]  # (artist, title) -> 1..3


def load_queries() -> list[Judged]:
    text = resources.files("rap_assets.sample_corpus").joinpath("retrieval.yaml").read_text()
    return [
        Judged(
            item["query"],
            {(artist, title): int(grade) for artist, title, grade in item["relevant"]},
        )
        for item in yaml.safe_load(text)["queries"]
    ]


def dcg(gains: Sequence[float]) -> float:
    return sum(gain / math.log2(rank + 1) for rank, gain in enumerate(gains, start=1))


def ndcg_at_k(ranked: Sequence[Any], grades: Mapping[Any, int], k: int = K) -> float:
    """Normalised discounted cumulative gain with exponential gains (2^grade - 1), so a
    grade-3 song at rank 1 outweighs two grade-1 songs."""
    ideal = dcg(sorted((2.0**g - 1 for g in grades.values()), reverse=True)[:k])
    if ideal == 0:
        return 0.0
    return dcg([2.0 ** grades.get(item, 0) - 1 for item in ranked[:k]]) / ideal


def recall_at_k(ranked: Sequence[Any], grades: Mapping[Any, int], k: int = K) -> float:
    relevant = {item for item, grade in grades.items() if grade > 0}
    return len(relevant & set(ranked[:k])) / len(relevant) if relevant else 0.0


def resolve(warehouse: Warehouse, queries: Sequence[Judged]) -> dict[tuple[str, str], int]:
    """(artist, title) -> song_id for every judged song; a judged song missing from the
    warehouse is an error (a typo in the set would otherwise just lower every score)."""
    rows = warehouse.fetch_all(
        "SELECT a.name, s.title, s.song_id FROM songs s JOIN artists a USING (artist_id)"
    )
    ids = {(artist, title): song_id for artist, title, song_id in rows}
    missing = sorted({key for q in queries for key in q.grades} - ids.keys())
    if missing:
        raise LookupError(f"judged songs not in the warehouse: {missing}")
    return ids


def evaluate(
    search: RapSearch, mode: str, queries: Sequence[Judged] | None = None
) -> dict[str, Any]:
    """Mean nDCG@10 and recall@10 of ``search`` in ``mode`` over the set, with the worst
    queries named so that a regression says where it is."""
    queries = queries if queries is not None else load_queries()
    ids = resolve(search.warehouse, queries)
    per_query: list[tuple[str, float, float]] = []
    for judged in queries:
        grades = {ids[key]: grade for key, grade in judged.grades.items()}
        ranked = [hit.song_id for hit in search.search(judged.query, limit=K, mode=mode)]
        per_query.append((judged.query, ndcg_at_k(ranked, grades), recall_at_k(ranked, grades)))
    return {
        "mode": mode,
        "queries": len(per_query),
        "ndcg_at_10": round(fmean(ndcg for _, ndcg, _ in per_query), 4),
        "recall_at_10": round(fmean(recall for _, _, recall in per_query), 4),
        "worst": [query for query, _, _ in sorted(per_query, key=lambda q: q[1])[:3]],
    }


def hnsw_recall(search: RapSearch, queries: Sequence[str], k: int = K) -> float:
    """The share of the exact top ``k`` (a full scan over every song vector) that semantic
    search returns through the HNSW index, over ``queries``."""
    from psycopg import sql

    from rap_assets.embeddings import get_embedder

    embedder = get_embedder(search.embedding_spec)
    exact_sql = sql.SQL(
        "SELECT song_id FROM song_embeddings WHERE model = %s "
        "ORDER BY embedding::vector({dim}) <=> %s LIMIT %s"
    ).format(dim=sql.Literal(int(embedder.dim)))
    found = 0
    with search.warehouse.connection() as conn:
        # SET LOCAL: this transaction only, for the connection goes back to the pool
        conn.execute("SET LOCAL enable_indexscan = off")
        for query in queries:
            vector = embedder.embed([query])[0]
            exact = {row[0] for row in conn.execute(exact_sql, (embedder.name, vector, k))}
            approximate = search.search(query, limit=k, mode="semantic")
            found += len(exact & {hit.song_id for hit in approximate})
    return round(found / (k * len(queries)), 4)


def index_with(
    embedder: TextEmbedder,
    warehouse: Warehouse,
    instance: dg.DagsterInstance,
    partition_keys: Sequence[str],
) -> dict[str, float]:
    """Embed every partition with ``embedder`` and build its index, through the real assets
    (so backends are compared on exactly what the pipeline stores). Returns embedding
    throughput in chunks/s and the mean time to embed one query, in ms."""
    import dagster as dg

    from rap_assets.assets import lyric_embeddings, search_index

    resources = {"warehouse": warehouse, "embedder": embedder}
    chunks = seconds = 0.0
    for key in partition_keys:
        result = dg.materialize(
            [lyric_embeddings],
            partition_key=key,
            instance=instance,
            resources=resources,
            # re-embed even when vectors exist: the throughput figure must measure them all
            run_config={"ops": {"lyric_embeddings": {"config": {"full_refresh": True}}}},
        )
        metadata = result.asset_materializations_for_node("lyric_embeddings")[0].metadata
        chunks += metadata["section_vectors_written"].value  # type: ignore[operator]
        seconds += metadata["seconds_embed"].value  # type: ignore[operator]
    dg.materialize([search_index], instance=instance, resources=resources)
    queries = [q.query for q in load_queries()]
    started = time.perf_counter()
    for query in queries:
        embedder.embedder.embed([query])
    return {
        "chunks_per_second": round(chunks / seconds, 1) if seconds else 0.0,
        "query_embed_ms": round((time.perf_counter() - started) / len(queries) * 1000, 3),
    }
