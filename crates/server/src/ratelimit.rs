//! Rate limits: a sliding-window counter per key (the previous minute's count,
//! weighted by how much of it still overlaps the window, plus this minute's).
//! In-process here; the trait lets a shared backend replace it for replicas.

use crate::error::ApiError;
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[async_trait]
pub trait RateLimiter: Send + Sync {
    /// Counts one request for `key`; `Err(RateLimited(wait))` past `per_minute`.
    async fn check(&self, key: &str, per_minute: u32) -> Result<(), ApiError>;
}

const WINDOW: Duration = Duration::from_secs(60);
/// Above this many keys, idle ones are swept so memory stays bounded.
const SWEEP_AT: usize = 10_000;

struct Window {
    start: Instant,
    current: u32,
    previous: u32,
}

pub struct LocalRateLimiter {
    windows: Mutex<HashMap<String, Window>>,
    epoch: Instant,
}

impl Default for LocalRateLimiter {
    fn default() -> Self {
        Self {
            windows: Mutex::new(HashMap::new()),
            epoch: Instant::now(),
        }
    }
}

impl LocalRateLimiter {
    /// The decision, given the time: pure enough to test without sleeping.
    fn check_at(&self, key: &str, per_minute: u32, now: Instant) -> Result<(), Duration> {
        let mut map = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() > SWEEP_AT {
            map.retain(|_, w| now.duration_since(w.start) < WINDOW * 2);
        }
        // Windows are aligned to the limiter's epoch so every key shares them.
        let elapsed = now.duration_since(self.epoch);
        let index = elapsed.as_secs() / WINDOW.as_secs();
        let start = self.epoch + WINDOW * index as u32;
        let w = map.entry(key.to_owned()).or_insert(Window {
            start,
            current: 0,
            previous: 0,
        });
        if w.start != start {
            let gap = start.duration_since(w.start);
            w.previous = if gap == WINDOW { w.current } else { 0 };
            w.current = 0;
            w.start = start;
        }
        let into = now.duration_since(start).as_secs_f64() / WINDOW.as_secs_f64();
        let estimate = f64::from(w.previous) * (1.0 - into) + f64::from(w.current);
        if estimate + 1.0 > f64::from(per_minute) {
            // Wait until enough of the previous window has slid out, or the
            // next window starts, whichever comes first.
            let rest = WINDOW.saturating_sub(now.duration_since(start));
            let wait = if w.previous > 0 && f64::from(w.current) + 1.0 <= f64::from(per_minute) {
                let need = (estimate + 1.0 - f64::from(per_minute)) / f64::from(w.previous);
                WINDOW.mul_f64(need.clamp(0.0, 1.0)).min(rest)
            } else {
                rest
            };
            return Err(wait.max(Duration::from_secs(1)));
        }
        w.current += 1;
        Ok(())
    }
}

#[async_trait]
impl RateLimiter for LocalRateLimiter {
    async fn check(&self, key: &str, per_minute: u32) -> Result<(), ApiError> {
        self.check_at(key, per_minute, Instant::now())
            .map_err(ApiError::RateLimited)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sixty_pass_and_the_sixty_first_waits() {
        let l = LocalRateLimiter::default();
        let t = l.epoch + Duration::from_secs(1);
        for i in 0..60 {
            assert!(l.check_at("a", 60, t).is_ok(), "request {i}");
        }
        let wait = l.check_at("a", 60, t).expect_err("61st");
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
}
