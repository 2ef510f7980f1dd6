"""Honest evaluation of a cheap quality model against baselines.

The question: can a model trained on lyric features and embeddings predict the quality score an
LLM analyzer gives? Labels come only from LLM analyses; the rule-based analyzer's score is a
baseline, so rows it labelled (or that fell back to it) never count as labels. The split is
seeded and grouped by artist, so no artist is in both train and test.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass, field, replace
from typing import Any

import joblib
import numpy as np
from psycopg.types.json import Jsonb
from scipy.stats import spearmanr
from sklearn.ensemble import HistGradientBoostingRegressor
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


def feature_row(
    features: dict[str, Any], popularity: Any, duration_ms: Any, explicit: Any
) -> list[float]:
    """The model's numeric inputs: every lyric feature, then the Spotify fields (0 when absent)."""
    spotify = [float(popularity or 0), float(duration_ms or 0) / 60000.0, float(bool(explicit))]
    return [float(features[name]) for name in FEATURE_NAMES] + spotify


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
    bootstrap_rounds: int = 1000


@dataclass(frozen=True)
class ModelScore:
    name: str
    mae: float
    rmse: float
    spearman: float | None = None
    mae_ci: tuple[float, float] | None = None
    rmse_ci: tuple[float, float] | None = None
    spearman_ci: tuple[float, float] | None = None
    improvement_vs_rule_based_pct: float | None = None
    params: dict[str, Any] = field(default_factory=dict)
    learned: bool = False


@dataclass
class EvaluationResult:
    models: list[ModelScore] = field(default_factory=list)
    n_train: int = 0
    n_test: int = 0
    n_train_artists: int = 0
    n_test_artists: int = 0
    dataset_hash: str = ""
    label_source: str = ""
    seed: int = 0
    skipped_reason: str | None = None
    fitted: dict[str, Any] = field(default_factory=dict, repr=False)

    def markdown(self) -> str:
        def ci(pair: tuple[float, float] | None) -> str:
            return f" ({pair[0]:.2f}–{pair[1]:.2f})" if pair else ""

        rows = [
            "| model | MAE (95% CI) | RMSE (95% CI) | Spearman (95% CI) | MAE vs rule-based |",
            "|---|---|---|---|---|",
        ]
        for m in self.models:
            spearman = "–" if m.spearman is None else f"{m.spearman:.3f}{ci(m.spearman_ci)}"
            gain = (
                "–"
                if m.improvement_vs_rule_based_pct is None
                else f"{m.improvement_vs_rule_based_pct:+.1f}%"
            )
            rows.append(
                f"| {m.name} | {m.mae:.3f}{ci(m.mae_ci)} | {m.rmse:.3f}{ci(m.rmse_ci)} | {spearman} | {gain} |"
            )
        return "\n".join(rows)

    def by_name(self, name: str) -> ModelScore:
        return next(m for m in self.models if m.name == name)

    @property
    def best_learned(self) -> ModelScore | None:
        learned = [m for m in self.models if m.learned]
        return min(learned, key=lambda m: m.mae) if learned else None


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
        features.append(feature_row(feats, popularity, duration, explicit))
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


def _spearman(truth: np.ndarray, predicted: np.ndarray) -> float | None:
    if np.ptp(truth) == 0 or np.ptp(predicted) == 0:
        return None  # undefined for a constant (the mean baseline)
    return float(spearmanr(truth, predicted).statistic)


