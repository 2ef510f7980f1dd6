"""The whole evaluation path on labels from the local fake LLM; prints JSON.

    python benchmarks/evaluation_fake_labels.py

It starts a throwaway pgserver PostgreSQL, labels the whole sample corpus through the real LLM
client against `FakeOpenAI` (whose "second opinion" quality rewards lexical variety and
storytelling), and runs evaluation_metrics. The figures show the machinery end to end; they say
nothing about real LLM judgements, which need `LLM_API_KEY` and `rap-assets materialize`.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import dagster as dg
import pgserver

from rap_assets.analysis import LyricAnalyzer
from rap_assets.assets import ARTIST_ASSETS, CORPUS_ASSETS
from rap_assets.automation import load_watchlist
from rap_assets.cache import Cache
from rap_assets.embeddings import TextEmbedder
from rap_assets.evaluation import EvaluationSettings, evaluate, load_dataset
from rap_assets.genius import GeniusSource
from rap_assets.search import RapSearch
from rap_assets.settings import project_root
from rap_assets.spotify import SpotifySource
from rap_assets.warehouse import Warehouse, close_pools
from rap_assets_tests.fakes import FakeOpenAI


def main() -> None:
    server = pgserver.get_server(Path(tempfile.mkdtemp(prefix="rap-eval-")), cleanup_mode="delete")
    url = str(server.get_uri())
    try:
        with FakeOpenAI().running() as fake, dg.instance_for_test() as instance:
            resources = {
                "warehouse": Warehouse(database_url=url),
                "cache": Cache(namespace="evaluation-benchmark"),
                "genius": GeniusSource(),
                "spotify": SpotifySource(),
                "analyzer": LyricAnalyzer(
                    llm_api_key="benchmark", llm_base_url=fake.base_url, requests_per_minute=6000
                ),
                "embedder": TextEmbedder(),
                "search": RapSearch(database_url=url),
            }
            keys = [a.partition_key for a in load_watchlist(project_root() / "artists.yaml")]
            instance.add_dynamic_partitions("artists", keys)
            for key in keys:
                dg.materialize(
                    ARTIST_ASSETS, partition_key=key, instance=instance, resources=resources
                )
            dg.materialize(CORPUS_ASSETS, instance=instance, resources=resources)
        result = evaluate(
            load_dataset(Warehouse(database_url=url), TextEmbedder().model_name),
            EvaluationSettings(),
        )
        print(
            json.dumps(
                {
                    "labelled_songs": result.n_train + result.n_test,
                    "split": {
                        "train_songs": result.n_train,
                        "test_songs": result.n_test,
                        "train_artists": result.n_train_artists,
                        "test_artists": result.n_test_artists,
                    },
                    "models": {
                        m.name: {
                            "mae": round(m.mae, 3),
                            "mae_95ci": [round(x, 3) for x in m.mae_ci or ()],
                            "rmse": round(m.rmse, 3),
                            "spearman": None if m.spearman is None else round(m.spearman, 3),
                            "mae_vs_rule_based_pct": None
                            if m.improvement_vs_rule_based_pct is None
                            else round(m.improvement_vs_rule_based_pct, 1),
                        }
                        for m in result.models
                    },
                },
                indent=2,
            )
        )
    finally:
        close_pools()
        server.cleanup()


if __name__ == "__main__":
    main()
