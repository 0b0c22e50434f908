CREATE TABLE IF NOT EXISTS api_keys (
    id          TEXT PRIMARY KEY,
    hash        TEXT NOT NULL,
    role        TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    created_by  TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    revoked_at  TEXT
);
