-- Retention deletes the oldest logged predictions first.
CREATE INDEX IF NOT EXISTS prediction_log_at ON prediction_log(at_ms);