def _bootstrap(
    truth: np.ndarray, predicted: np.ndarray, rng: np.random.Generator, rounds: int
) -> dict[str, tuple[float, float] | None]:
    """Percentile 95% intervals over test songs resampled with replacement."""
    maes, rmses, rhos = [], [], []
    for _ in range(rounds):
        idx = rng.integers(0, len(truth), len(truth))
        t, p = truth[idx], predicted[idx]
        maes.append(mean_absolute_error(t, p))
        rmses.append(np.sqrt(mean_squared_error(t, p)))
        rho = _spearman(t, p)
        if rho is not None and not np.isnan(rho):
            rhos.append(rho)

    def interval(values: list[float]) -> tuple[float, float] | None:
        if len(values) < rounds // 2:
            return None
        low, high = np.percentile(values, [2.5, 97.5])
        return float(low), float(high)

    return {"mae": interval(maes), "rmse": interval(rmses), "spearman": interval(rhos)}


def _scores(
    name: str,
    truth: np.ndarray,
    predicted: np.ndarray,
    settings: EvaluationSettings,
    *,
    learned: bool = False,
    **params: Any,
) -> ModelScore:
    # one bootstrap stream per model, from the seed and the name: reproducible and independent
    rng = np.random.default_rng([settings.seed, *name.encode()])
    intervals = _bootstrap(truth, predicted, rng, settings.bootstrap_rounds)
    return ModelScore(
        name=name,
        mae=float(mean_absolute_error(truth, predicted)),
        rmse=float(np.sqrt(mean_squared_error(truth, predicted))),
        spearman=_spearman(truth, predicted),
        mae_ci=intervals["mae"],
        rmse_ci=intervals["rmse"],
        spearman_ci=intervals["spearman"],
        params=params,
        learned=learned,
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
    train_groups = dataset.groups[train]
    # hyper-parameters are chosen by grouped cross-validation on the train split only
    cv = GroupKFold(n_splits=min(5, len(set(train_groups.tolist()))))

    rng = np.random.default_rng(settings.seed)
    models = [
        _scores("random", y_test, rng.uniform(1, 10, size=len(test)), settings),
        _scores("mean", y_test, np.full(len(test), y_train.mean()), settings),
        _scores("rule-based", y_test, dataset.rule_scores[test], settings),
    ]
    fitted: dict[str, Any] = {}
    candidates: list[tuple[str, Any, dict[str, list[Any]], np.ndarray]] = [
        (
            "ridge",
            make_pipeline(StandardScaler(), Ridge()),
            {"ridge__alpha": [0.1, 1.0, 10.0, 100.0, 1000.0]},
            x_all,
        ),
        (
            "gradient-boosting",
            HistGradientBoostingRegressor(random_state=settings.seed, max_iter=200),
            {"max_depth": [2, 3, None], "learning_rate": [0.03, 0.1]},
            dataset.features,
        ),
    ]
    for name, estimator, grid, x in candidates:
        search = GridSearchCV(estimator, grid, cv=cv, scoring="neg_mean_absolute_error")
        search.fit(x[train], y_train, groups=train_groups)
        predicted = np.clip(search.predict(x[test]), 1, 10)
        models.append(
            _scores(name, y_test, predicted, settings, learned=True, **search.best_params_)
        )
        fitted[name] = search.best_estimator_
    rule_mae = next(m.mae for m in models if m.name == "rule-based")
    models = [
        replace(
            m,
            improvement_vs_rule_based_pct=(rule_mae - m.mae) / rule_mae * 100 if rule_mae else None,
        )
        for m in models
    ]
    return EvaluationResult(
        models=models,
        n_train=len(train),
        n_test=len(test),
        n_train_artists=len(set(train_groups.tolist())),
        n_test_artists=len(set(dataset.groups[test].tolist())),
        dataset_hash=dataset.hash(),
        label_source=dataset.label_source,
        seed=settings.seed,
        fitted=fitted,
    )


def persist_evaluation(warehouse: Warehouse, run_id: str, result: EvaluationResult) -> int:
    def ci(pair: tuple[float, float] | None, i: int) -> float | None:
        return pair[i] if pair else None

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
            "spearman": m.spearman,
            "mae_ci_low": ci(m.mae_ci, 0),
            "mae_ci_high": ci(m.mae_ci, 1),
            "rmse_ci_low": ci(m.rmse_ci, 0),
            "rmse_ci_high": ci(m.rmse_ci, 1),
            "spearman_ci_low": ci(m.spearman_ci, 0),
            "spearman_ci_high": ci(m.spearman_ci, 1),
            "mae_improvement_vs_rule_based_pct": m.improvement_vs_rule_based_pct,
            "split_seed": result.seed,
            "params": Jsonb(json.loads(json.dumps(m.params, default=str))),
        }
        for m in result.models
    ]
    return warehouse.upsert("evaluation_runs", rows, key=["run_id", "model_name"], touch=False)


