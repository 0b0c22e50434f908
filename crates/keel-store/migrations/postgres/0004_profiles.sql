ALTER TABLE model_versions ADD COLUMN profile TEXT NOT NULL DEFAULT 'null';

CREATE TABLE IF NOT EXISTS profiles (
    model        TEXT NOT NULL,
    version      BIGINT NOT NULL,
    window_start BIGINT NOT NULL,
    replica      TEXT NOT NULL,
    counts       TEXT NOT NULL,
    updated_at   TEXT NOT NULL,
    PRIMARY KEY (model, version, window_start, replica)
);
