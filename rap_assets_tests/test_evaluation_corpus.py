"""The evaluation over a warehouse holding the whole sample corpus."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import mean_absolute_error, mean_squared_error
from sklearn.model_selection import GroupShuffleSplit

from rap_assets.embeddings import TextEmbedder
from rap_assets.evaluation import EvaluationSettings, evaluate, load_dataset, persist_evaluation
from rap_assets.warehouse import Warehouse


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