MODEL_FORMAT = "quality-v1"
#: Which inputs each learned model reads.
MODEL_INPUTS = {"ridge": "features+embeddings", "gradient-boosting": "features"}


def save_model(
    warehouse: Warehouse, run_id: str, result: EvaluationResult, name: str, embedding_model: str
) -> str:
    """Store the fitted pipeline (joblib bytes) in the warehouse; return its version."""
    buffer = io.BytesIO()
    joblib.dump({"pipeline": result.fitted[name], "inputs": MODEL_INPUTS[name]}, buffer)
    version = f"{MODEL_FORMAT}:{result.dataset_hash}:{name}"
    warehouse.upsert(
        "quality_models",
        [
            {
                "version": version,
                "model_name": name,
                "run_id": run_id,
                "dataset_hash": result.dataset_hash,
                "embedding_model": embedding_model,
                "artifact": buffer.getvalue(),
            }
        ],
        key=["version"],
        touch=False,
    )
    return version


def load_model(warehouse: Warehouse, version: str) -> dict[str, Any]:
    rows = warehouse.fetch_all("SELECT artifact FROM quality_models WHERE version = %s", (version,))
    if not rows:
        raise LookupError(f"no quality model {version!r} in the warehouse")
    model: dict[str, Any] = joblib.load(io.BytesIO(bytes(rows[0][0])))
    return model


@dataclass
class Unlabelled:
    song_ids: list[int]
    content_hashes: list[str]
    features: np.ndarray
    embeddings: np.ndarray


def load_unlabelled(warehouse: Warehouse, embedding_model: str) -> Unlabelled:
    """Songs with features and an embedding but no LLM analysis: what the cheap model scores."""
    rows = warehouse.fetch_all(
        """SELECT l.song_id, l.content_hash, f.features, e.embedding, t.popularity, t.duration_ms, t.explicit
             FROM lyrics l
             JOIN lyric_features f USING (song_id)
             JOIN song_embeddings e ON e.song_id = l.song_id AND e.model = %s
             LEFT JOIN spotify_tracks t ON t.song_id = l.song_id
            WHERE l.status = 'lyrics' AND NOT EXISTS (
                  SELECT 1 FROM analyses a WHERE a.song_id = l.song_id
                     AND a.model <> %s AND a.analyzer NOT LIKE 'rule-based%%')
            ORDER BY l.song_id""",
        (embedding_model, RULE_BASED_MODEL),
    )
    width = len(FEATURE_NAMES) + len(SPOTIFY_NAMES)
    dim = len(rows[0][3].to_numpy()) if rows else 0
    return Unlabelled(
        song_ids=[r[0] for r in rows],
        content_hashes=[r[1] for r in rows],
        features=np.asarray(
            [feature_row(r[2], r[4], r[5], r[6]) for r in rows], dtype=np.float64
        ).reshape(len(rows), width),
        embeddings=np.asarray([r[3].to_numpy() for r in rows], dtype=np.float64).reshape(
            len(rows), dim
        ),
    )


def predict(model: dict[str, Any], features: np.ndarray, embeddings: np.ndarray) -> np.ndarray:
    x = np.hstack([features, embeddings]) if model["inputs"] == "features+embeddings" else features
    return np.clip(model["pipeline"].predict(x), 1, 10)
