-- Experiment tracking: runs (from keel train, keel tune, or a user's own code over HTTP) in experiments.
CREATE TABLE IF NOT EXISTS experiments (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS runs (
    id            TEXT PRIMARY KEY,
    experiment_id BIGINT NOT NULL REFERENCES experiments(id),
    name          TEXT NOT NULL,
    source        TEXT NOT NULL,
    status        TEXT NOT NULL CHECK (status IN ('running', 'finished', 'failed', 'killed')),
    data_hash     TEXT,
    seed          BIGINT,
    created_by    TEXT NOT NULL,
    start_ms      BIGINT NOT NULL,
    end_ms        BIGINT,
    model         TEXT,
    version       BIGINT
);
CREATE INDEX IF NOT EXISTS runs_experiment ON runs(experiment_id, start_ms);

CREATE TABLE IF NOT EXISTS run_params (
    run_id TEXT NOT NULL REFERENCES runs(id),
    key    TEXT NOT NULL,
    value  TEXT NOT NULL,
    PRIMARY KEY (run_id, key)
);

-- One value per metric and step (a later value at the same step replaces it); lower/upper hold an interval.
CREATE TABLE IF NOT EXISTS run_metrics (
    run_id TEXT NOT NULL REFERENCES runs(id),
    key    TEXT NOT NULL,
    step   BIGINT NOT NULL,
    value  DOUBLE PRECISION NOT NULL,
    lower  DOUBLE PRECISION,
    upper  DOUBLE PRECISION,
    at_ms  BIGINT NOT NULL,
    PRIMARY KEY (run_id, key, step)
);

CREATE TABLE IF NOT EXISTS run_tags (
    run_id TEXT NOT NULL REFERENCES runs(id),
    key    TEXT NOT NULL,
    value  TEXT NOT NULL,
    PRIMARY KEY (run_id, key)
);

CREATE TABLE IF NOT EXISTS run_artifacts (
    run_id TEXT NOT NULL REFERENCES runs(id),
    path   TEXT NOT NULL,
    uri    TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    size   BIGINT NOT NULL,
    PRIMARY KEY (run_id, path)
);

-- Versions: a description, tags, archiving, and deleted numbers (never reused).
ALTER TABLE model_versions ADD COLUMN version_description TEXT NOT NULL DEFAULT '';
ALTER TABLE model_versions ADD COLUMN archived_at TEXT;

CREATE TABLE IF NOT EXISTS version_tags (
    model   TEXT NOT NULL,
    version BIGINT NOT NULL,
    key     TEXT NOT NULL,
    value   TEXT NOT NULL,
    PRIMARY KEY (model, version, key),
    FOREIGN KEY (model, version) REFERENCES model_versions(model, version)
);

CREATE TABLE IF NOT EXISTS deleted_versions (
    model      TEXT NOT NULL,
    version    BIGINT NOT NULL,
    deleted_at TEXT NOT NULL,
    deleted_by TEXT NOT NULL,
    PRIMARY KEY (model, version)
);
