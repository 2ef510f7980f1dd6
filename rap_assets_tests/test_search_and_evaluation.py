"""RapSearch and the evaluation over a warehouse holding the whole sample corpus."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

import dagster as dg
import numpy as np
import pytest
from sklearn.metrics import mean_absolute_error, mean_squared_error
from sklearn.model_selection import GroupShuffleSplit

from rap_assets import RapSearch, SearchHit
from rap_assets.assets import ARTIST_ASSETS, CORPUS_ASSETS
from rap_assets.automation import load_watchlist
from rap_assets.embeddings import TextEmbedder
from rap_assets.evaluation import EvaluationSettings, evaluate, load_dataset, persist_evaluation
from rap_assets.warehouse import Warehouse

from .conftest import sample_resources


@pytest.fixture(scope="module")
def corpus_url(module_database_url: str) -> str:
    resources = sample_resources(module_database_url)
    with dg.instance_for_test() as instance:
        keys = [a.partition_key for a in load_watchlist()]
        instance.add_dynamic_partitions("artists", keys)
        for key in keys:
            assert dg.materialize(
                ARTIST_ASSETS, partition_key=key, instance=instance, resources=resources
            ).success
        assert dg.materialize(CORPUS_ASSETS, instance=instance, resources=resources).success
    return module_database_url


@pytest.mark.parametrize(
    ("query", "artist", "title"),
    [
        ("depression and healing on the therapist couch", "Quiet Harbor", "Therapist's Couch"),
        (
            "voting, ballots and organizing against gerrymandering",
            "Sister Solace",
            "Ballot & Bullhorn",
        ),
        ("a homophone hitman slaying rappers with wordplay", "Kilo Vance", "Homophone Homicide"),
        ("pool party in the summer sunshine", "Neon Ricky", "Pool Party Politics"),
        (
            "a lighthouse keeper guiding a fishing boat home through fog",
            "Old Man Ellis",
            "The Last Lighthouse Keeper",
        ),
    ],
)
def test_search_finds_the_song_about_a_theme(
    corpus_url: str, query: str, artist: str, title: str
) -> None:
    hits = RapSearch(database_url=corpus_url).search(query, limit=3)
    assert (artist, title) in [(h.artist, h.title) for h in hits]


def test_hits_are_typed_with_snippet_section_and_analysis(corpus_url: str) -> None:
    hits = RapSearch(database_url=corpus_url).search("battle rap", limit=5)
    assert len(hits) == 5
    assert all(isinstance(h, SearchHit) for h in hits)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    top = hits[0]
    assert top.artist == "Kilo Vance"
    assert top.snippet and top.section
    assert top.mood and top.themes and top.quality is not None


@pytest.mark.parametrize(
    ("query", "limit", "message"),
    [
        ("", 10, "non-empty"),
        ("   ", 10, "non-empty"),
        ("x" * 1001, 10, "limit is 1000"),
        ("ok", 0, "limit must be"),
    ],
)
def test_bad_queries_raise_value_error(
    corpus_url: str, query: str, limit: int, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        RapSearch(database_url=corpus_url).search(query, limit=limit)


def test_sql_in_a_query_is_just_text(corpus_url: str) -> None:
    search = RapSearch(database_url=corpus_url)
    search.search("'; DROP TABLE songs; --", limit=3)
    assert Warehouse(database_url=corpus_url).fetch_all("SELECT count(*) FROM songs")[0][0] > 60


def test_search_is_thread_safe(corpus_url: str) -> None:
    search = RapSearch(database_url=corpus_url)
    expected = [h.song_id for h in search.search("money and diamonds", limit=5)]
    results: list[list[int]] = []

    def worker() -> None:
        for _ in range(5):
            results.append([h.song_id for h in search.search("money and diamonds", limit=5)])

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 30 and all(r == expected for r in results)


def test_search_cli_json(corpus_url: str) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "rap_assets.cli",
            "search",
            "grief and loss",
            "--limit",
            "3",
            "--json",
        ],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "DATABASE_URL": corpus_url},
    )
    hits = json.loads(result.stdout)
    assert len(hits) == 3 and {"artist", "title", "score", "snippet"} <= set(hits[0])


def _label_with_reference_model(corpus_url: str, seed: int = 3) -> None:
    """Store analyses as an LLM analyzer would: one quality label per song under another model."""
    warehouse = Warehouse(database_url=corpus_url)
    rows = warehouse.fetch_dicts("SELECT * FROM analyses WHERE model = 'rule-based'")
    rng = np.random.default_rng(seed)
    labelled = []
    for row in rows:
        quality = float(np.clip(row["quality"] + rng.normal(0, 1.0) + 0.5, 1, 10))
        labelled.append(
            {
                **{k: v for k, v in row.items() if k != "updated_at"},
                "model": "reference-llm",
                "prompt_version": "p1",
                "analyzer": "llm",
                "quality": quality,
            }
        )
    warehouse.upsert("analyses", labelled, key=["song_id", "model", "prompt_version"])


def test_evaluation_metrics_equal_sklearns_on_the_same_split(corpus_url: str) -> None:
    _label_with_reference_model(corpus_url)
    dataset = load_dataset(Warehouse(database_url=corpus_url), TextEmbedder().model_name)
    assert dataset.n_labelled >= 60
    assert dataset.label_source == "reference-llm"
    settings = EvaluationSettings(seed=11, min_labelled=30)
    result = evaluate(dataset, settings)
    assert result.skipped_reason is None

    train, test = next(
        GroupShuffleSplit(n_splits=1, test_size=0.25, random_state=11).split(
            dataset.features, dataset.labels, dataset.groups
        )
    )
    assert set(dataset.groups[train]).isdisjoint(dataset.groups[test])
    assert (result.n_train, result.n_test) == (len(train), len(test))
    truth = dataset.labels[test]
    rule = result.by_name("rule-based")
    assert rule.mae == pytest.approx(mean_absolute_error(truth, dataset.rule_scores[test]))
    assert rule.rmse == pytest.approx(np.sqrt(mean_squared_error(truth, dataset.rule_scores[test])))
    mean = result.by_name("mean")
    assert mean.mae == pytest.approx(
        mean_absolute_error(truth, np.full(len(test), dataset.labels[train].mean()))
    )
    assert result.by_name("ridge").rmse >= result.by_name("ridge").mae

    # reproducible with the seed, and persisted under the run id
    assert evaluate(dataset, settings).models == result.models
    assert persist_evaluation(Warehouse(database_url=corpus_url), "run-1", result) == 5
    stored = Warehouse(database_url=corpus_url).fetch_all(
        "SELECT model_name, mae FROM evaluation_runs WHERE run_id = 'run-1' ORDER BY model_name"
    )
    assert [name for name, _ in stored] == [
        "gradient-boosting",
        "mean",
        "random",
        "ridge",
        "rule-based",
    ]


def test_evaluation_refuses_too_few_labels(corpus_url: str) -> None:
    dataset = load_dataset(Warehouse(database_url=corpus_url), TextEmbedder().model_name)
    result = evaluate(dataset, EvaluationSettings(min_labelled=10_000))
    assert result.models == []
    assert result.skipped_reason and "too few LLM-labelled songs" in result.skipped_reason
