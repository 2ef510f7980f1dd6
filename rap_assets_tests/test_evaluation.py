"""The evaluation in depth: LLM labels for four artists from the fake OpenAI-compatible server,
rule-based analyses only for the other two, whose songs the saved model then scores."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import dagster as dg
import numpy as np
import pytest
from scipy.stats import spearmanr
from sklearn.metrics import mean_absolute_error

from rap_assets.analysis import LyricAnalyzer
from rap_assets.assets import ARTIST_ASSETS, CORPUS_ASSETS
from rap_assets.automation import load_watchlist
from rap_assets.checks import ALL_CHECKS
from rap_assets.embeddings import TextEmbedder
from rap_assets.evaluation import (
    EvaluationSettings,
    evaluate,
    load_dataset,
    load_model,
    predict,
)
from rap_assets.warehouse import Warehouse

from .conftest import asset_metadata, sample_resources
from .fakes import FakeOpenAI

LLM_ARTISTS = ["kilo-vance", "sister-solace", "neon-ricky", "old-man-ellis"]


@pytest.fixture(scope="module")
def labelled(module_database_url: str) -> Iterator[tuple[str, dg.ExecuteInProcessResult]]:
    with FakeOpenAI().running() as fake, dg.instance_for_test() as instance:
        llm = LyricAnalyzer(
            llm_api_key="sk-eval", llm_base_url=fake.base_url, requests_per_minute=6000.0
        )
        keys = [a.partition_key for a in load_watchlist()]
        instance.add_dynamic_partitions("artists", keys)
        for key in keys:
            analyzer = llm if key in LLM_ARTISTS else LyricAnalyzer()
            resources = {**sample_resources(module_database_url), "analyzer": analyzer}
            assert dg.materialize(
                ARTIST_ASSETS, partition_key=key, instance=instance, resources=resources
            ).success
        corpus = dg.materialize(
            [*ARTIST_ASSETS, *CORPUS_ASSETS, *ALL_CHECKS],
            instance=instance,
            resources=sample_resources(module_database_url),
            selection=[a.key for a in CORPUS_ASSETS],
        )
        assert corpus.success
        yield module_database_url, corpus


def test_dataset_holds_only_llm_labels(labelled: tuple[str, dg.ExecuteInProcessResult]) -> None:
    url, corpus = labelled
    meta = asset_metadata(corpus, "evaluation_dataset")
    assert meta["labelled_songs"] == 42 and meta["artists"] == 4
    assert meta["label_source"] == "qwen/qwen3-4b-fp8"
    rows = Warehouse(database_url=url).fetch_all(
        "SELECT count(DISTINCT artist_id), count(*), min(label_model) FROM evaluation_dataset"
    )
    assert rows == [(4, 42, "qwen/qwen3-4b-fp8")]


def test_metrics_with_intervals_and_improvement(
    labelled: tuple[str, dg.ExecuteInProcessResult],
) -> None:
    url, corpus = labelled
    meta = asset_metadata(corpus, "evaluation_metrics")
    assert meta["status"] == "evaluated"
    assert "MAE (95% CI)" in str(meta["metrics"]) and "vs rule-based" in str(meta["metrics"])
    dataset = load_dataset(Warehouse(database_url=url), TextEmbedder().model_name)
    settings = EvaluationSettings(min_labelled=30, bootstrap_rounds=300)
    result = evaluate(dataset, settings)
    test_artists = result.n_test_artists
    assert result.n_train_artists + test_artists == 4 and test_artists >= 1
    rule = result.by_name("rule-based")
    for model in result.models:
        assert model.mae_ci and model.mae_ci[0] <= model.mae <= model.mae_ci[1]
        assert model.rmse_ci and model.rmse_ci[0] <= model.rmse <= model.rmse_ci[1]
        assert model.rmse >= model.mae
        assert model.improvement_vs_rule_based_pct == pytest.approx(
            (rule.mae - model.mae) / rule.mae * 100
        )
    assert result.by_name("mean").spearman is None  # a constant has no rank correlation
    assert rule.spearman is not None


def test_spearman_equals_scipy_and_the_run_is_reproducible(
    labelled: tuple[str, dg.ExecuteInProcessResult],
) -> None:
    from sklearn.model_selection import GroupShuffleSplit

    url, _ = labelled
    dataset = load_dataset(Warehouse(database_url=url), TextEmbedder().model_name)
    settings = EvaluationSettings(seed=3, min_labelled=30, bootstrap_rounds=200)
    first, second = evaluate(dataset, settings), evaluate(dataset, settings)
    assert first.models == second.models
    _, test = next(
        GroupShuffleSplit(n_splits=1, test_size=0.25, random_state=3).split(
            dataset.features, dataset.labels, dataset.groups
        )
    )
    rule = first.by_name("rule-based")
    expected = spearmanr(dataset.labels[test], dataset.rule_scores[test]).statistic
    assert rule.spearman == pytest.approx(expected)
    assert rule.mae == pytest.approx(
        mean_absolute_error(dataset.labels[test], dataset.rule_scores[test])
    )


def test_best_model_is_saved_and_scores_the_unlabelled_songs(
    labelled: tuple[str, dg.ExecuteInProcessResult],
) -> None:
    url, corpus = labelled
    metrics = asset_metadata(corpus, "evaluation_metrics")
    version = str(metrics["saved_model_version"])
    assert version.startswith("quality-v1:") and version.endswith(str(metrics["best_model"]))
    warehouse = Warehouse(database_url=url)
    model = load_model(warehouse, version)
    predictions = asset_metadata(corpus, "predicted_quality")
    # the two rule-based-only artists: Lil Crescent (11) and Quiet Harbor (10)
    assert predictions["songs_without_llm_analysis"] == 21 and predictions["rows_written"] == 21
    rows = warehouse.fetch_all(
        """SELECT p.song_id, p.score, p.predicted, a.partition_key FROM quality_predictions p
             JOIN songs s USING (song_id) JOIN artists a USING (artist_id) ORDER BY p.song_id"""
    )
    assert {r[3] for r in rows} == {"lil-crescent", "quiet-harbor"} and all(r[2] for r in rows)
    assert all(1 <= r[1] <= 10 for r in rows)
    from rap_assets.evaluation import load_unlabelled

    songs = load_unlabelled(warehouse, TextEmbedder().model_name)
    again = predict(model, songs.features, songs.embeddings)
    assert np.allclose(again, [r[1] for r in rows], atol=1e-3)


def test_check_compares_the_best_learned_model_with_the_rules(
    labelled: tuple[str, dg.ExecuteInProcessResult],
) -> None:
    url, corpus = labelled
    (evaluation,) = [
        e
        for e in corpus.get_asset_check_evaluations()
        if e.check_name == "learned_model_beats_rule_based"
    ]
    maes = dict(
        Warehouse(database_url=url).fetch_all(
            f"SELECT model_name, mae FROM evaluation_runs WHERE run_id = '{corpus.run_id}'"
        )
    )
    assert evaluation.passed == (min(maes["ridge"], maes["gradient-boosting"]) < maes["rule-based"])
    assert evaluation.severity == dg.AssetCheckSeverity.WARN


def test_rerun_with_unchanged_labels_writes_no_dataset_or_predictions(
    labelled: tuple[str, dg.ExecuteInProcessResult],
) -> None:
    url, _ = labelled
    with dg.instance_for_test() as instance:
        again = dg.materialize(
            CORPUS_ASSETS,
            instance=instance,
            resources=sample_resources(url)
            | {
                "cache": __import__("rap_assets.cache", fromlist=["Cache"]).Cache(
                    namespace=uuid.uuid4().hex
                )
            },
        )
    assert asset_metadata(again, "evaluation_dataset")["rows_written"] == 0
    assert asset_metadata(again, "predicted_quality")["rows_written"] == 0
