-- Persisted jobs (retraining): a queue with states, progress and cancellation that survives restarts.
CREATE TABLE IF NOT EXISTS jobs (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    kind             TEXT NOT NULL,
    model            TEXT NOT NULL,
    spec             TEXT NOT NULL,
    state            TEXT NOT NULL CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    progress         REAL NOT NULL DEFAULT 0,
    stage            TEXT NOT NULL DEFAULT '',
    message          TEXT NOT NULL DEFAULT '',
    result           TEXT NOT NULL DEFAULT 'null',
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    worker           TEXT,
    heartbeat_ms     INTEGER,
    created_by       TEXT NOT NULL,
    created_at       TEXT NOT NULL,
    started_at       TEXT,
    finished_at      TEXT
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs(state, id);

-- Live rollouts: at most one canary and one shadow version per model, next to its champion.
CREATE TABLE IF NOT EXISTS rollouts (
    model          TEXT PRIMARY KEY REFERENCES models(name),
    canary_version INTEGER,
    canary_weight  REAL NOT NULL DEFAULT 0,
    shadow_version INTEGER,
    started_at     TEXT NOT NULL,
    started_ms     INTEGER NOT NULL
);

-- Shadow scores, logged next to the served prediction for the online comparison.
ALTER TABLE prediction_log ADD COLUMN shadow_version INTEGER;
ALTER TABLE prediction_log ADD COLUMN shadow_output REAL;
