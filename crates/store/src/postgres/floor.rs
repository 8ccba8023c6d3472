//! Where a claim starts reading the queue: the oldest pending due time, as
//! this replica last read it. PostgreSQL keeps a finished try's entry in
//! the partial due index until VACUUM removes it, and those entries sit
//! exactly where a claim starts (the oldest due times): without a floor,
//! every claim walked every try finished since the last VACUUM (at 10⁵, a
//! quarter of a millisecond per claim, growing with the database's age).
//!
//! The floor is never above a try a claim must see:
//! - it is read from the table itself (`min(due_at)` of pending tries,
//!   leased ones included, so a released or expired lease is above it;
//!   never above now) at most every `REFRESH`, less `MARGIN` for publishes
//!   of other replicas still committing;
//! - tries this replica writes lower it as soon as they commit, so the
//!   floor's own refresh cannot overtake them (a write during a refresh
//!   lowers the result too);
//! - another replica's try below it (a commit slower than `MARGIN`, a clock
//!   behind) is found at the next refresh: a delay of at most `REFRESH`,
//!   never a loss.

use chrono::{DateTime, Utc};
use sqlx::postgres::PgPool;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often the floor is read again from the table.
const REFRESH: Duration = Duration::from_secs(1);
/// How far below the oldest pending try claims start.
const MARGIN: chrono::Duration = chrono::Duration::seconds(2);

#[derive(Default)]
struct State {
    /// `None`: not read yet, claims read the whole index.
    floor: Option<DateTime<Utc>>,
    read_at: Option<Instant>,
    /// The lowest due time this replica wrote since the refresh in flight
    /// began (it did not necessarily see it).
    written_during_read: Option<DateTime<Utc>>,
    reading: bool,
}

/// One queue's floor: `min_sql` reads its oldest pending due time.
pub(crate) struct Floor {
    min_sql: &'static str,
    state: Mutex<State>,
}

impl Floor {
    pub(crate) fn new(min_sql: &'static str) -> Self {
        Self {
            min_sql,
            state: Mutex::new(State::default()),
        }
    }

    /// Where a claim at `now` starts: `None` for the whole index.
    pub(crate) async fn get(
        &self,
        pool: &PgPool,
        now: DateTime<Utc>,
    ) -> crate::error::Result<Option<DateTime<Utc>>> {
        {
            let mut s = self.lock();
            let fresh = s.read_at.is_some_and(|at| at.elapsed() < REFRESH);
            if fresh || s.reading {
                return Ok(s.floor);
            }
            s.reading = true;
            s.written_during_read = None;
        }
        // Should the claim's future be dropped while it waits, the next
        // claim may still read again.
        let reading = Reading(self);
        let oldest: Result<Option<DateTime<Utc>>, sqlx::Error> =
            sqlx::query_scalar(self.min_sql).fetch_one(pool).await;
        // Ended here, under the same lock as the result is kept: a write
        // between the two would otherwise be missed by both.
        std::mem::forget(reading);
        let mut s = self.lock();
        s.reading = false;
        let oldest = oldest?;
        // Never above now: when every pending row is due later (backoffs,
        // a pause), another replica's try due now must still be seen.
        let read = oldest.map_or(now, |o| o.min(now)) - MARGIN;
        s.floor = Some(match s.written_during_read.take() {
            Some(w) => read.min(w),
            None => read,
        });
        s.read_at = Some(Instant::now());
        Ok(s.floor)
    }

    /// Tries due at `due` were committed by this replica.
    pub(crate) fn wrote(&self, due: impl IntoIterator<Item = DateTime<Utc>>) {
        let Some(low) = due.into_iter().min() else {
            return;
        };
        let mut s = self.lock();
        if let Some(f) = s.floor {
            s.floor = Some(f.min(low));
        }
        if s.reading {
            s.written_during_read = Some(s.written_during_read.map_or(low, |w| w.min(low)));
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding it leaves valid state (plain values).
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A read of the floor in flight; when it ends, however it ends, another
/// claim may start the next.
struct Reading<'a>(&'a Floor);

impl Drop for Reading<'_> {
    fn drop(&mut self) {
        self.0.lock().reading = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_lowers_the_floor_and_a_refresh_in_flight() {
        let f = Floor::new("");
        let t = Utc::now();
        f.wrote([t]);
        assert_eq!(f.lock().floor, None, "no floor yet: claims read everything");
        {
            let mut s = f.lock();
            s.floor = Some(t);
            s.reading = true;
        }
        let earlier = t - chrono::Duration::seconds(30);
        f.wrote([t + chrono::Duration::seconds(5), earlier]);
        let s = f.lock();
        assert_eq!(s.floor, Some(earlier));
        assert_eq!(s.written_during_read, Some(earlier));
    }

    #[test]
    fn a_read_dropped_half_way_lets_the_next_claim_read() {
        let f = Floor::new("");
        f.lock().reading = true;
        drop(Reading(&f));
        assert!(!f.lock().reading);
    }
}
