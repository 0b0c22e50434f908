CREATE TABLE IF NOT EXISTS prediction_log (
    model      TEXT NOT NULL,
    request_id TEXT NOT NULL,
    row        BIGINT NOT NULL,
    version    BIGINT NOT NULL,
    at_ms      BIGINT NOT NULL,
    features   BYTEA NOT NULL,
    output     DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (model, request_id, row)
);

CREATE TABLE IF NOT EXISTS labels (
    model      TEXT NOT NULL,
    request_id TEXT NOT NULL,
    row        BIGINT NOT NULL,
    label      DOUBLE PRECISION NOT NULL,
    at_ms      BIGINT NOT NULL,
    PRIMARY KEY (model, request_id, row)
);
