CREATE TABLE IF NOT EXISTS prediction_log (
    model      TEXT NOT NULL,
    request_id TEXT NOT NULL,
    row        INTEGER NOT NULL,
    version    INTEGER NOT NULL,
    at_ms      INTEGER NOT NULL,
    features   BLOB NOT NULL,
    output     REAL NOT NULL,
    PRIMARY KEY (model, request_id, row)
);

CREATE TABLE IF NOT EXISTS labels (
    model      TEXT NOT NULL,
    request_id TEXT NOT NULL,
    row        INTEGER NOT NULL,
    label      REAL NOT NULL,
    at_ms      INTEGER NOT NULL,
    PRIMARY KEY (model, request_id, row)
);
