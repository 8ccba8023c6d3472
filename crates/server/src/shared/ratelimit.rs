//! Rate limits: a sliding-window counter per key (the previous minute's count,
//! weighted by how much of it still overlaps the window, plus this minute's).
//! In-process here; the trait lets a shared backend replace it for replicas.
//!
//! Every check is O(1): counts live in two maps, this minute's and the last
//! one's, and a new minute *rotates* them (the older map is dropped whole)
//! instead of sweeping keys. Memory is bounded by a cap on the keys one minute
//! may hold: past it, a key not yet seen this minute is let through uncounted
//! (and counted in a metric) until the next rotation, so a flood of fresh
//! source addresses can neither grow the map, slow anyone's check, nor lock
//! out clients that did nothing wrong; keys already counted go on being
//! limited. Keys that anyone can make up (a provider's traffic per source
//! address, sign-in attempts per address) fill maps of their own, apart
//! from the keys of authenticated callers: a flood from fresh addresses
//! cannot let a tenant's or a producer's requests through uncounted.

use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[async_trait]
pub trait RateLimiter: Send + Sync {
    /// Counts one request for `key`; `Err(Limited)` past `per_minute`.
    async fn check(&self, key: &str, per_minute: u32) -> Result<(), Limited>;
}

/// A request over its limit, and how long until one would pass (the HTTP
/// layer turns it into a 429 with `Retry-After`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited(pub Duration);

/// The length of one window.
pub const WINDOW: Duration = Duration::from_secs(60);

/// The sliding-window decision, written once for every backend: `previous`
/// requests counted in the last window, `current` in this one *before* this
/// request, `into` how far this window has run. The estimate weighs the last
/// window by how much of it still overlaps the sliding minute. Refused, the
/// wait is until enough of the last window has slid out or the next window
/// starts, whichever comes first, and never under a second.
pub fn decide(previous: u64, current: u64, into: Duration, per_minute: u32) -> Result<(), Limited> {
    let into = into.min(WINDOW);
    let rest = WINDOW - into;
    let share = into.as_secs_f64() / WINDOW.as_secs_f64();
    let (previous, current, limit) = (previous as f64, current as f64, f64::from(per_minute));
    let estimate = previous * (1.0 - share) + current;
    if estimate + 1.0 <= limit {
        return Ok(());
    }
    let wait = if previous > 0.0 && current + 1.0 <= limit {
        let need = (estimate + 1.0 - limit) / previous;
        WINDOW.mul_f64(need.clamp(0.0, 1.0)).min(rest)
    } else {
        rest
    };
    Err(Limited(wait.max(Duration::from_secs(1))))
}
/// Most keys one window holds (about 100 bytes each, two windows kept).
pub const MAX_KEYS: usize = 250_000;

struct Windows {
    /// Index of the current window since the epoch.
    index: u64,
    current: HashMap<String, u32>,
    previous: HashMap<String, u32>,
}

pub struct LocalRateLimiter {
    /// One set of windows per class of key (`class`), each with its cap.
    windows: [Mutex<Windows>; 3],
    epoch: Instant,
    max_keys: usize,
}

/// Which windows a key counts in: authenticated callers' keys (a tenant's,
/// a producer's, a portal session's account), a provider's traffic per
/// source address, sign-in attempts per address.
fn class(key: &str) -> usize {
    if key.starts_with("ingress:") {
        1
    } else if key.starts_with("console-sign-in:") {
        2
    } else {
        0
    }
}

impl Default for LocalRateLimiter {
    fn default() -> Self {
        Self::with_capacity(MAX_KEYS)
    }
}

impl LocalRateLimiter {
    pub fn with_capacity(max_keys: usize) -> Self {
        Self {
            windows: std::array::from_fn(|_| {
                Mutex::new(Windows {
                    index: 0,
                    current: HashMap::new(),
                    previous: HashMap::new(),
                })
            }),
            epoch: Instant::now(),
            max_keys,
        }
    }

