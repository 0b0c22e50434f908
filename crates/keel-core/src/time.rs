//! The clock. Everything that records a time asks here, so tests and replays can reason about one source.

/// Current UTC time as an RFC 3339 string with millisecond precision.
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Milliseconds since the Unix epoch.
pub fn now_unix_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
