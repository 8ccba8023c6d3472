//! Activity per minute for the console's charts: what this process counted
//! (inbound accepted, duplicate and refused; outbound delivered, failed and
//! dead; a histogram of delivery latency) held in memory by minute, added to
//! the database every few seconds by `run` (each replica adds its own
//! deltas, so the rows are sums over replicas), and read back as points by
//! `series`.
//!
//! Counting is an atomic increment under a shared lock: no await, no
//! allocation, no database, so a flood of refused requests stays cheap.
//! Memory is bounded: two minute slots, plus at most `MAX_SPILLED` counts of
//! older minutes waiting for the database.

use crate::shared::clock::Clock;
use chrono::{DateTime, Utc};
use hookwarden_store::model::ActivityDelta;
use hookwarden_store::Store;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub const INBOUND_ACCEPTED: &str = "inbound.accepted";
pub const INBOUND_DUPLICATE: &str = "inbound.duplicate";
pub const INBOUND_REFUSED: &str = "inbound.refused";
pub const OUTBOUND_DELIVERED: &str = "outbound.delivered";
pub const OUTBOUND_FAILED: &str = "outbound.failed";
pub const OUTBOUND_DEAD: &str = "outbound.dead";

/// Upper bounds (inclusive, ms) of the delivery latency buckets; a last
/// bucket above them all is `+inf`. Retried deliveries take minutes to
/// hours, hence the long tail.
pub const LATENCY_BOUNDS_MS: [u64; 15] = [
    5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 30_000, 60_000, 300_000, 3_600_000,
];
pub const LATENCY_BUCKETS: usize = LATENCY_BOUNDS_MS.len() + 1;
/// One series per bucket: the deliveries whose latency fell in (the
/// previous bound, this bound]. Counts per bucket, not cumulative, and not
/// percentiles: bucket counts sum across replicas and minutes.
pub const LATENCY_SERIES: [&str; LATENCY_BUCKETS] = [
    "latency.le.5",
    "latency.le.10",
    "latency.le.25",
    "latency.le.50",
    "latency.le.100",
    "latency.le.250",
    "latency.le.500",
    "latency.le.1000",
    "latency.le.2500",
    "latency.le.5000",
    "latency.le.10000",
    "latency.le.30000",
    "latency.le.60000",
    "latency.le.300000",
    "latency.le.3600000",
    "latency.le.+inf",
];

/// What is counted, one increment at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Count {
    /// An inbound webhook verified and stored.
    Accepted,
    /// An inbound webhook verified and recognized as one already stored.
    Duplicate,
    /// An inbound request refused: bad or missing signature, source not
    /// allowed, unknown provider, or a client over its failed-auth limit.
    Refused,
    /// An outbound try the receiver accepted (2xx).
    Delivered,
    /// An outbound try that failed with a retry to follow.
    Failed,
    /// An outbound try that failed for good (a dead letter).
    Dead,
}

const COUNTS: [&str; 6] = [
    INBOUND_ACCEPTED,
    INBOUND_DUPLICATE,
    INBOUND_REFUSED,
    OUTBOUND_DELIVERED,
    OUTBOUND_FAILED,
    OUTBOUND_DEAD,
];
/// Every series a slot holds: the counts, then the latency buckets.
const SERIES: usize = COUNTS.len() + LATENCY_BUCKETS;

fn series_name(index: usize) -> &'static str {
    COUNTS
        .get(index)
        .copied()
        .unwrap_or_else(|| LATENCY_SERIES[index - COUNTS.len()])
}

/// How often the counts are added to the database.
pub const FLUSH_EVERY: Duration = Duration::from_secs(5);
/// Rows older than this are pruned (the longest chart is a day).
pub const KEEP: chrono::TimeDelta = chrono::TimeDelta::days(2);
/// How often the flusher prunes at most.
const PRUNE_EVERY: chrono::TimeDelta = chrono::TimeDelta::minutes(1);
/// Most (minute, series) counts held outside the slots (a slot reused before
/// its minute was flushed, a flush the database refused): an hour of every
/// series. Past it the oldest are dropped and counted in a metric.
const MAX_SPILLED: usize = 60 * SERIES;
/// Minute slots; a minute's slot is reused two minutes later, long after
/// the flusher (every 5 s) took its counts. What it has not taken is spilled.
const SLOTS: usize = 2;

struct Slot {
    minute: i64,
    counts: [AtomicU64; SERIES],
}

/// This process's activity counts not yet in the database.
pub struct Activity {
    clock: Clock,
    slots: [RwLock<Slot>; SLOTS],
    /// Counts of minutes no slot holds, by (minute, series index).
    spilled: Mutex<BTreeMap<(i64, usize), u64>>,
}

