//! Durations written as `90s`, `30m`, `1h30m`, `2d`.

use std::time::Duration;

/// Parses `<n><unit>` groups (units `ms`, `s`, `m`, `h`, `d`), e.g. `1h30m`.
/// A bare `0` is allowed. The result must fit in a `u64` of seconds.
pub fn parse(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    if text.is_empty() {
        return Err("the duration is empty".into());
    }
    let mut total_ms: u128 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.chars().take_while(char::is_ascii_digit).count();
        if digits == 0 {
            return Err(format!("expected a number at `{rest}`"));
        }
        let (number, after) = rest.split_at(digits);
        let unit_len = after
            .chars()
            .take_while(char::is_ascii_alphabetic)
            .map(char::len_utf8)
            .sum::<usize>();
        let (unit, after) = after.split_at(unit_len);
        let factor: u128 = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "" => return Err(format!("`{number}` has no unit")),
            other => return Err(format!("unknown unit `{other}`")),
        };
        let number: u128 = number
            .parse()
            .map_err(|_| format!("`{number}` is too large"))?;
        total_ms = total_ms
            .checked_add(number.saturating_mul(factor))
            .ok_or_else(|| "the duration is too large".to_string())?;
        rest = after;
    }
    let ms = u64::try_from(total_ms).map_err(|_| "the duration is too large".to_string())?;
    if ms / 1000 > u64::from(u32::MAX) {
        return Err("the duration is too large (over 136 years)".into());
    }
    Ok(Duration::from_millis(ms))
}

/// Formats a duration in the same notation, largest units first (`1h30m`).
pub fn format(duration: Duration) -> String {
    let mut ms = duration.as_millis();
    if ms == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    for (unit, size) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
        ("ms", 1),
    ] {
        if ms >= size {
            out.push_str(&format!("{}{unit}", ms / size));
            ms %= size;
        }
    }
    out
}

pub const HINT: &str =
    "write a number and a unit: `90s`, `30m`, `1h30m`, `2d` (units: ms, s, m, h, d)";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_compound_durations() {
        assert_eq!(parse("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse("0"), Ok(Duration::ZERO));
    }

    #[test]
    fn rejects_bad_durations() {
        for bad in [
            "",
            "30",
            "m",
            "30 minutes",
            "5y",
            "1h-3m",
            "99999999999999999999999s",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn format_round_trips() {
        for text in ["30m", "1h30m", "2d", "1s500ms"] {
            let d = parse(text).expect("valid");
            assert_eq!(format(d), text);
        }
    }
}
