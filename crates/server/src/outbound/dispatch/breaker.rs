//! The per-endpoint circuit breaker: an endpoint that fails several tries
//! in a row is paused, and its pending tries wait out the pause in the
//! database instead of being tried (and walked past by every claim) one by
//! one.
//!
//! Why: a dead endpoint would otherwise hold its whole share of the
//! in-flight budget with tries that time out, and its backlog of due rows
//! would sit at the head of the due index, where every claim for the other
//! endpoints walks past it. Paused, its rows are due later, out of the way.
//!
//! The count is per process (each replica opens on its own failures); the
//! pause is in the database, so every replica honours it. Pauses double from
//! `FIRST_PAUSE` up to `MAX_PAUSE` (a recovered endpoint is noticed within
//! it), and never exceed the retry schedule's step for the same number of
//! pauses: an endpoint never waits longer than one of its deliveries would.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// Failed tries in a row that open the breaker.
pub const THRESHOLD: u32 = 5;

/// The first pause.
pub const FIRST_PAUSE: Duration = Duration::from_secs(5);

/// The longest pause: a recovered endpoint waits at most this long.
pub const MAX_PAUSE: Duration = Duration::from_secs(60);

/// Endpoints with failures kept at most; beyond it the counts start over
/// (a bound on memory, not a limit anyone should meet).
const MAX_TRACKED: usize = 65_536;

#[derive(Default)]
pub struct Breaker {
    endpoints: Mutex<HashMap<String, Failing>>,
}

#[derive(Default)]
struct Failing {
    /// Failed tries since the last success or the last pause.
    in_a_row: u32,
    /// Pauses since the last success: the step of the schedule to pause for.
    pauses: usize,
}

impl Breaker {
    /// A try to `endpoint` succeeded: it starts over.
    pub fn succeeded(&self, endpoint: &str) {
        let mut map = self.endpoints.lock().unwrap_or_else(|p| p.into_inner());
        if !map.is_empty() {
            map.remove(endpoint);
        }
    }

    /// A try to `endpoint` failed. Answers the pause when this failure opens
    /// the breaker: `FIRST_PAUSE` doubled per pause in a row, at most
    /// `MAX_PAUSE` and at most the schedule's step for that many pauses.
    pub fn failed(&self, endpoint: &str, schedule: &[Duration]) -> Option<Duration> {
        let mut map = self.endpoints.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_TRACKED && !map.contains_key(endpoint) {
            map.clear();
        }
        let f = map.entry(endpoint.to_owned()).or_default();
        f.in_a_row += 1;
        if f.in_a_row < THRESHOLD {
            return None;
        }
        f.in_a_row = 0;
        let step = schedule
            .get(f.pauses)
            .or(schedule.last())
            .copied()
            .unwrap_or(MAX_PAUSE);
        let doubled = FIRST_PAUSE.saturating_mul(1 << f.pauses.min(16));
        f.pauses += 1;
        Some(doubled.min(step).min(MAX_PAUSE))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCHEDULE: [Duration; 3] = [
        Duration::from_secs(5),
        Duration::from_secs(30),
        Duration::from_secs(3600),
    ];

    /// The pause answered by the failure that opens the breaker next.
    fn next_pause(b: &Breaker, schedule: &[Duration]) -> Option<Duration> {
        for _ in 1..THRESHOLD {
            assert_eq!(b.failed("w", schedule), None, "closed below the threshold");
        }
        b.failed("w", schedule)
    }

    #[test]
    fn opens_after_the_threshold_and_pauses_longer_each_time() {
        let b = Breaker::default();
        let secs = Duration::from_secs;
        assert_eq!(next_pause(&b, &SCHEDULE), Some(secs(5)));
        assert_eq!(next_pause(&b, &SCHEDULE), Some(secs(10)));
        assert_eq!(next_pause(&b, &SCHEDULE), Some(secs(20)));
        assert_eq!(next_pause(&b, &SCHEDULE), Some(secs(40)));
        assert_eq!(next_pause(&b, &SCHEDULE), Some(MAX_PAUSE));
        assert_eq!(next_pause(&b, &SCHEDULE), Some(MAX_PAUSE));
    }

    #[test]
    fn never_pauses_longer_than_the_retry_schedule_would_wait() {
        let b = Breaker::default();
        let quick = [Duration::from_millis(200)];
        assert_eq!(next_pause(&b, &quick), Some(Duration::from_millis(200)));
        assert_eq!(next_pause(&b, &quick), Some(Duration::from_millis(200)));
    }

    #[test]
    fn a_success_starts_over_and_endpoints_are_counted_apart() {
        let b = Breaker::default();
        for _ in 1..THRESHOLD {
            b.failed("w", &SCHEDULE);
            b.failed("other", &SCHEDULE);
        }
        b.succeeded("w");
        assert_eq!(b.failed("w", &SCHEDULE), None, "count restarted");
        assert_eq!(
            b.failed("other", &SCHEDULE),
            Some(Duration::from_secs(5)),
            "other endpoint unaffected by w's success"
        );
    }
}
