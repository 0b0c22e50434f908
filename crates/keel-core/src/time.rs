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

/// Reads a timestamp the way Keel's data layer does: RFC 3339 (an offset is converted to UTC), `2024-03-01
/// 12:00:00[.fff]`, `2024-03-01T12:00:00`, `2024-03-01 12:00`, `2024/03/01 12:00:00`, or a bare date
/// (midnight). `None` when none of these fits.
pub fn parse_timestamp(s: &str) -> Option<chrono::NaiveDateTime> {
    let t = s.trim();
    if let Ok(d) = chrono::DateTime::parse_from_rfc3339(t) {
        return Some(d.naive_utc());
    }
    for f in [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
        "%Y/%m/%d %H:%M:%S",
    ] {
        if let Ok(d) = chrono::NaiveDateTime::parse_from_str(t, f) {
            return Some(d);
        }
    }
    for f in ["%Y-%m-%d", "%Y/%m/%d"] {
        if let Ok(d) = chrono::NaiveDate::parse_from_str(t, f) {
            return d.and_hms_opt(0, 0, 0);
        }
    }
    None
}

/// Parses a column of timestamps once (`None` stays missing), for every feature taken from it. A value that does
/// not parse is the error: its row (0-based) and text.
pub fn parse_column(
    values: &[Option<String>],
) -> Result<Vec<Option<chrono::NaiveDateTime>>, (usize, &str)> {
    values
        .iter()
        .enumerate()
        .map(|(i, v)| match v {
            None => Ok(None),
            Some(t) => parse_timestamp(t).map(Some).ok_or((i, t.as_str())),
        })
        .collect()
}

/// A number a model can learn from, taken from a timestamp column (`keel train --time-features`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimePart {
    /// The calendar year (2024).
    Year,
    /// The month, 1–12.
    Month,
    /// The day of the month, 1–31.
    Day,
    /// The day of the week, 0 = Monday … 6 = Sunday.
    DayOfWeek,
    /// The hour of the day, 0–23.
    Hour,
    /// Days (fractional) since 1970-01-01 00:00 UTC: the trend.
    ElapsedDays,
}

impl TimePart {
    /// Every part, in the order `--time-features COLUMN` adds them.
    pub const ALL: [TimePart; 6] = [
        TimePart::Year,
        TimePart::Month,
        TimePart::Day,
        TimePart::DayOfWeek,
        TimePart::Hour,
        TimePart::ElapsedDays,
    ];

    /// The part's name: the suffix of the feature (`pickup.day_of_week`) and the word `--time-features` takes.
    pub fn name(self) -> &'static str {
        match self {
            TimePart::Year => "year",
            TimePart::Month => "month",
            TimePart::Day => "day",
            TimePart::DayOfWeek => "day_of_week",
            TimePart::Hour => "hour",
            TimePart::ElapsedDays => "elapsed_days",
        }
    }

    /// The part named `name` (as [`TimePart::name`] writes it).
    pub fn parse(name: &str) -> Option<TimePart> {
        TimePart::ALL.into_iter().find(|p| p.name() == name.trim())
    }

    /// The part's value for a timestamp.
    pub fn of(self, t: &chrono::NaiveDateTime) -> f64 {
        use chrono::{Datelike, Timelike};
        match self {
            TimePart::Year => f64::from(t.year()),
            TimePart::Month => f64::from(t.month()),
            TimePart::Day => f64::from(t.day()),
            TimePart::DayOfWeek => f64::from(t.weekday().num_days_from_monday()),
            TimePart::Hour => f64::from(t.hour()),
            TimePart::ElapsedDays => t.and_utc().timestamp_millis() as f64 / 86_400_000.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_parts_of_a_timestamp() {
        let t = parse_timestamp("2024-03-01 13:30:00").unwrap();
        let parts: Vec<f64> = TimePart::ALL.iter().map(|p| p.of(&t)).collect();
        // 2024-03-01 was a Friday (4 from Monday); 19783 days after 1970-01-01, plus 13.5 hours.
        assert_eq!(&parts[..5], &[2024.0, 3.0, 1.0, 4.0, 13.0]);
        assert!((parts[5] - (19783.0 + 13.5 / 24.0)).abs() < 1e-9);
        // An offset is converted to UTC.
        let t = parse_timestamp("2024-03-01T00:30:00+01:00").unwrap();
        assert_eq!(TimePart::Day.of(&t), 29.0);
        assert_eq!(TimePart::parse("day_of_week"), Some(TimePart::DayOfWeek));
        assert_eq!(TimePart::parse("weekday"), None);
        // A column parses once; the first bad value is named by row.
        let column = [
            Some("2024-03-01".to_string()),
            None,
            Some("soon".to_string()),
        ];
        assert_eq!(parse_column(&column), Err((2, "soon")));
        assert_eq!(parse_column(&column[..2]).unwrap()[1], None);
    }
}