impl Activity {
    pub fn new(clock: Clock) -> Self {
        let slot = || {
            RwLock::new(Slot {
                minute: i64::MIN,
                counts: std::array::from_fn(|_| AtomicU64::new(0)),
            })
        };
        Self {
            clock,
            slots: [slot(), slot()],
            spilled: Mutex::default(),
        }
    }

    /// Counts one `what` in the current minute.
    pub fn count(&self, what: Count) {
        self.add(what as usize, 1);
    }

    /// Counts one successful delivery's latency (the event's publication to
    /// the receiver's 2xx) in its bucket.
    pub fn latency(&self, ms: u64) {
        let bucket = LATENCY_BOUNDS_MS
            .iter()
            .position(|&bound| ms <= bound)
            .unwrap_or(LATENCY_BOUNDS_MS.len());
        self.add(COUNTS.len() + bucket, 1);
    }

    fn add(&self, index: usize, n: u64) {
        let minute = self.clock.now().timestamp().div_euclid(60);
        let lock = &self.slots[minute.rem_euclid(SLOTS as i64) as usize];
        {
            let slot = lock.read().unwrap_or_else(PoisonError::into_inner);
            if slot.minute == minute {
                slot.counts[index].fetch_add(n, Ordering::Relaxed);
                return;
            }
        }
        // Once a minute per slot: the slot moves on to this minute, and what
        // the flusher has not taken of the old one waits beside.
        let mut slot = lock.write().unwrap_or_else(PoisonError::into_inner);
        if slot.minute < minute {
            let old = slot.minute;
            let left: Vec<(usize, u64)> = slot
                .counts
                .iter_mut()
                .map(|c| std::mem::take(c.get_mut()))
                .enumerate()
                .filter(|(_, n)| *n > 0)
                .collect();
            slot.minute = minute;
            self.spill(left.into_iter().map(|(i, n)| ((old, i), n)));
        }
        if slot.minute == minute {
            slot.counts[index].fetch_add(n, Ordering::Relaxed);
        } else {
            // A count stamped before a later minute took the slot.
            drop(slot);
            self.spill([((minute, index), n)]);
        }
    }

    fn spill(&self, counts: impl IntoIterator<Item = ((i64, usize), u64)>) {
        let mut spilled = self.spilled.lock().unwrap_or_else(PoisonError::into_inner);
        for (key, n) in counts {
            *spilled.entry(key).or_insert(0) += n;
        }
        let mut dropped = 0;
        while spilled.len() > MAX_SPILLED {
            dropped += spilled.pop_first().map_or(0, |(_, n)| n);
        }
        if dropped > 0 {
            metrics::counter!(crate::shared::metrics::ACTIVITY_DROPPED).increment(dropped);
        }
    }

    /// Takes every count held (they are forgotten here).
    fn take(&self) -> BTreeMap<(i64, usize), u64> {
        let mut taken =
            std::mem::take(&mut *self.spilled.lock().unwrap_or_else(PoisonError::into_inner));
        for lock in &self.slots {
            let slot = lock.read().unwrap_or_else(PoisonError::into_inner);
            for (i, c) in slot.counts.iter().enumerate() {
                let n = c.swap(0, Ordering::Relaxed);
                if n > 0 {
                    *taken.entry((slot.minute, i)).or_insert(0) += n;
                }
            }
        }
        taken
    }

    /// Adds what this process counted since the last flush to the database
    /// and forgets it; answers how many rows it added to. If the database
    /// refuses, the counts are kept for the next flush (within `MAX_SPILLED`).
    pub async fn flush(&self, store: &dyn Store) -> hookwarden_store::Result<usize> {
        let taken = self.take();
        if taken.is_empty() {
            return Ok(0);
        }
        let deltas: Vec<ActivityDelta> = taken
            .iter()
            .filter_map(|(&(minute, i), &n)| {
                Some(ActivityDelta {
                    minute: minute_start(minute)?,
                    series: series_name(i).to_owned(),
                    value: i64::try_from(n).unwrap_or(i64::MAX),
                })
            })
            .collect();
        match store.add_activity(&deltas).await {
            Ok(_) => Ok(deltas.len()),
            Err(e) => {
                self.spill(taken);
                Err(e)
            }
        }
    }

