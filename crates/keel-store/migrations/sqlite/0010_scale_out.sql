-- Scale-out: the audit head kept in the database (used where the head cannot be a file beside it), leases
-- for single-writer loops, and a change counter that replicas poll for alias moves and rollouts.
CREATE TABLE IF NOT EXISTS audit_head (
    id        INTEGER PRIMARY KEY CHECK (id = 1),
    seq       INTEGER NOT NULL,
    hash      TEXT NOT NULL,
    signature TEXT
);

CREATE TABLE IF NOT EXISTS leases (
    name       TEXT PRIMARY KEY,
    holder     TEXT NOT NULL,
    token      INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS changes (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    counter INTEGER NOT NULL
);
INSERT INTO changes(id, counter) VALUES (1, 0) ON CONFLICT(id) DO NOTHING;
