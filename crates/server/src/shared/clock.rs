//! The time the server acts on: due times, retry schedules, endpoint pauses,
//! leases. The system clock in production; in tests, the system clock set
//! ahead by hand, so a test waits for a due time, a pause or a lease to pass
//! by advancing the clock instead of sleeping.
//!
//! A test clock runs ahead of the system clock, never behind or frozen: the
//! parts that still read the system clock (the receive path's timestamps,
//! I/O timeouts) and every row they stamp then stay at or before this clock,
//! so whatever the system clock made due is due under this one too.

use chrono::{DateTime, Utc};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// The server's clock. Clones share their time.
#[derive(Clone, Default)]
pub struct Clock {
    /// How far a test has set the clock ahead, in nanoseconds; `None` on the
    /// system clock, which nothing can move.
    ahead: Option<Arc<AtomicU64>>,
}

/// Moves a test clock ahead: the handle a test keeps, which production
/// code never holds.
#[derive(Clone)]
pub struct ClockHand(Arc<AtomicU64>);

impl Clock {
    /// The system clock (production).
    pub fn system() -> Self {
        Self { ahead: None }
    }

    /// A clock that starts at the system clock and is moved ahead only by
    /// the hand returned with it (tests).
    pub fn by_hand() -> (Self, ClockHand) {
        let ahead = Arc::new(AtomicU64::new(0));
        (
            Self {
                ahead: Some(ahead.clone()),
            },
            ClockHand(ahead),
        )
    }

    fn ahead(&self) -> Duration {
        self.ahead.as_ref().map_or(Duration::ZERO, |a| {
            Duration::from_nanos(a.load(Ordering::SeqCst))
        })
    }

    /// The time now, for what is stored and compared with stored times.
    pub fn now(&self) -> DateTime<Utc> {
        let now = Utc::now();
        match chrono::Duration::from_std(self.ahead()) {
            Ok(ahead) if ahead.is_zero() => now,
            Ok(ahead) => now
                .checked_add_signed(ahead)
                .unwrap_or(DateTime::<Utc>::MAX_UTC),
            Err(_) => DateTime::<Utc>::MAX_UTC,
        }
    }

    /// A monotonic reading on the same clock, for what is measured in
    /// process (the end of a claim's lease).
    pub fn instant(&self) -> Instant {
        let now = Instant::now();
        now.checked_add(self.ahead()).unwrap_or(now)
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.ahead {
            None => f.write_str("Clock(system)"),
            Some(_) => write!(f, "Clock(by hand, {:?} ahead)", self.ahead()),
        }
    }
}

impl ClockHand {
    /// Sets the clock `by` further ahead.
    pub fn advance(&self, by: Duration) {
        let nanos = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        self.0.fetch_add(nanos, Ordering::SeqCst);
    }

    /// How far the clock has been set ahead in all.
    pub fn ahead(&self) -> Duration {
        Duration::from_nanos(self.0.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_system_clock_is_the_system_time() {
        let clock = Clock::system();
        let (before, now, after) = (Utc::now(), clock.now(), Utc::now());
        assert!(before <= now && now <= after);
        let (before, now, after) = (Instant::now(), clock.instant(), Instant::now());
        assert!(before <= now && now <= after);
    }

    #[test]
    fn a_clock_by_hand_moves_ahead_when_advanced_and_its_clones_follow() {
        let (clock, hand) = Clock::by_hand();
        let copy = clock.clone();
        assert!(clock.now() - Utc::now() < chrono::Duration::seconds(1));
        hand.advance(Duration::from_secs(3600));
        let ahead = copy.now() - Utc::now();
        assert!(
            ahead > chrono::Duration::minutes(59) && ahead <= chrono::Duration::hours(1),
            "{ahead}"
        );
        assert!(copy.instant() >= Instant::now() + Duration::from_secs(3599));
        assert_eq!(hand.ahead(), Duration::from_secs(3600));
    }
}
