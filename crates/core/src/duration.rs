//! Human durations (`5s`, `5m`, `2h`, `1d`, `250ms`) and retry schedules
//! (`5s,5m,30m`), as configuration writes them.

use std::time::Duration;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0:?} is not a duration (use a number with ms, s, m, h or d, e.g. 5s)")]
pub struct DurationError(pub String);

pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let t = text.trim();
    let err = || DurationError(t.to_owned());
    let split = t.find(|c: char| !c.is_ascii_digit()).ok_or_else(err)?;
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| err())?;
    let ms = match unit.trim() {
        "ms" => n,
        "s" => n.checked_mul(1_000).ok_or_else(err)?,
        "m" => n.checked_mul(60_000).ok_or_else(err)?,
        "h" => n.checked_mul(3_600_000).ok_or_else(err)?,
        "d" => n.checked_mul(86_400_000).ok_or_else(err)?,
        _ => return Err(err()),
    };
    Ok(Duration::from_millis(ms))
}

/// Formats a duration the way `parse_duration` reads it (largest exact unit).
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    for (unit, size) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
    ] {
        if ms >= size && ms.is_multiple_of(size) {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

/// A comma-separated list of delays: one per retry after the first try.
pub fn parse_schedule(text: &str) -> Result<Vec<Duration>, DurationError> {
    let list: Vec<Duration> = text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(parse_duration)
        .collect::<Result<_, _>>()?;
    if list.is_empty() {
        return Err(DurationError(text.to_owned()));
    }
    Ok(list)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units() {
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("-5s").is_err());
        assert!(parse_duration("99999999999999999999d").is_err());
    }

    #[test]
    fn schedule_and_format() {
        let s = parse_schedule("5s,5m,30m,2h,5h,10h,10h").expect("schedule");
        assert_eq!(s.len(), 7);
        assert_eq!(format_duration(s[3]), "2h");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
        assert!(parse_schedule("").is_err());
    }
}