    /// Flushes every `FLUSH_EVERY` (on the application's clock) and prunes
    /// rows older than `KEEP` at most once a minute, until `shutdown`; then
    /// flushes once more.
    pub async fn run(self: Arc<Self>, store: Arc<dyn Store>, shutdown: CancellationToken) {
        let mut pruned: Option<DateTime<Utc>> = None;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = self.clock.sleep(FLUSH_EVERY) => {}
            }
            if let Err(e) = self.flush(store.as_ref()).await {
                tracing::warn!(error.message = %e, "adding activity counts to the database failed; they are kept for the next flush");
            }
            let now = self.clock.now();
            if pruned.is_none_or(|at| now - at >= PRUNE_EVERY) {
                pruned = Some(now);
                if let Err(e) = store.prune_activity(now - KEEP).await {
                    tracing::warn!(error.message = %e, "pruning old activity counts failed");
                }
            }
        }
        if let Err(e) = self.flush(store.as_ref()).await {
            tracing::warn!(error.message = %e, "adding the last activity counts failed; they are lost");
        }
    }
}

/// How far back a chart looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Window {
    /// The last hour: 60 points of one minute.
    Hour,
    /// The last day: 144 points of ten minutes.
    Day,
}

impl Window {
    /// Minutes per point.
    pub fn step_minutes(self) -> i64 {
        match self {
            Window::Hour => 1,
            Window::Day => 10,
        }
    }

    /// Points in the chart.
    pub fn points(self) -> usize {
        match self {
            Window::Hour => 60,
            Window::Day => 144,
        }
    }
}

/// One point of a chart: the sums over every replica for the minutes from
/// `at` (inclusive) to the next point.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Point {
    pub at: DateTime<Utc>,
    pub accepted: u64,
    pub duplicate: u64,
    pub refused: u64,
    pub delivered: u64,
    pub failed: u64,
    pub dead: u64,
    /// Delivery latency percentiles (publication to 2xx), interpolated
    /// within the histogram's buckets; `None` without deliveries.
    pub latency_p50_ms: Option<u64>,
    pub latency_p99_ms: Option<u64>,
}

/// A window's points, oldest first, one per step (zero where nothing was
/// counted); the last point holds the current, unfinished minute.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Chart {
    pub window: Window,
    pub step_minutes: i64,
    pub points: Vec<Point>,
}

/// The start of minute `minute` (minutes since the epoch), as activity rows
/// are keyed: what every replica adds to the same row.
pub fn minute_start(minute: i64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(minute.checked_mul(60)?, 0)
}

/// The chart of `window` up to `now`, from the database's sums (what the
/// replicas flushed: the last few seconds may not be in yet).
pub async fn series(
    store: &dyn Store,
    now: DateTime<Utc>,
    window: Window,
) -> hookwarden_store::Result<Chart> {
    let step = window.step_minutes();
    let last = now.timestamp().div_euclid(60).div_euclid(step) * step;
    let first = last - (window.points() as i64 - 1) * step;
    let since = DateTime::from_timestamp(first * 60, 0).unwrap_or(DateTime::<Utc>::MIN_UTC);
    let rows = store.activity_since(since).await?;
    Ok(chart(window, first, &rows))
}

/// The points of `window` from minute `first` (unix minutes), summing `rows`.
fn chart(window: Window, first: i64, rows: &[ActivityDelta]) -> Chart {
    let step = window.step_minutes();
    let mut points: Vec<Point> = (0..window.points() as i64)
        .map(|i| Point {
            at: DateTime::from_timestamp((first + i * step) * 60, 0).unwrap_or_default(),
            ..Point::default()
        })
        .collect();
    let mut latency = vec![[0u64; LATENCY_BUCKETS]; points.len()];
    for row in rows {
        let offset = row.minute.timestamp().div_euclid(60) - first;
        let Some(i) = usize::try_from(offset.div_euclid(step))
            .ok()
            .filter(|&i| offset >= 0 && i < points.len())
        else {
            continue;
        };
        let n = u64::try_from(row.value).unwrap_or(0);
        let p = &mut points[i];
        match row.series.as_str() {
            INBOUND_ACCEPTED => p.accepted += n,
            INBOUND_DUPLICATE => p.duplicate += n,
            INBOUND_REFUSED => p.refused += n,
            OUTBOUND_DELIVERED => p.delivered += n,
            OUTBOUND_FAILED => p.failed += n,
            OUTBOUND_DEAD => p.dead += n,
            // Buckets this version does not know (other bounds) are skipped.
            other => {
                if let Some(b) = LATENCY_SERIES.iter().position(|s| *s == other) {
                    latency[i][b] += n;
                }
            }
        }
    }
    for (p, buckets) in points.iter_mut().zip(&latency) {
        p.latency_p50_ms = percentile(buckets, 0.5);
        p.latency_p99_ms = percentile(buckets, 0.99);
    }
    Chart {
        window,
        step_minutes: step,
        points,
    }
}

