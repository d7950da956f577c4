//! Timestamps: whole seconds since the Unix epoch, UTC, written as RFC 3339
//! (`2026-11-22T10:00:00Z`) in status files. Pure arithmetic; reading the clock
//! happens only in [`Timestamp::now`], which `decide` never calls (it is given
//! `now`).

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

/// TEST-ONLY: the environment variable that fixes the tick's clock
/// ([`Timestamp::fixed_by`]).
pub const NOW_VAR: &str = "CONVERGE_NOW";

impl Timestamp {
    pub const fn from_unix(seconds: i64) -> Self {
        Timestamp(seconds)
    }

    pub const fn unix(self) -> i64 {
        self.0
    }

    /// The current time from the system clock.
    pub fn now() -> Self {
        let seconds = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        Timestamp(seconds)
    }

    /// TEST-ONLY: the time [`NOW_VAR`] (`CONVERGE_NOW`, RFC 3339) fixes for
    /// `converge reconcile`'s ticks, read from `env`; `None` when it is unset.
    /// Tests use it to fire schedules at chosen times; nothing else reads it,
    /// and supervisors of agents keep the system clock.
    pub fn fixed_by(env: &dyn Fn(&str) -> Option<String>) -> Result<Option<Self>, String> {
        match env(NOW_VAR) {
            None => Ok(None),
            Some(text) => Timestamp::parse_rfc3339(&text)
                .map(Some)
                .map_err(|e| format!("{NOW_VAR}: {e}")),
        }
    }

    #[must_use]
    pub fn plus(self, duration: Duration) -> Self {
        Timestamp(
            self.0
                .saturating_add(i64::try_from(duration.as_secs()).unwrap_or(i64::MAX)),
        )
    }

    #[must_use]
    pub fn minus(self, duration: Duration) -> Self {
        Timestamp(
            self.0
                .saturating_sub(i64::try_from(duration.as_secs()).unwrap_or(i64::MAX)),
        )
    }

    /// Seconds from `self` until `later` (zero if `later` is not later).
    pub fn until(self, later: Timestamp) -> Duration {
        Duration::from_secs(u64::try_from(later.0.saturating_sub(self.0)).unwrap_or(0))
    }

    /// Parses `YYYY-MM-DDTHH:MM:SS` followed by `Z` or `±HH:MM`, with optional
    /// fractional seconds (dropped).
    pub fn parse_rfc3339(text: &str) -> Result<Self, String> {
        let bad = || format!("`{text}` is not an RFC 3339 time such as 2026-11-22T10:00:00Z");
        let b = text.as_bytes();
        if b.len() < 20
            || b[4] != b'-'
            || b[7] != b'-'
            || !matches!(b[10], b'T' | b't' | b' ')
            || b[13] != b':'
            || b[16] != b':'
        {
            return Err(bad());
        }
        let num = |range: std::ops::Range<usize>| -> Result<i64, String> {
            let s = text.get(range).ok_or_else(bad)?;
            if !s.bytes().all(|c| c.is_ascii_digit()) {
                return Err(bad());
            }
            s.parse::<i64>().map_err(|_| bad())
        };
        let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
        let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
        if !(1..=12).contains(&month)
            || day < 1
            || day > days_in_month(year, month)
            || hour > 23
            || minute > 59
            || second > 60
        {
            return Err(bad());
        }
        let mut rest = &text[19..];
        if let Some(fraction) = rest.strip_prefix('.') {
            let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return Err(bad());
            }
            rest = &fraction[digits..];
        }
        let offset = match rest {
            "Z" | "z" => 0,
            _ if rest.len() == 6
                && (rest.starts_with('+') || rest.starts_with('-'))
                && &rest[3..4] == ":" =>
            {
                let sign = if rest.starts_with('-') { -1 } else { 1 };
                let h: i64 = rest[1..3].parse().map_err(|_| bad())?;
                let m: i64 = rest[4..6].parse().map_err(|_| bad())?;
                if h > 23 || m > 59 {
                    return Err(bad());
                }
                sign * (h * 3600 + m * 60)
            }
            _ => return Err(bad()),
        };
        let days = days_from_civil(year, month, day);
        Ok(Timestamp(
            days * 86_400 + hour * 3600 + minute * 60 + second.min(59) - offset,
        ))
    }
}

impl fmt::Display for Timestamp {
    /// RFC 3339 in UTC: `2026-11-22T10:00:00Z`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let days = self.0.div_euclid(86_400);
        let secs = self.0.rem_euclid(86_400);
        let (year, month, day) = civil_from_days(days);
        write!(
            f,
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
            secs / 3600,
            secs % 3600 / 60,
            secs % 60
        )
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Timestamp::parse_rfc3339(&text).map_err(serde::de::Error::custom)
    }
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day count since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(Timestamp::from_unix(0).to_string(), "1970-01-01T00:00:00Z");
        assert_eq!(
            Timestamp::from_unix(1_700_000_000).to_string(),
            "2023-11-14T22:13:20Z"
        );
        assert_eq!(
            Timestamp::from_unix(951_782_400).to_string(),
            "2000-02-29T00:00:00Z"
        );
        assert_eq!(Timestamp::from_unix(-1).to_string(), "1969-12-31T23:59:59Z");
    }

    #[test]
    fn parses_offsets_and_fractions() {
        let t = Timestamp::from_unix(1_700_000_000);
        assert_eq!(Timestamp::parse_rfc3339("2023-11-14T22:13:20Z"), Ok(t));
        assert_eq!(
            Timestamp::parse_rfc3339("2023-11-14T23:13:20.123+01:00"),
            Ok(t)
        );
        assert_eq!(Timestamp::parse_rfc3339("2023-11-14T17:13:20-05:00"), Ok(t));
    }

    #[test]
    fn rejects_malformed_times() {
        for bad in [
            "",
            "2023-11-14",
            "2023-13-01T00:00:00Z",
            "2023-02-29T00:00:00Z",
            "2023-11-14T22:13:20",
            "2023-11-14T22:13:20+1:00",
            "2023-11-14T25:00:00Z",
        ] {
            assert!(Timestamp::parse_rfc3339(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn round_trips_across_four_centuries() {
        let mut t = -2_208_988_800; // 1900-01-01
        while t < 10_413_792_000 {
            let ts = Timestamp::from_unix(t);
            assert_eq!(Timestamp::parse_rfc3339(&ts.to_string()), Ok(ts));
            t += 86_399 * 37;
        }
    }

    #[test]
    fn arithmetic_saturates() {
        let t = Timestamp::from_unix(100);
        assert_eq!(t.plus(Duration::from_secs(5)).unix(), 105);
        assert_eq!(t.until(Timestamp::from_unix(90)), Duration::ZERO);
        assert_eq!(
            Timestamp::from_unix(i64::MAX)
                .plus(Duration::from_secs(1))
                .unix(),
            i64::MAX
        );
    }
}
