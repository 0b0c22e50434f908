//! The clock. Everything that records a time asks here, so tests and replays can reason about one source.

/// Current UTC time as an RFC 3339 string with millisecond precision.
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Milliseconds since the Unix epoch.
pub fn now_unix_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Seconds since the Unix epoch of an RFC 3339 time (`None` when it does not parse).
pub fn rfc3339_to_unix(t: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(t)
        .ok()
        .map(|d| d.timestamp())
}

/// A Unix time in seconds as `2026-12-06 10:00 UTC` (minutes; for window starts in reports).
pub fn unix_to_display(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0).map_or_else(
        || secs.to_string(),
        |d| d.format("%Y-%m-%d %H:%M UTC").to_string(),
    )
}
