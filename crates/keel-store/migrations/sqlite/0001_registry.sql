CREATE TABLE IF NOT EXISTS models (
    name        TEXT PRIMARY KEY,
    created_at  TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT ''
);

CREATE TABLE IF NOT EXISTS model_versions (
    model           TEXT NOT NULL REFERENCES models(name),
    version         INTEGER NOT NULL,
    kind            TEXT NOT NULL,
    objective       TEXT NOT NULL,
    artifact_uri    TEXT NOT NULL,
    artifact_sha256 TEXT NOT NULL,
    params          TEXT NOT NULL,
    metrics         TEXT NOT NULL,
    schema          TEXT NOT NULL,
    card            TEXT NOT NULL,
    dataset_hash    TEXT NOT NULL,
    code_version    TEXT NOT NULL,
    created_by      TEXT NOT NULL,
    created_at      TEXT NOT NULL,
    PRIMARY KEY (model, version)
);

CREATE TABLE IF NOT EXISTS aliases (
    model      TEXT NOT NULL,
    alias      TEXT NOT NULL,
    version    INTEGER NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (model, alias),
    FOREIGN KEY (model, version) REFERENCES model_versions(model, version)
);
