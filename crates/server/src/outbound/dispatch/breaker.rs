//! The per-endpoint circuit breaker's policy: an endpoint that fails several
//! tries in a row is paused, and its pending tries wait out the pause in the
//! database instead of being tried (and walked past by every claim) one by
//! one; an endpoint that has failed every try for `HOOKWARDEN_DISABLE_AFTER`
//! is disabled.
//!
//! Why: a dead endpoint would otherwise hold its whole share of the
//! in-flight budget with tries that time out, and its backlog of due rows
//! would sit at the head of the due index, where every claim for the other
//! endpoints walks past it. Paused, its rows are due later, out of the way.
//!
//! The count lives with the endpoint in the database (`Store::webhook_failed`),
//! so N replicas open after the same `THRESHOLD` failures, not N times as
//! many, and every replica honours the same pause. Pauses double from
//! `FIRST_PAUSE` up to `MAX_PAUSE` (a recovered endpoint is noticed within
//! it), and never exceed the retry schedule's step for the same number of
//! pauses: an endpoint never waits longer than one of its deliveries would.

use chrono::{DateTime, Utc};
use std::time::Duration;

/// Failed tries in a row that open the breaker.
pub const THRESHOLD: u32 = 5;

/// The first pause.
pub const FIRST_PAUSE: Duration = Duration::from_secs(5);

/// The longest pause: a recovered endpoint waits at most this long.
pub const MAX_PAUSE: Duration = Duration::from_secs(60);

/// The pause of the breaker's `nth` opening since the endpoint's last
/// success (1 for the first): `FIRST_PAUSE` doubled per pause before it, at
/// most `MAX_PAUSE` and at most the schedule's step for that many pauses.
pub fn pause(nth: u32, schedule: &[Duration]) -> Duration {
    let before = nth.saturating_sub(1) as usize;
    let step = schedule
        .get(before)
        .or(schedule.last())
        .copied()
        .unwrap_or(MAX_PAUSE);
    let doubled = FIRST_PAUSE.saturating_mul(1 << before.min(16));
    doubled.min(step).min(MAX_PAUSE)
}

/// An endpoint failing every try since `since` is disabled at `now` once
/// that has lasted `after`.
pub fn to_disable(since: DateTime<Utc>, now: DateTime<Utc>, after: Duration) -> bool {
    (now - since).to_std().is_ok_and(|failing| failing >= after)
}

/// The reason an endpoint disabled for failing shows (and its dead
/// letters carry): when it started, never what it answered.
pub fn disabled_reason(since: DateTime<Utc>) -> String {
    format!(
        "every try failed since {} (its last success): disabled after HOOKWARDEN_DISABLE_AFTER",
        since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCHEDULE: [Duration; 3] = [
        Duration::from_secs(5),
        Duration::from_secs(30),
        Duration::from_secs(3600),
    ];

    #[test]
    fn each_pause_is_longer_up_to_the_most() {
        let secs = Duration::from_secs;
        let pauses: Vec<_> = (1..=6).map(|n| pause(n, &SCHEDULE)).collect();
        assert_eq!(
            pauses,
            [secs(5), secs(10), secs(20), secs(40), MAX_PAUSE, MAX_PAUSE]
        );
        assert_eq!(pause(u32::MAX, &SCHEDULE), MAX_PAUSE, "no overflow");
    }

    #[test]
    fn never_pauses_longer_than_the_retry_schedule_would_wait() {
        let quick = [Duration::from_millis(200)];
        assert_eq!(pause(1, &quick), Duration::from_millis(200));
        assert_eq!(pause(2, &quick), Duration::from_millis(200));
        assert_eq!(pause(1, &[]), FIRST_PAUSE);
    }

    #[test]
    fn disabled_only_once_failing_has_lasted() {
        let since = Utc::now();
        let day = Duration::from_secs(86_400);
        assert!(!to_disable(since, since, day));
        assert!(!to_disable(since, since + chrono::Duration::hours(23), day));
        assert!(to_disable(since, since + chrono::Duration::hours(24), day));
        assert!(
            !to_disable(since, since - chrono::Duration::hours(30), day),
            "a clock behind the first failure never disables"
        );
        assert!(disabled_reason(since).contains("since 20"));
    }
}
