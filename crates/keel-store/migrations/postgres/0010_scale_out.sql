-- Scale-out: the audit head kept in the database (used where the head cannot be a file beside it), leases
-- for single-writer loops, and a change counter that replicas poll for alias moves and rollouts.
CREATE TABLE IF NOT EXISTS audit_head (
    id        BIGINT PRIMARY KEY CHECK (id = 1),
    seq       BIGINT NOT NULL,
    hash      TEXT NOT NULL,
    signature TEXT
);

CREATE TABLE IF NOT EXISTS leases (
    name       TEXT PRIMARY KEY,
    holder     TEXT NOT NULL,
    token      BIGINT NOT NULL,
    expires_ms BIGINT NOT NULL
);

CREATE TABLE IF NOT EXISTS changes (
    id      BIGINT PRIMARY KEY CHECK (id = 1),
    counter BIGINT NOT NULL
);
INSERT INTO changes(id, counter) VALUES (1, 0) ON CONFLICT(id) DO NOTHING;
