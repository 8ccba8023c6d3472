//! The time the server acts on: due times, retry schedules, endpoint pauses,
//! leases, and the waits of its background loops (JWKS refreshes). The
//! system clock in production; in tests, the system clock set ahead by hand,
//! so a test waits for a due time, a pause, a lease or a refresh by
//! advancing the clock instead of sleeping.
//!
//! A test clock runs ahead of the system clock, never behind or frozen: the
//! parts that still read the system clock (audit entries, the refusals' minutes,
//! I/O timeouts) and every row they stamp then stay at or before this clock,
//! so whatever the system clock made due is due under this one too.

use chrono::{DateTime, Utc};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

/// The server's clock. Clones share their time.
#[derive(Clone, Default)]
pub struct Clock {
    /// `None` on the system clock, which nothing can move.
    hand: Option<Arc<Hand>>,
}

/// What a test clock shares with its hand.
#[derive(Default)]
struct Hand {
    /// How far the clock has been set ahead, in nanoseconds.
    ahead: AtomicU64,
    /// Wakes the sleepers at each advance.
    advanced: Notify,
}

/// Moves a test clock ahead: the handle a test keeps, which production
/// code never holds.
#[derive(Clone)]
pub struct ClockHand(Arc<Hand>);

impl Clock {
    /// The system clock (production).
    pub fn system() -> Self {
        Self { hand: None }
    }

    /// A clock that starts at the system clock and is moved ahead only by
    /// the hand returned with it (tests).
    pub fn by_hand() -> (Self, ClockHand) {
        let hand = Arc::new(Hand::default());
        (
            Self {
                hand: Some(hand.clone()),
            },
            ClockHand(hand),
        )
    }

    fn ahead(&self) -> Duration {
        self.hand.as_ref().map_or(Duration::ZERO, |h| h.ahead())
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

    /// Waits until `period` has passed on this clock: on the system clock a
    /// plain sleep; on a test clock the same, cut short when an advance
    /// moves the clock past its end.
    pub async fn sleep(&self, period: Duration) {
        let Some(hand) = &self.hand else {
            return tokio::time::sleep(period).await;
        };
        let until = self.instant() + period;
        loop {
            // Made before the time is read, so no advance can slip between.
            let advanced = hand.advanced.notified();
            let now = self.instant();
            if now >= until {
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep(until - now) => {}
                _ = advanced => {}
            }
        }
    }
}

impl Hand {
    fn ahead(&self) -> Duration {
        Duration::from_nanos(self.ahead.load(Ordering::SeqCst))
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.hand {
            None => f.write_str("Clock(system)"),
            Some(_) => write!(f, "Clock(by hand, {:?} ahead)", self.ahead()),
        }
    }
}

impl ClockHand {
    /// Sets the clock `by` further ahead, waking what sleeps on it.
    pub fn advance(&self, by: Duration) {
        let nanos = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        self.0.ahead.fetch_add(nanos, Ordering::SeqCst);
        self.0.advanced.notify_waiters();
    }

    /// How far the clock has been set ahead in all.
    pub fn ahead(&self) -> Duration {
        self.0.ahead()
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

    #[tokio::test]
    async fn an_advance_past_its_end_cuts_a_sleep_short_and_a_smaller_one_does_not() {
        let (clock, hand) = Clock::by_hand();
        let sleeper = tokio::spawn({
            let clock = clock.clone();
            async move { clock.sleep(Duration::from_secs(3600)).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        hand.advance(Duration::from_secs(1800));
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!sleeper.is_finished(), "half the period has passed");
        hand.advance(Duration::from_secs(1800));
        tokio::time::timeout(Duration::from_secs(5), sleeper)
            .await
            .expect("woken by the advance")
            .expect("sleeper");
    }
}
