"""Retrieval quality and speed of every local embedding backend over the sample corpus;
prints JSON.

    python benchmarks/retrieval_quality.py [--backends model2vec,minilm,hashing]

It starts a throwaway pgserver PostgreSQL, materializes the sample corpus through the real
assets, then for each backend embeds every song through the lyric_embeddings asset, builds its
HNSW index, and scores the 58 graded queries of rap_assets/sample_corpus/retrieval.yaml in the
semantic, keyword and hybrid modes (nDCG@10, recall@10). Keyword search does not use vectors,
so its figures are the same for every backend. The openai backend is not measured here: the
machine that produced the README's figures cannot reach a provider.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import dagster as dg
import pgserver

from rap_assets.analysis import LyricAnalyzer
from rap_assets.assets import ARTIST_ASSETS
from rap_assets.automation import load_watchlist
from rap_assets.cache import Cache
from rap_assets.embeddings import TextEmbedder
from rap_assets.genius import GeniusSource
from rap_assets.retrieval import evaluate, index_with
from rap_assets.search import MODES, RapSearch
from rap_assets.settings import project_root
from rap_assets.spotify import SpotifySource
from rap_assets.warehouse import Warehouse, close_pools


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backends", default="model2vec,minilm,hashing")
    backends = parser.parse_args().backends.split(",")
    server = pgserver.get_server(Path(tempfile.mkdtemp(prefix="rap-rq-")), cleanup_mode="delete")
    url = str(server.get_uri())
    report: dict[str, object] = {"queries": None, "backends": {}}
    try:
        warehouse = Warehouse(database_url=url)
        with dg.instance_for_test() as instance:
            resources = {
                "warehouse": warehouse,
                "cache": Cache(namespace="retrieval-benchmark"),
                "genius": GeniusSource(),
                "spotify": SpotifySource(),
                "analyzer": LyricAnalyzer(),
                "embedder": TextEmbedder(backend="hashing"),
            }
            keys = [a.partition_key for a in load_watchlist(project_root() / "artists.yaml")]
            instance.add_dynamic_partitions("artists", keys)
            for key in keys:
                dg.materialize(
                    ARTIST_ASSETS, partition_key=key, instance=instance, resources=resources
                )
            for backend in backends:
                speed = index_with(TextEmbedder(backend=backend), warehouse, instance, keys)
                search = RapSearch(database_url=url, embedding_backend=backend)
                modes = {mode: evaluate(search, mode) for mode in MODES}
                report["queries"] = modes["semantic"]["queries"]
                report["backends"][backend] = speed | {  # type: ignore[index]
                    mode: {k: v for k, v in figures.items() if k in ("ndcg_at_10", "recall_at_10")}
                    for mode, figures in modes.items()
                }
    finally:
        close_pools()
        server.cleanup()
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
