"""Search at production scale: 57,718 synthetic tracks; prints JSON.

    python benchmarks/search.py [--tracks 57718] [--queries 1000] [--backend model2vec]

It starts a throwaway pgserver PostgreSQL, generates a deterministic synthetic catalogue
(rap_assets/sample_corpus/synthetic.py), loads it the way the pipeline stores songs (binary
COPY, one transaction per 2,000 tracks), embeds every section with the chosen backend, builds
the HNSW index after the load, then measures RapSearch.search end to end (query embedding
included) in each mode: p50/p95/p99 over the queries single-threaded, QPS with 8 threads, and
semantic recall@10 against an exact scan. Peak RSS is this process's and the largest
PostgreSQL backend's (the index build runs in a backend).
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pgserver

from rap_assets.embeddings import TextEmbedder
from rap_assets.metadata import percentile
from rap_assets.retrieval import hnsw_recall, load_queries
from rap_assets.sample_corpus import synthetic
from rap_assets.search import HNSW_EF_CONSTRUCTION, HNSW_M, MODES, RapSearch, build_search_index
from rap_assets.warehouse import Warehouse, close_pools


def _queries(n: int, seed: int = 7) -> list[str]:
    """The graded set's natural-language queries, then phrases of 2-6 corpus words."""
    rng = random.Random(seed)
    judged = [q.query for q in load_queries()]
    words = sorted(
        {
            w.strip(",.!?\"'").lower()
            for line in synthetic.sample_lines()
            for w in line.split()
            if len(w) > 3
        }
    )
    extra = [" ".join(rng.sample(words, rng.randint(2, 6))) for _ in range(max(0, n - len(judged)))]
    return (judged + extra)[:n]


def _latencies(search: RapSearch, queries: list[str], mode: str) -> dict[str, float]:
    timings = []
    for query in queries:
        started = time.perf_counter()
        search.search(query, limit=10, mode=mode)
        timings.append((time.perf_counter() - started) * 1000)
    return {
        "p50_ms": round(percentile(timings, 50), 2),
        "p95_ms": round(percentile(timings, 95), 2),
        "p99_ms": round(percentile(timings, 99), 2),
        "mean_ms": round(statistics.fmean(timings), 2),
    }


def _qps(search: RapSearch, queries: list[str], mode: str, threads: int = 8) -> float:
    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda q: search.search(q, limit=10, mode=mode), queries))
    return round(len(queries) / (time.perf_counter() - started), 1)


def _postgres_peak_rss_mb(data_dir: Path) -> float:
    """The largest VmHWM among the server's processes (postmaster and backends)."""
    peak = 0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
            if b"postgres" not in cmdline:
                continue
            status = (proc / "status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                peak = max(peak, int(line.split()[1]))
    return round(peak / 1024, 1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tracks", type=int, default=57_718)
    parser.add_argument("--queries", type=int, default=1_000)
    parser.add_argument("--recall-queries", type=int, default=300)
    parser.add_argument(
        "--text-queries",
        type=int,
        default=200,
        help="queries for the keyword and hybrid modes (full-text ranking is the slow part)",
    )
    parser.add_argument("--backend", default="model2vec")
    args = parser.parse_args()

    data_dir = Path(tempfile.mkdtemp(prefix="rap-search-bench-"))
    server = pgserver.get_server(data_dir, cleanup_mode="delete")
    url = str(server.get_uri())
    report: dict[str, object] = {"tracks": args.tracks, "backend": args.backend}
    try:
        warehouse = Warehouse(database_url=url, pool_max_size=9)
        embedder = TextEmbedder(backend=args.backend).embedder
        started = time.perf_counter()
        catalogue = list(synthetic.tracks(args.tracks))
        report["generate_seconds"] = round(time.perf_counter() - started, 2)
        phases = synthetic.load(warehouse, catalogue, embedder)
        build = build_search_index(warehouse, embedder.name, embedder.dim, force=True)
        load_seconds = phases["load_catalogue"] + phases["load_vectors"]
        report |= {
            "model": embedder.name,
            "dimension": embedder.dim,
            "section_vectors": phases["section_vectors"],
            "embed_seconds": round(phases["embed"], 2),
            "embed_tracks_per_second": round(args.tracks / phases["embed"], 1),
            "embed_sections_per_second": round(phases["section_vectors"] / phases["embed"], 1),
            "load_catalogue_seconds": round(phases["load_catalogue"], 2),
            "load_vectors_seconds": round(phases["load_vectors"], 2),
            "index_build_seconds": build.seconds,
            "index_size_mb": round(build.size_bytes / 2**20, 1),
            "load_and_index_seconds": round(load_seconds + build.seconds, 2),
            "hnsw": {
                "m": HNSW_M,
                "ef_construction": HNSW_EF_CONSTRUCTION,
                "ef_search": RapSearch().ef_search,
            },
        }
        search = RapSearch(database_url=url, embedding_backend=args.backend, pool_max_size=9)
        queries = _queries(args.queries)
        for query in queries[:20]:  # warm the pool, the caches and the model
            search.search(query, mode="hybrid")
        per_mode = {m: queries if m == "semantic" else queries[: args.text_queries] for m in MODES}
        report["queries_per_mode"] = {m: len(q) for m, q in per_mode.items()}
        report["latency"] = {m: _latencies(search, q, m) for m, q in per_mode.items()}
        report["qps_8_threads"] = {m: _qps(search, q, m) for m, q in per_mode.items()}
        recall_queries = queries[: args.recall_queries]
        report["semantic_recall_at_10_vs_exact"] = hnsw_recall(search, recall_queries)
        # what a larger HNSW candidate list buys, and costs
        report["ef_search_sweep"] = {
            ef: {
                "recall_at_10": hnsw_recall(tuned, recall_queries),
                "p95_ms": _latencies(tuned, queries[:300], "semantic")["p95_ms"],
            }
            for ef in (200, 400, 600, 800)
            for tuned in [search.model_copy(update={"ef_search": ef})]
        }
        report["recall_queries"] = min(args.recall_queries, len(queries))
        report["peak_rss_mb"] = {
            "benchmark_process": round(
                resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1
            ),
            "postgres_largest_process": _postgres_peak_rss_mb(data_dir),
        }
    finally:
        close_pools()
        server.cleanup()
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
