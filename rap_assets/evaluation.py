"""Honest evaluation of a cheap quality model against baselines.

The question: can a model trained on lyric features and embeddings predict the quality score an
LLM analyzer gives? Labels come only from LLM analyses; the rule-based analyzer's score is a
baseline, so rows it labelled (or that fell back to it) never count as labels. The split is
seeded and grouped by artist, so no artist is in both train and test.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from psycopg.types.json import Jsonb
from sklearn.linear_model import Ridge
from sklearn.metrics import mean_absolute_error, mean_squared_error
from sklearn.model_selection import GridSearchCV, GroupKFold, GroupShuffleSplit
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from rap_assets.analysis import RULE_BASED_MODEL, analyze_rule_based
from rap_assets.features import FEATURE_NAMES, LyricFeatures
from rap_assets.lyrics import Section
from rap_assets.warehouse import Warehouse

SPOTIFY_NAMES = ["popularity", "duration_ms", "explicit"]


@dataclass
class Dataset:
    song_ids: np.ndarray
    groups: np.ndarray  # artist ids
    features: np.ndarray
    embeddings: np.ndarray
    labels: np.ndarray
    rule_scores: np.ndarray
    label_source: str

    @property
    def n_labelled(self) -> int:
        return len(self.labels)

    def hash(self) -> str:
        digest = hashlib.sha256()
        digest.update(self.song_ids.tobytes())
        digest.update(np.round(self.labels, 4).tobytes())
        return digest.hexdigest()[:16]


@dataclass(frozen=True)
class EvaluationSettings:
    seed: int = 7
    test_fraction: float = 0.25
    min_labelled: int = 30


@dataclass(frozen=True)
class ModelScore:
    name: str
    mae: float
    rmse: float
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class EvaluationResult:
    models: list[ModelScore] = field(default_factory=list)
    n_train: int = 0
    n_test: int = 0
    dataset_hash: str = ""
    label_source: str = ""
    skipped_reason: str | None = None

    def markdown(self) -> str:
        rows = ["| model | MAE | RMSE |", "|---|---|---|"]
        rows += [f"| {m.name} | {m.mae:.3f} | {m.rmse:.3f} |" for m in self.models]
        return "\n".join(rows)

    def by_name(self, name: str) -> ModelScore:
        return next(m for m in self.models if m.name == name)


def load_dataset(warehouse: Warehouse, embedding_model: str) -> Dataset:
    """Songs with an LLM quality label, their features, embedding, Spotify fields and the
    rule-based score (computed from the same lyrics, as the baseline)."""
    rows = warehouse.fetch_all(
        """SELECT DISTINCT ON (lbl.song_id)
                  lbl.song_id, s.artist_id, s.title, lbl.quality, lbl.model, f.features, e.embedding,
                  t.popularity, t.duration_ms, t.explicit
             FROM analyses lbl
             JOIN songs s USING (song_id)
             JOIN lyric_features f ON f.song_id = lbl.song_id
             JOIN song_embeddings e ON e.song_id = lbl.song_id AND e.model = %s
             LEFT JOIN spotify_tracks t ON t.song_id = lbl.song_id
            WHERE lbl.model <> %s AND lbl.analyzer NOT LIKE 'rule-based%%'
            ORDER BY lbl.song_id, lbl.updated_at DESC""",
        (embedding_model, RULE_BASED_MODEL),
    )
    song_ids = [r[0] for r in rows]
    sections: dict[int, list[Section]] = {sid: [] for sid in song_ids}
    if song_ids:
        for song_id, header, performers, lines in warehouse.fetch_all(
            "SELECT song_id, header, performers, lines FROM lyric_sections WHERE song_id = ANY(%s) "
            "ORDER BY song_id, ordinal",
            (song_ids,),
        ):
            sections[song_id].append(Section(header, list(performers), list(lines)))
    features, embeddings, labels, rule_scores, groups, models = [], [], [], [], [], set()
    for (
        song_id,
        artist_id,
        title,
        quality,
        model,
        feats,
        embedding,
        popularity,
        duration,
        explicit,
    ) in rows:
        lyric = LyricFeatures(**feats)
        spotify = [float(popularity or 0), float(duration or 0) / 60000.0, float(bool(explicit))]
        features.append([float(feats[name]) for name in FEATURE_NAMES] + spotify)
        embeddings.append(np.asarray(embedding.to_numpy(), dtype=np.float32))
        labels.append(float(quality))
        rule_scores.append(analyze_rule_based(title, sections[song_id], lyric).quality)
        groups.append(artist_id)
        models.add(model)
    dim = len(embeddings[0]) if embeddings else 0
    return Dataset(
        song_ids=np.asarray(song_ids, dtype=np.int64),
        groups=np.asarray(groups, dtype=np.int64),
        features=np.asarray(features, dtype=np.float64).reshape(
            len(rows), len(FEATURE_NAMES) + len(SPOTIFY_NAMES)
        ),
        embeddings=np.asarray(embeddings, dtype=np.float64).reshape(len(rows), dim),
        labels=np.asarray(labels, dtype=np.float64),
        rule_scores=np.asarray(rule_scores, dtype=np.float64),
        label_source=", ".join(sorted(models)) or "none",
    )


def _scores(name: str, truth: np.ndarray, predicted: np.ndarray, **params: Any) -> ModelScore:
    return ModelScore(
        name=name,
        mae=float(mean_absolute_error(truth, predicted)),
        rmse=float(np.sqrt(mean_squared_error(truth, predicted))),
        params=params,
    )


def evaluate(dataset: Dataset, settings: EvaluationSettings) -> EvaluationResult:
    n = dataset.n_labelled
    if n < settings.min_labelled:
        return EvaluationResult(
            skipped_reason=(
                f"too few LLM-labelled songs: {n} < {settings.min_labelled}. Rule-based analyses are "
                "not labels (the rule-based score is a baseline); configure an LLM analyzer to label songs."
            ),
            label_source=dataset.label_source,
        )
    n_groups = len(set(dataset.groups.tolist()))
    if n_groups < 3:
        return EvaluationResult(
            skipped_reason=f"labelled songs come from {n_groups} artist(s); an artist-grouped split needs at least 3",
            label_source=dataset.label_source,
        )
    splitter = GroupShuffleSplit(
        n_splits=1, test_size=settings.test_fraction, random_state=settings.seed
    )
    train, test = next(splitter.split(dataset.features, dataset.labels, dataset.groups))
    y_train, y_test = dataset.labels[train], dataset.labels[test]
    x_all = np.hstack([dataset.features, dataset.embeddings])

    rng = np.random.default_rng(settings.seed)
    models = [
        _scores("random", y_test, rng.uniform(1, 10, size=len(test))),
        _scores("mean", y_test, np.full(len(test), y_train.mean())),
        _scores("rule-based", y_test, dataset.rule_scores[test]),
    ]
    train_groups = dataset.groups[train]
    folds = min(5, len(set(train_groups.tolist())))
    search = GridSearchCV(
        make_pipeline(StandardScaler(), Ridge()),
        {"ridge__alpha": [0.1, 1.0, 10.0, 100.0, 1000.0]},
        cv=GroupKFold(n_splits=folds),
        scoring="neg_mean_absolute_error",
    )
    search.fit(x_all[train], y_train, groups=train_groups)
    predicted = np.clip(search.predict(x_all[test]), 1, 10)
    models.append(
        _scores(
            "ridge", y_test, predicted, alpha=search.best_params_["ridge__alpha"], cv_folds=folds
        )
    )
    return EvaluationResult(
        models=models,
        n_train=len(train),
        n_test=len(test),
        dataset_hash=dataset.hash(),
        label_source=dataset.label_source,
    )


def persist_evaluation(warehouse: Warehouse, run_id: str, result: EvaluationResult) -> int:
    rows = [
        {
            "run_id": run_id,
            "model_name": m.name,
            "dataset_hash": result.dataset_hash,
            "label_source": result.label_source,
            "n_train": result.n_train,
            "n_test": result.n_test,
            "mae": m.mae,
            "rmse": m.rmse,
            "params": Jsonb(json.loads(json.dumps(m.params, default=str))),
        }
        for m in result.models
    ]
    return warehouse.upsert("evaluation_runs", rows, key=["run_id", "model_name"], touch=False)
