//! Group commit: writes that arrive while a commit is on disk wait together
//! and share the next transaction, so one fsync covers many of them. Used for
//! published and inbound events and for recording delivery tries. Nothing
//! is answered before its transaction commits, and a failing batch is
//! retried item by item, so one bad item never fails the others.
//!
//! At a steady rate each write arrives alone, and each batch is a commit
//! (an fsync, statements started in the database, a round trip) of its own
//! that wakes the database's thread and then ours several times. So a batch
//! may also linger for company (`Pace`): up to 20 ms for writes nobody
//! waits on to answer a client (recorded tries), 10 ms for published
//! events, whose producers wait on them, 5 ms for inbound events on SQLite.

use crate::error::{Result, StoreError};
use async_trait::async_trait;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, Mutex};
use tokio::time::Instant;

/// Most items one commit carries.
const MAX_BATCH: usize = 128;

/// How long a batch of recorded tries may wait for more. Nobody waits on
/// it to answer a client: the try's slot went back to its endpoint before
/// recording (`pump.rs`), and its lease lasts far longer. At 200 tries a
/// second a batch then carries about four.
pub(crate) const OUTCOMES_LINGER: Linger = Linger {
    most: Duration::from_millis(20),
    after_fewer_than: MAX_BATCH,
};

/// How long a batch of published events may wait for more. Their
/// callers (producers) wait on it for their answer, so the wait is
/// bounded: from about 200 events a second, it lets a commit (its fsync,
/// each statement's start in the database, the hand-offs to the
/// database's thread) carry two to ten of them instead of one, for a few
/// milliseconds more before the answer (publish → delivery at 1,000/s:
/// p50 2.2–2.5 ms and p99 5 ms later than with 5 ms). 10 ms rather than
/// 5: the CPU per event at a steady 200, 500 and 1,000/s fell by 24 %,
/// 14 % and 11 % on SQLite and by 8–16 %, 13–16 % and 5–6 % on
/// PostgreSQL, and 200/s, the costliest rate per event, lingers at all
/// (README › Benchmarks › Sustained load). Slower
/// than that, `Pace` does not wait; nor in a burst, where batches form by
/// themselves; nor, for a while, after a wait that found nobody (one
/// caller, or a few, each waiting on its answer before sending the next).
/// Nor after a batch of eight or more (from about 800/s, every other
/// batch): when many callers each wait on their answer to send the next,
/// holding answers back holds their next requests back too (receiving
/// flat out over 64 connections, which lingered so in a first version,
/// fell 15 %).
pub(crate) const PUBLISH_LINGER: Linger = Linger {
    most: Duration::from_millis(10),
    after_fewer_than: 8,
};

/// How long a batch of inbound events may wait for more on SQLite (on
/// PostgreSQL they do not wait, `Linger::NONE`). As publishes, but at most
/// 5 ms: a provider waits on the answer, and the ingress keeps its p99
/// under 20 ms at half the flat-out rate (8 ms with this wait, 2 without).
/// There it cut the CPU per webhook from 61–64 µs to 54–55; flat out the
/// batches are larger than eight and never wait.
pub(crate) const INBOUND_LINGER: Linger = Linger {
    most: Duration::from_millis(5),
    after_fewer_than: 8,
};

/// How a batch may wait for company (`Pace`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Linger {
    /// The longest a batch waits, from its first item.
    pub(crate) most: Duration,
    /// Only after a batch of fewer items than this.
    pub(crate) after_fewer_than: usize,
}

impl Linger {
    /// No waiting at all: inbound events on PostgreSQL, whose four
    /// committers make small batches at any rate; lingering as publishes
    /// did, it received 13,400 → 9,700 webhooks a second flat out. (On
    /// SQLite's single committer they linger briefly: `INBOUND_LINGER`.)
    pub(crate) const NONE: Linger = Linger {
        most: Duration::ZERO,
        after_fewer_than: 0,
    };
}

/// Writes several items in one transaction (each backend its own SQL).
#[async_trait]
pub(crate) trait BatchWriter: Send + Sync + 'static {
    type Item: Send + Sync + 'static;
    type Outcome: Send + 'static;
    /// What the writer is for, in errors.
    const NAME: &'static str;
    async fn commit(&self, items: &[&Self::Item]) -> Result<Vec<Self::Outcome>>;
}

