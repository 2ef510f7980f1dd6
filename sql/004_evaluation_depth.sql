-- Evaluation, in depth: rank correlation, bootstrap intervals, the improvement over the
-- rule-based baseline, the labelled dataset each run used, the trained models themselves
-- (joblib bytes, versioned, so any process or pod can load them) and their predictions.
ALTER TABLE evaluation_runs
    ADD COLUMN spearman                 double precision,
    ADD COLUMN mae_ci_low               double precision,
    ADD COLUMN mae_ci_high              double precision,
    ADD COLUMN rmse_ci_low              double precision,
    ADD COLUMN rmse_ci_high             double precision,
    ADD COLUMN spearman_ci_low          double precision,
    ADD COLUMN spearman_ci_high         double precision,
    ADD COLUMN mae_improvement_vs_rule_based_pct double precision,
    ADD COLUMN split_seed               integer;

CREATE TABLE evaluation_dataset (
    song_id         bigint PRIMARY KEY REFERENCES songs (song_id) ON DELETE CASCADE,
    artist_id       bigint NOT NULL,
    label           real NOT NULL,
    label_model     text NOT NULL,
    rule_score      real NOT NULL,
    dataset_hash    text NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE quality_models (
    version         text PRIMARY KEY,                   -- quality-v1:<dataset_hash>:<model>
    model_name      text NOT NULL,
    run_id          text NOT NULL,
    dataset_hash    text NOT NULL,
    embedding_model text NOT NULL,
    artifact        bytea NOT NULL,                     -- joblib dump of the fitted pipeline
    created_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE quality_predictions (
    song_id         bigint PRIMARY KEY REFERENCES songs (song_id) ON DELETE CASCADE,
    model_version   text NOT NULL REFERENCES quality_models (version),
    score           real NOT NULL CHECK (score BETWEEN 1 AND 10),
    predicted       boolean NOT NULL DEFAULT true,      -- a model's estimate, not an LLM analysis
    content_hash    text NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now()
);