/// The `q` quantile (0–1) of a latency histogram, in ms, interpolated
/// linearly within its bucket (as Prometheus' `histogram_quantile`); in the
/// `+inf` bucket, the largest finite bound. `None` for an empty histogram.
pub fn percentile(buckets: &[u64; LATENCY_BUCKETS], q: f64) -> Option<u64> {
    let total: u64 = buckets.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = q.clamp(0.0, 1.0) * total as f64;
    let mut below = 0u64;
    for (i, &n) in buckets.iter().enumerate() {
        if n == 0 || ((below + n) as f64) < rank {
            below += n;
            continue;
        }
        let lower = if i == 0 { 0 } else { LATENCY_BOUNDS_MS[i - 1] };
        let Some(&upper) = LATENCY_BOUNDS_MS.get(i) else {
            return Some(lower);
        };
        let within = (rank - below as f64) / n as f64;
        return Some(lower + ((upper - lower) as f64 * within).round() as u64);
    }
    LATENCY_BOUNDS_MS.last().copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(seconds, 0).expect("time")
    }

    fn histogram(counts: &[(usize, u64)]) -> [u64; LATENCY_BUCKETS] {
        let mut b = [0; LATENCY_BUCKETS];
        for &(i, n) in counts {
            b[i] = n;
        }
        b
    }

    #[test]
    fn series_names_follow_the_bounds() {
        for (i, bound) in LATENCY_BOUNDS_MS.iter().enumerate() {
            assert_eq!(LATENCY_SERIES[i], format!("latency.le.{bound}"));
        }
        assert_eq!(LATENCY_SERIES[LATENCY_BUCKETS - 1], "latency.le.+inf");
        assert!(LATENCY_BOUNDS_MS.windows(2).all(|w| w[0] < w[1]));
        for (count, name) in [
            (Count::Accepted, INBOUND_ACCEPTED),
            (Count::Duplicate, INBOUND_DUPLICATE),
            (Count::Refused, INBOUND_REFUSED),
            (Count::Delivered, OUTBOUND_DELIVERED),
            (Count::Failed, OUTBOUND_FAILED),
            (Count::Dead, OUTBOUND_DEAD),
        ] {
            assert_eq!(series_name(count as usize), name);
        }
        assert_eq!(series_name(COUNTS.len()), "latency.le.5");
    }

    #[test]
    fn percentiles_interpolate_within_buckets() {
        assert_eq!(percentile(&[0; LATENCY_BUCKETS], 0.5), None);
        // One delivery in (25, 50]: p50 halfway, p99 near the top.
        let one = histogram(&[(3, 1)]);
        assert_eq!(percentile(&one, 0.5), Some(38));
        assert_eq!(percentile(&one, 0.99), Some(50));
        // 90 fast (≤ 5 ms), 10 in (1000, 2500]: p50 among the fast ones,
        // p99 in the slow bucket, 9 of its 10 deep.
        let split = histogram(&[(0, 90), (8, 10)]);
        assert_eq!(percentile(&split, 0.5), Some(3));
        assert_eq!(percentile(&split, 0.99), Some(1_000 + 1_350));
        // Empty buckets between are stepped over.
        let gap = histogram(&[(1, 50), (5, 50)]);
        assert_eq!(percentile(&gap, 0.5), Some(10));
        assert_eq!(percentile(&gap, 0.51), Some(100 + 3));
        // Beyond the last bound: the last bound (a lower bound of the truth).
        let slow = histogram(&[(LATENCY_BUCKETS - 1, 4)]);
        assert_eq!(percentile(&slow, 0.99), Some(3_600_000));
        assert_eq!(percentile(&slow, 0.0), Some(3_600_000));
    }

    #[test]
    fn latencies_land_in_their_bucket() {
        let (clock, _hand) = Clock::by_hand();
        let a = Activity::new(clock);
        for ms in [0, 5, 6, 60_000, 60_001, 3_600_001, u64::MAX] {
            a.latency(ms);
        }
        let taken = a.take();
        let by_series: BTreeMap<&str, u64> = taken
            .iter()
            .map(|(&(_, i), &n)| (series_name(i), n))
            .collect();
        assert_eq!(
            by_series,
            BTreeMap::from([
                ("latency.le.5", 2),
                ("latency.le.10", 1),
                ("latency.le.60000", 1),
                ("latency.le.300000", 1),
                ("latency.le.+inf", 2),
            ])
        );
        assert!(a.take().is_empty(), "taken counts are forgotten");
    }

    #[test]
    fn counts_stay_in_their_minute_across_slot_reuse() {
        let (clock, hand) = Clock::by_hand();
        let a = Activity::new(clock.clone());
        // A second into a minute: the counts below cannot straddle two.
        let into = clock.now().timestamp().rem_euclid(60) as u64;
        hand.advance(Duration::from_secs(61 - into));
        let minute = |c: &Clock| c.now().timestamp().div_euclid(60);
        let m0 = minute(&clock);
        a.count(Count::Accepted);
        a.count(Count::Accepted);
        // Two minutes on, the same slot is reused before any flush: the
        // first minute's counts wait beside it, under their own minute.
        hand.advance(Duration::from_secs(120));
        let m2 = minute(&clock);
        a.count(Count::Refused);
        let taken = a.take();
        assert_eq!(taken.get(&(m0, Count::Accepted as usize)), Some(&2));
        assert_eq!(taken.get(&(m2, Count::Refused as usize)), Some(&1));
        assert_eq!(taken.len(), 2);
    }

    #[test]
    fn spilled_counts_are_bounded_oldest_first() {
        let (clock, _hand) = Clock::by_hand();
        let a = Activity::new(clock);
        a.spill((0..(MAX_SPILLED as i64 + 5)).map(|m| ((m, 0), 1)));
        let spilled = a.spilled.lock().expect("spilled");
        assert_eq!(spilled.len(), MAX_SPILLED);
        assert_eq!(spilled.keys().next(), Some(&(5, 0)));
    }

    fn row(minute: i64, series: &str, value: i64) -> ActivityDelta {
        ActivityDelta {
            minute: at(minute * 60),
            series: series.to_owned(),
            value,
        }
    }

    #[test]
    fn hour_points_are_minutes_with_zeros_between() {
        let first = 1_000_000;
        let rows = [
            row(first - 1, INBOUND_ACCEPTED, 7), // before the window
            row(first, INBOUND_ACCEPTED, 2),
            row(first + 59, OUTBOUND_DEAD, 1),
            row(first + 59, "latency.le.50", 1),
            row(first + 60, INBOUND_REFUSED, 9), // after it
            row(first + 3, "something.else", 4),
        ];
        let c = chart(Window::Hour, first, &rows);
        assert_eq!((c.points.len(), c.step_minutes), (60, 1));
        assert_eq!(c.points[0].at.timestamp(), first * 60);
        assert_eq!(c.points[0].accepted, 2);
        assert_eq!(c.points[0].latency_p50_ms, None);
        assert_eq!(
            c.points[1],
            Point {
                at: at((first + 1) * 60),
                ..Point::default()
            }
        );
        assert_eq!(c.points[59].dead, 1);
        assert_eq!(c.points[59].latency_p99_ms, Some(50));
        assert_eq!(c.points.iter().map(|p| p.refused).sum::<u64>(), 0);
    }

    #[test]
    fn day_points_sum_ten_minutes_and_their_histograms() {
        let first = 1_000_000 * 10;
        let rows = [
            row(first, OUTBOUND_DELIVERED, 1),
            row(first + 9, OUTBOUND_DELIVERED, 2),
            row(first + 10, OUTBOUND_FAILED, 5),
            // Ten fast in one minute, ten slow in another of the same point.
            row(first + 1_430, "latency.le.5", 10),
            row(first + 1_439, "latency.le.+inf", 10),
        ];
        let c = chart(Window::Day, first, &rows);
        assert_eq!((c.points.len(), c.step_minutes), (144, 10));
        assert_eq!(c.points[0].delivered, 3);
        assert_eq!(c.points[1].failed, 5);
        assert_eq!(c.points[1].at.timestamp(), (first + 10) * 60);
        let last = &c.points[143];
        assert_eq!(last.latency_p50_ms, Some(5));
        assert_eq!(last.latency_p99_ms, Some(3_600_000));
    }

    #[tokio::test]
    async fn series_ends_at_the_current_point() {
        let (_db, store) =
            hookwarden_store::testing::migrated_store(hookwarden_store::testing::Backend::Sqlite)
                .await;
        let now = at(1_000_000 * 600 + 7 * 60 + 30);
        let hour = series(store.as_ref(), now, Window::Hour)
            .await
            .expect("series");
        assert_eq!(
            hour.points.last().expect("last").at,
            at(1_000_000 * 600 + 7 * 60)
        );
        let day = series(store.as_ref(), now, Window::Day)
            .await
            .expect("series");
        assert_eq!(day.points.last().expect("last").at, at(1_000_000 * 600));
        assert_eq!(day.points[0].at, at(1_000_000 * 600 - 143 * 600));
    }
}