type Request<I, O> = (I, oneshot::Sender<Result<O>>);

pub(crate) struct Batcher<I, O> {
    tx: mpsc::Sender<Request<I, O>>,
    name: &'static str,
}

impl<I, O> Clone for Batcher<I, O> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
            name: self.name,
        }
    }
}

impl<I: Send + Sync + 'static, O: Send + 'static> Batcher<I, O> {
    /// Starts the batcher with `commits` transactions at most in progress at
    /// once (one for SQLite's single writer; a few for PostgreSQL, whose
    /// round trips would otherwise bound a lone committer). A batch that has
    /// begun waits up to `linger` for more items when the recent pace says
    /// some will come (`Pace`). It ends when the store, holding the sender,
    /// drops.
    pub(crate) fn lingering<W: BatchWriter<Item = I, Outcome = O>>(
        writer: W,
        commits: usize,
        linger: Linger,
    ) -> Self {
        let (tx, rx) = mpsc::channel(MAX_BATCH * 8);
        // One pace for all committers: it measures the queue's arrivals,
        // and a committer of two sees only every other batch (at 500 a
        // second each would see one item in 4 ms, and never linger).
        let queue = Arc::new(Mutex::new((rx, Pace::new(linger))));
        let writer = Arc::new(writer);
        for _ in 0..commits.max(1) {
            tokio::spawn(run(writer.clone(), queue.clone(), linger));
        }
        Self { tx, name: W::NAME }
    }