    /// Counts one request for `key` at `now`: the decision, given the time,
    /// pure enough to test without sleeping.
    fn check_at(&self, key: &str, per_minute: u32, now: Instant) -> Result<(), Limited> {
        self.decide(key, per_minute, now, true)
    }

    /// Would a request for `key` be refused now? Counts nothing.
    pub fn over(&self, key: &str, per_minute: u32) -> Option<Duration> {
        self.decide(key, per_minute, Instant::now(), false)
            .err()
            .map(|l| l.0)
    }

    /// Counts one event for `key` without deciding anything (failures, say).
    pub fn count(&self, key: &str) {
        let _ = self.decide(key, u32::MAX, Instant::now(), true);
    }

    fn decide(&self, key: &str, per_minute: u32, now: Instant, count: bool) -> Result<(), Limited> {
        let mut w = self.windows[class(key)]
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        // Windows are aligned to the limiter's epoch so every key shares them.
        // A caller that read the clock just before another one rotated the
        // windows counts in the newer window: time never moves back here.
        let elapsed = now.saturating_duration_since(self.epoch);
        let index = (elapsed.as_secs() / WINDOW.as_secs()).max(w.index);
        if index != w.index {
            let older = std::mem::take(&mut w.current);
            w.previous = if index == w.index + 1 {
                older
            } else {
                HashMap::new()
            };
            w.index = index;
        }
        let start = self.epoch + WINDOW * index as u32;
        let previous = w.previous.get(key).copied().unwrap_or(0);
        let current = w.current.get(key).copied();
        if current.is_none() && w.current.len() >= self.max_keys {
            metrics::counter!(crate::shared::metrics::RATE_LIMIT_KEYS_FULL).increment(1);
            return Ok(());
        }
        decide(
            u64::from(previous),
            u64::from(current.unwrap_or(0)),
            now.saturating_duration_since(start),
            per_minute,
        )?;
        if count {
            let slot = w.current.entry(key.to_owned()).or_insert(0);
            *slot = slot.saturating_add(1);
        }
        Ok(())
    }
}

