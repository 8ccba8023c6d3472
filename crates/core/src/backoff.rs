//! Retry timing: the configured schedule with jitter, and the bounded delay a
//! receiver may ask for with `Retry-After`.

use std::time::Duration;

/// The delay before retry number `retry` (1-based: the delay after the first
/// failed try is `schedule[0]`), or `None` when the schedule is exhausted and
/// the delivery becomes a dead letter.
///
/// `jitter` is a value in [0, 1) supplied by the caller (so this stays pure):
/// the delay is spread over ±20 % so that a burst of failures does not retry
/// in lockstep against a recovering endpoint.
pub fn retry_delay(schedule: &[Duration], retry: usize, jitter: f64) -> Option<Duration> {
    let base = *schedule.get(retry.checked_sub(1)?)?;
    let factor = 0.8 + 0.4 * jitter.clamp(0.0, 1.0);
    Some(base.mul_f64(factor))
}

/// Clamp for a `Retry-After` sent by a receiver: honoured, but never below one
/// second nor above one hour, so a hostile value cannot stall or flood.
pub fn bounded_retry_after(seconds: u64) -> Duration {
    Duration::from_secs(seconds.clamp(1, 3600))
}

/// Parses a `Retry-After` header given as delta-seconds (HTTP dates are
/// ignored: they depend on the receiver's clock).
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    value.trim().parse::<u64>().ok().map(bounded_retry_after)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_schedule_with_bounded_jitter() {
        let s = [Duration::from_secs(5), Duration::from_secs(300)];
        assert_eq!(retry_delay(&s, 0, 0.5), None);
        assert_eq!(retry_delay(&s, 1, 0.5), Some(Duration::from_secs(5)));
        assert_eq!(retry_delay(&s, 2, 0.0), Some(Duration::from_secs(240)));
        assert_eq!(retry_delay(&s, 2, 1.0), Some(Duration::from_secs(360)));
        assert_eq!(retry_delay(&s, 3, 0.5), None);
    }

    #[test]
    fn retry_after_is_bounded() {
        assert_eq!(parse_retry_after("0"), Some(Duration::from_secs(1)));
        assert_eq!(parse_retry_after("120"), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after("999999"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
    }
}