    /// Waits until `item` is committed (with the others of its batch).
    pub(crate) async fn submit(&self, item: I) -> Result<O> {
        let stopped = || StoreError::Corrupt(format!("the {} writer stopped", self.name));
        let (reply, answer) = oneshot::channel();
        self.tx.send((item, reply)).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

type Queue<W> = Arc<
    Mutex<(
        mpsc::Receiver<Request<<W as BatchWriter>::Item, <W as BatchWriter>::Outcome>>,
        Pace,
    )>,
>;

async fn run<W: BatchWriter>(writer: Arc<W>, queue: Queue<W>, linger: Linger) {
    loop {
        // Take what is waiting (up to a batch), then let another committer in.
        let batch = {
            let mut queue = queue.lock().await;
            let (rx, pace) = &mut *queue;
            let asked = Instant::now();
            let Some(first) = rx.recv().await else {
                return;
            };
            let begun = Instant::now();
            let gap = pace.gap(begun, begun - asked);
            let mut batch = vec![first];
            // How many were there without waiting: a linger is judged by
            // what it adds to them.
            let mut ready = None;
            let mut wait = gap;
            loop {
                while batch.len() < MAX_BATCH {
                    match rx.try_recv() {
                        Ok(next) => batch.push(next),
                        Err(_) => break,
                    }
                }
                ready.get_or_insert(batch.len());
                let Some(now_wait) = wait.filter(|_| batch.len() < MAX_BATCH) else {
                    break;
                };
                let until = (Instant::now() + now_wait).min(begun + linger.most);
                match tokio::time::timeout_at(until, rx.recv()).await {
                    Ok(Some(next)) => {
                        batch.push(next);
                        wait = gap.map(|g| next_wait(g, begun.elapsed(), batch.len()));
                    }
                    // The time is up, nobody came within the gap (whoever
                    // could is waiting on this batch, say), or the store is
                    // gone: commit these.
                    _ => break,
                }
            }
            let found = batch.len() > ready.unwrap_or(batch.len());
            pace.took(begun, gap.is_some(), batch.len(), found);
            batch
        };
        let items: Vec<&W::Item> = batch.iter().map(|(e, _)| e).collect();
        match writer.commit(&items).await {
            Ok(outcomes) => {
                for ((_, reply), outcome) in batch.into_iter().zip(outcomes) {
                    let _ = reply.send(Ok(outcome));
                }
            }
            // Retry one by one: each answer then reflects its own item.
            Err(_) => {
                for (item, reply) in batch {
                    let one = writer.commit(&[&item]).await.and_then(|mut o| {
                        o.pop()
                            .ok_or_else(|| StoreError::Corrupt(format!("{}: no outcome", W::NAME)))
                    });
                    let _ = reply.send(one);
                }
            }
        }
    }
}

/// How long a lingering batch of `items`, begun `since` ago, waits for its
/// next item: the pace's `gap`, but not more than twice the mean interval
/// between the items it has, nor less than `TICK`. A few callers that each
/// wait on their answer before sending the next arrive within moments of
/// each other, and then nobody more until they are answered: waiting the
/// pace's gap after the last of them held every answer back, and the gap,
/// measured over rounds that wait lengthened, grew to the whole linger
/// (three callers 1–3 ms from an answer to their next request: 13 ms a
/// round instead of 7). A steady stream keeps its wait: its items come a
/// gap apart, or several on one tick of a timer, hence the floor (with
/// none, items that came together read as an interval near zero, ended
/// the wait before the next tick, and at 1,000/s cost 12–22 % more CPU).
fn next_wait(gap: Duration, since: Duration, items: usize) -> Duration {
    let mean = since / u32::try_from(items.saturating_sub(1).max(1)).unwrap_or(u32::MAX);
    gap.min((mean * 2).max(TICK))
}

/// The least a lingering batch waits for a next item once it holds two:
/// a timer's tick (tokio's are a millisecond) and as much again.
const TICK: Duration = Duration::from_millis(2);

/// Whether a batch lingers for more, and how long it waits for each next
/// item. Only when the committer had waited for the batch's first item
/// (one already queued means items come faster than commits, as in a
/// burst: batches form by themselves, and a linger would only hold up the
/// writers waiting on it), and when the last batch's size and the time
/// since it began say at least two more would arrive within the linger (a
/// steady rate, not a lone write). Each next item is awaited for twice the recent mean
/// gap between items at most, so a batch that holds everything its
/// writers can send (a bounded number of outcomes may wait to be recorded,
/// `pump.rs`) is committed at once rather than at the linger's end. And
/// not for a while after a linger that found nobody (one caller writing
/// one item at a time, or a few that each wait on their answer before
/// sending the next: all of theirs were there at once, and the wait only
/// held their next ones back), each such linger doubling the while, up to
/// 64 batches. Nor, for writes whose callers wait on them, after a batch
/// of `after_fewer_than` items or more (`PUBLISH_LINGER`, `INBOUND_LINGER`).
struct Pace {
    linger: Linger,
    /// When the last batch began, and how many items it took.
    last: Option<(Instant, usize)>,
    /// Batches still to go without lingering, and the next such pause.
    skip: u32,
    backoff: u32,
}

/// A committer that waited less than this for a batch's first item found
/// it queued.
const QUEUED: Duration = Duration::from_micros(200);

/// The least wait for a next item (tokio's timer rounds a deadline up to
/// its millisecond anyway, so a linger may last up to 1 ms longer than
/// asked).
const LEAST_GAP: Duration = Duration::from_micros(500);

impl Pace {
    fn new(linger: Linger) -> Self {
        Self {
            linger,
            last: None,
            skip: 0,
            backoff: 1,
        }
    }

    /// How long to wait for each next item of the batch beginning `now`,
    /// whose first item the committer `waited` for; None: no lingering.
    fn gap(&mut self, now: Instant, waited: Duration) -> Option<Duration> {
        if self.linger.most.is_zero() || waited < QUEUED {
            return None;
        }
        if self.skip > 0 {
            self.skip -= 1;
            return None;
        }
        let (at, took) = self.last?;
        if took >= self.linger.after_fewer_than {
            return None;
        }
        let since = now.duration_since(at).max(LEAST_GAP);
        let expected = took as f64 * self.linger.most.as_secs_f64() / since.as_secs_f64();
        if expected < 2.0 {
            return None;
        }
        let mean = since / u32::try_from(took.max(1)).unwrap_or(u32::MAX);
        Some((mean * 2).clamp(LEAST_GAP.min(self.linger.most), self.linger.most))
    }

    /// The batch that began at `begun` took `items`; if it `lingered`,
    /// whether that `found` any it would not have had at once.
    fn took(&mut self, begun: Instant, lingered: bool, items: usize, found: bool) {
        self.last = Some((begun, items));
        if lingered && !found {
            self.skip = self.backoff;
            self.backoff = (self.backoff * 2).min(64);
        } else if lingered {
            self.backoff = 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINGER: Linger = OUTCOMES_LINGER;
    /// A committer that waited for the first item (not a burst).
    const WAITED: Duration = Duration::from_millis(1);

    /// Items every 5 ms (200/s): four would come within a linger, so the
    /// next batch lingers, waiting up to twice that gap for each; one every
    /// 100 ms does not, nor a batch whose first item was already queued.
    #[test]
    fn a_batch_lingers_only_at_a_pace_that_brings_company() {
        let t0 = Instant::now();
        let mut pace = Pace::new(LINGER);
        assert_eq!(pace.gap(t0, WAITED), None, "nothing to go by yet");
        pace.took(t0, false, 1, false);
        let t1 = t0 + Duration::from_millis(5);
        assert_eq!(
            pace.gap(t1, WAITED),
            Some(Duration::from_millis(10)),
            "200/s: about four more in 20 ms, each within 10 ms"
        );
        pace.took(t1, true, 4, true);
        let slow = t1 + Duration::from_millis(100);
        assert_eq!(
            pace.gap(slow, WAITED),
            None,
            "4 in 100 ms: under one in 20 ms"
        );
        pace.took(slow, false, 100, false);
        let burst = slow + Duration::from_millis(2);
        assert_eq!(
            pace.gap(burst, Duration::ZERO),
            None,
            "its first item was queued: items already outpace commits"
        );
        assert_eq!(
            Pace::new(Linger::NONE).gap(t0, WAITED),
            None,
            "no linger set"
        );
    }

    /// Writes whose callers wait on them linger only after a small batch:
    /// after one of eight or more (many callers, the batches forming by
    /// themselves) they go at once, at any pace; recorded tries still wait.
    #[test]
    fn answered_writes_linger_only_after_a_small_batch() {
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_millis(1);
        let after = |linger: Linger, took: usize| {
            let mut pace = Pace::new(linger);
            pace.took(t0, false, took, false);
            pace.gap(t1, WAITED)
        };
        for answered in [PUBLISH_LINGER, INBOUND_LINGER] {
            assert_eq!(
                after(answered, 1),
                Some(Duration::from_millis(2)),
                "1,000/s: more within the linger, each within 2 ms"
            );
            assert_eq!(after(answered, 7), Some(LEAST_GAP));
            assert_eq!(after(answered, 8), None, "a batch that formed by itself");
            assert_eq!(after(answered, 64), None);
        }
        assert!(after(OUTCOMES_LINGER, 64).is_some());
    }

    /// Batches of `items` every millisecond, each all there at once (a
    /// linger finds nobody more): how many of 200 lingered.
    fn lingers_in_200(pace: &mut Pace, t: &mut Instant, items: usize) -> u32 {
        pace.took(*t, false, items, false);
        let mut lingered = 0;
        for _ in 0..200 {
            *t += Duration::from_millis(1);
            let gap = pace.gap(*t, WAITED);
            lingered += u32::from(gap.is_some());
            pace.took(*t, gap.is_some(), items, false);
        }
        lingered
    }

    /// One caller writing one item at a time finds nobody in each linger:
    /// after each, it goes without for twice as many batches as before, up
    /// to 64, and a linger that found company ends the pauses.
    #[test]
    fn a_lone_writer_stops_lingering_for_longer_each_time() {
        let mut t = Instant::now();
        let mut pace = Pace::new(LINGER);
        let lingered = lingers_in_200(&mut pace, &mut t, 1);
        assert!(
            lingered <= 10,
            "{lingered} lingers in 200 lone writes: the pauses grow (1, 2, 4 … 64)"
        );
        // Company again: the pauses end.
        while pace.gap(t, WAITED).is_none() {
            t += Duration::from_millis(1);
            pace.took(t, false, 1, false);
        }
        pace.took(t, true, 5, true);
        assert_eq!((pace.skip, pace.backoff), (0, 1));
    }

    /// Two callers that each wait on their answer before sending the next:
    /// both items are there at once, and a linger finds nobody more. It
    /// backs off as for one lone writer, rather than holding every answer
    /// back (which, the longer the last batch took, waited longer still).
    #[test]
    fn a_few_callers_waiting_on_their_answers_stop_lingering() {
        let mut t = Instant::now();
        let mut pace = Pace::new(PUBLISH_LINGER);
        let lingered = lingers_in_200(&mut pace, &mut t, 2);
        assert!(lingered <= 10, "{lingered} lingers in 200 batches of two");
        // A linger that found a third: the pauses end.
        pace.skip = 0;
        t += Duration::from_millis(1);
        assert!(pace.gap(t, WAITED).is_some());
        pace.took(t, true, 3, true);
        assert_eq!((pace.skip, pace.backoff), (0, 1));
    }

    /// A writer that answers each item with the size of its batch, after
    /// taking the given time to commit.
    struct Sizes(Duration);

    #[async_trait]
    impl BatchWriter for Sizes {
        type Item = u32;
        type Outcome = usize;
        const NAME: &'static str = "sizes";
        async fn commit(&self, items: &[&u32]) -> Result<Vec<usize>> {
            if !self.0.is_zero() {
                tokio::time::sleep(self.0).await;
            }
            Ok(vec![items.len(); items.len()])
        }
    }

    /// Outcomes waiting on a batch that holds every one its writers may
    /// send: the batch is committed within the gap, not at the linger's end.
    #[tokio::test]
    async fn a_batch_that_holds_all_there_is_does_not_wait_out_the_linger() {
        let linger = Linger {
            most: Duration::from_secs(5),
            after_fewer_than: MAX_BATCH,
        };
        let b = Batcher::lingering(Sizes(Duration::ZERO), 1, linger);
        // Batches of one, 1 ms apart: the second lingers and finds nobody,
        // the third goes at once (a pause of one batch), and the next may
        // linger again.
        for i in 0..3 {
            b.submit(i).await.expect("committed");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        // Then four at once and nothing more: the batch lingers, and goes
        // within the gap (a few ms), not after the 5 s linger.
        let started = Instant::now();
        let sizes = futures_join4(b.submit(10), b.submit(11), b.submit(12), b.submit(13)).await;
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "took {:?}",
            started.elapsed()
        );
        assert_eq!(sizes, [4, 4, 4, 4], "all four in one batch");
    }

    /// Three callers that each send their next item 1, 2 and 3 ms after
    /// their last was answered (a client's round trip), and a commit that
    /// takes 2 ms: each batch takes all three and waits about twice their
    /// interval for more, round after round (7 ms a round), rather than
    /// the pace's gap, which the longer round itself lengthened up to the
    /// whole linger (13 ms a round, 1.28 s in all, without `next_wait`).
    /// Time is paused: the figures do not depend on the machine.
    #[tokio::test(start_paused = true)]
    async fn callers_waiting_on_their_answers_are_not_held_a_growing_while() {
        let b = Batcher::lingering(Sizes(Duration::from_millis(2)), 1, PUBLISH_LINGER);
        let caller = |b: Batcher<u32, usize>, delay: u64| async move {
            let mut sizes = Vec::new();
            for i in 0..100 {
                if i > 0 {
                    tokio::time::sleep(Duration::from_millis(delay)).await;
                }
                sizes.push(b.submit(i).await.expect("committed"));
            }
            sizes
        };
        let started = Instant::now();
        let (one, two, three) = tokio::join!(
            caller(b.clone(), 1),
            caller(b.clone(), 2),
            caller(b.clone(), 3)
        );
        let took = started.elapsed();
        assert!(
            took < Duration::from_millis(900),
            "100 rounds took {took:?}"
        );
        let together = one
            .iter()
            .chain(&two)
            .chain(&three)
            .filter(|&&n| n == 3)
            .count();
        assert!(
            together >= 270,
            "{together} of 300 answered in a batch of three"
        );
    }

    async fn futures_join4(
        a: impl std::future::Future<Output = Result<usize>>,
        b: impl std::future::Future<Output = Result<usize>>,
        c: impl std::future::Future<Output = Result<usize>>,
        d: impl std::future::Future<Output = Result<usize>>,
    ) -> [usize; 4] {
        let (a, b, c, d) = tokio::join!(a, b, c, d);
        [a, b, c, d].map(|r| r.expect("committed"))
    }
}