#[async_trait]
impl RateLimiter for LocalRateLimiter {
    async fn check(&self, key: &str, per_minute: u32) -> Result<(), Limited> {
        self.check_at(key, per_minute, Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_decision_for_every_backend() {
        let s = Duration::from_secs;
        // Nothing before: the hundredth passes, the hundred-and-first waits
        // for the next window.
        assert_eq!(decide(0, 99, s(10), 100), Ok(()));
        assert_eq!(decide(0, 100, s(10), 100), Err(Limited(s(50))));
        // Half of the last window still overlaps: 100 × ½ + 49 + 1 = 100 passes.
        assert_eq!(decide(100, 49, s(30), 100), Ok(()));
        // One more must wait until a hundredth of the last window slid out (0.6 s, at least 1 s).
        assert_eq!(decide(100, 50, s(30), 100), Err(Limited(s(1))));
        // A reading past the window's end is the window's end.
        assert_eq!(decide(0, 100, s(90), 100), Err(Limited(s(1))));
    }

    #[test]
    fn sixty_pass_and_the_sixty_first_waits() {
        let l = LocalRateLimiter::default();
        let t = l.epoch + Duration::from_secs(1);
        for i in 0..60 {
            assert!(l.check_at("a", 60, t).is_ok(), "request {i}");
        }
        let wait = l.check_at("a", 60, t).expect_err("61st").0;
        assert!(wait >= Duration::from_secs(1) && wait <= WINDOW);
        assert!(l.check_at("b", 60, t).is_ok(), "keys are independent");
    }

    #[test]
    fn the_window_slides() {
        let l = LocalRateLimiter::default();
        let t = l.epoch + Duration::from_secs(59);
        for _ in 0..60 {
            assert!(l.check_at("a", 60, t).is_ok());
        }
        // One second into the next window 59/60 of the last one still counts:
        // one request fits, the next does not.
        let t = l.epoch + Duration::from_secs(61);
        assert!(l.check_at("a", 60, t).is_ok());
        assert!(l.check_at("a", 60, t).is_err());
        // Two windows later it is all gone.
        assert!(l
            .check_at("a", 60, l.epoch + Duration::from_secs(121))
            .is_ok());
    }

    #[test]
    fn a_flood_of_fresh_keys_is_bounded_and_known_keys_go_on() {
        let l = LocalRateLimiter::with_capacity(1_000);
        let t = l.epoch + Duration::from_secs(1);
        assert!(l.check_at("known", 60, t).is_ok());
        for i in 0..999 {
            assert!(l.check_at(&format!("fresh-{i}"), 60, t).is_ok());
        }
        // Full: a key never seen this minute passes uncounted (an innocent
        // client is never locked out by others' keys), nothing grows, and
        // a key already counted is still limited.
        for _ in 0..100 {
            assert!(l.check_at("fresh-new", 60, t).is_ok());
        }
        assert!(
            l.over("fresh-new", 1).is_none(),
            "peeking an absent key is never over"
        );
        for _ in 0..59 {
            let _ = l.check_at("known", 60, t);
        }
        assert!(l.check_at("known", 60, t).is_err());
        assert_eq!(l.windows[0].lock().expect("lock").current.len(), 1_000);
        // The next minute rotates the maps: room again, and nothing was swept.
        let t = l.epoch + Duration::from_secs(61);
        assert!(l.check_at("fresh-new", 60, t).is_ok());
        let w = l.windows[0].lock().expect("lock");
        assert_eq!(w.current.len(), 1);
        assert_eq!(w.previous.len(), 1_000);
    }

    #[test]
    fn keys_anyone_can_make_up_cannot_let_a_tenant_through_uncounted() {
        let l = LocalRateLimiter::with_capacity(3);
        let t = l.epoch + Duration::from_secs(1);
        // A flood of fresh source addresses fills the provider traffic's
        // and the sign-in attempts' maps...
        for i in 0..10 {
            let _ = l.check_at(&format!("ingress:acme:198.51.100.{i}"), 60, t);
            let _ = l.check_at(&format!("console-sign-in:198.51.100.{i}"), 60, t);
        }
        // ...and a tenant's budget is still counted and enforced.
        assert!(l.check_at("tenant:acct_1", 1, t).is_ok());
        assert!(l.check_at("tenant:acct_1", 1, t).is_err());
    }

    #[test]
    fn a_check_stays_cheap_with_many_keys() {
        // 200,000 keys: each check must not depend on how many there are.
        let l = LocalRateLimiter::default();
        let t = l.epoch + Duration::from_secs(1);
        for i in 0..200_000 {
            let _ = l.check_at(&format!("k{i}"), 60, t);
        }
        let started = Instant::now();
        for i in 0..10_000 {
            let _ = l.check_at(&format!("k{i}"), 60, t);
        }
        // A sweep of 200k keys per check (the old behaviour) would take
        // seconds here; 10,000 O(1) checks take a few milliseconds.
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn a_late_reading_of_the_clock_never_rolls_the_windows_back() {
        let l = LocalRateLimiter::default();
        let after = l.epoch + Duration::from_secs(60) + Duration::from_millis(1);
        let before = l.epoch + Duration::from_secs(59) + Duration::from_millis(999);
        for _ in 0..60 {
            assert!(l.check_at("a", 60, after).is_ok());
        }
        // A request stamped just before the boundary, served after it.
        assert!(
            l.check_at("a", 60, before).is_err(),
            "counts were not wiped"
        );
    }

    #[test]
    fn over_counts_nothing_and_count_decides_nothing() {
        let l = LocalRateLimiter::default();
        for _ in 0..5 {
            l.count("f");
        }
        assert!(l.over("f", 10).is_none());
        assert!(l.over("f", 5).is_some());
        assert!(l.over("f", 6).is_none(), "peeking did not count");
    }
}
