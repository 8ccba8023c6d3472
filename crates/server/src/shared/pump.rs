//! The work pump shared by outbound delivery and inbound forwarding: claims
//! due items within an in-flight budget, never letting one lane (endpoint)
//! hold more than its share, processes them concurrently, records their
//! outcomes, and drains on shutdown. What an item is and how it is processed
//! is the `Queue`'s business.

use crate::shared::backlog::Backlog;
use crate::shared::clock::Clock;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{watch, Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

#[async_trait]
pub trait Queue: Send + Sync + 'static {
    type Item: Send + 'static;
    /// The lane an item belongs to (its endpoint), for fairness.
    fn lane(item: &Self::Item) -> String;
    /// Claims up to `limit` due items, none in `exclude` lanes, leased to
    /// `worker_id`: the claim's own name (the worker's id and the claim's
    /// number), which `release`, `process` and `record` get back for its items.
    async fn claim(
        &self,
        worker_id: &str,
        limit: u32,
        exclude: &[String],
    ) -> anyhow::Result<Vec<Self::Item>>;
    /// Gives back claimed items without working on them.
    async fn release(&self, worker_id: &str, items: Vec<Self::Item>) -> anyhow::Result<()>;
    /// What processing leaves to record.
    type Done: Send + 'static;
    /// Works on one item: the part that holds an in-flight slot. The lease
    /// on it ends at `lease_ends` at the latest (measured before the claim,
    /// on `PumpConfig::clock`):
    /// a try that could outlive it must not start, since another worker may
    /// claim the item once the lease is over.
    async fn process(&self, worker_id: &str, item: Self::Item, lease_ends: Instant) -> Self::Done;
    /// Records the outcome, after the slot is given back: waiting for a
    /// commit is not a delivery in flight, and holding slots through it
    /// would idle the budget while the database syncs.
    async fn record(&self, worker_id: &str, done: Self::Done);
}

/// How many outcomes may wait to be recorded, per slot of the budget. When
/// recording falls behind, finished items keep their slots, which holds
/// new claims back (backpressure) instead of piling outcomes up in memory.
/// It also bounds what a crash can repeat: at most twice the budget of
/// tries were made and not yet recorded.
const RECORDING_PER_SLOT: usize = 1;

/// Room kept between a try's timeout and the end of its lease.
const LEASE_MARGIN: Duration = Duration::from_secs(1);

/// Whether a try started `now` that may take `timeout` ends inside its lease
/// (with a margin): if not, it must not start, since the item may be claimed
/// by another worker once the lease is over. `now` is read on the clock the
/// lease was measured on (`Clock::instant`).
pub fn fits_in_lease(now: Instant, timeout: Duration, lease_ends: Instant) -> bool {
    now + timeout + LEASE_MARGIN <= lease_ends
}

/// After a slot frees, how long the pump waits for more before claiming, so
/// that a busy pump claims in batches, not one row per freed slot.
const CLAIM_LINGER: Duration = Duration::from_millis(3);

/// Tells a pump that new work was committed, and for which lanes when the
/// committer knows. A wake only for lanes that hold their whole share needs
/// no claim: the claim would leave those lanes out and walk past all their
/// due rows to find nothing, and a busy lane's backlog can be long. Those
/// lanes are claimed again when one of their slots frees.
#[derive(Default)]
pub struct Wake {
    notify: Notify,
    woken: Mutex<Woken>,
}

/// What was woken since the pump last claimed.
#[derive(Default)]
enum Woken {
    #[default]
    Nothing,
    Lanes(HashSet<String>),
    /// Work of lanes not named (a replay, a retry by hand).
    Any,
}

impl Wake {
    /// New work in these lanes.
    pub fn lanes<I: IntoIterator<Item = String>>(&self, lanes: I) {
        {
            let mut w = self.woken.lock().unwrap_or_else(|p| p.into_inner());
            match &mut *w {
                Woken::Any => {}
                Woken::Lanes(set) => set.extend(lanes),
                nothing => *nothing = Woken::Lanes(lanes.into_iter().collect()),
            }
        }
        self.notify.notify_one();
    }

    /// New work in lanes not named.
    pub fn any(&self) {
        *self.woken.lock().unwrap_or_else(|p| p.into_inner()) = Woken::Any;
        self.notify.notify_one();
    }

    /// Whether nothing was woken since the last claim took it.
    fn is_empty(&self) -> bool {
        match &*self.woken.lock().unwrap_or_else(|p| p.into_inner()) {
            Woken::Nothing => true,
            Woken::Lanes(lanes) => lanes.is_empty(),
            Woken::Any => false,
        }
    }

    /// The lanes woken and not yet claimed for; None: lanes not named.
    fn woken_lanes(&self) -> Option<HashSet<String>> {
        match &*self.woken.lock().unwrap_or_else(|p| p.into_inner()) {
            Woken::Nothing => Some(HashSet::new()),
            Woken::Lanes(lanes) => Some(lanes.clone()),
            Woken::Any => None,
        }
    }

    fn take(&self) -> Woken {
        std::mem::take(&mut *self.woken.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Puts back what a claim took and could not serve (no slot was free),
    /// without waking the pump: the claim after the next freed slot serves it.
    fn keep(&self, woken: Woken) {
        let mut w = self.woken.lock().unwrap_or_else(|p| p.into_inner());
        match (&mut *w, woken) {
            (_, Woken::Nothing) | (Woken::Any, _) => {}
            (now, Woken::Any) => *now = Woken::Any,
            (Woken::Lanes(set), Woken::Lanes(lanes)) => set.extend(lanes),
            (now, lanes) => *now = lanes,
        }
    }
}

/// What a claim is for, which sets how much it asks for.
#[derive(Debug, PartialEq)]
enum Trigger {
    /// Anything due (start-up, the poll, work in lanes not named): as much
    /// as the budget has free.
    All,
    /// Lanes known to have room and work: those woken, and those whose slots
    /// freed since the last claim. The claim asks for their room only; asking
    /// for the whole free budget took rows of a lane at its share that were
    /// then given back (a sixth of all rows claimed in a one-endpoint burst)
    /// and claimed once per freed slot.
    Lanes(HashSet<String>),
}

/// How much of the in-flight budget one lane (endpoint) may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LaneShare {
    /// At most this many, whatever else is going on (an operator's setting).
    Fixed(usize),
    /// The default: a lane alone may use three quarters of the budget, so a
    /// newcomer always finds a quarter free at once; with company, the budget
    /// is split evenly among the busy lanes, never below a quarter each.
    Fair,
}

impl LaneShare {
    /// The most a lane may hold while `busy` lanes (itself included) hold work.
    pub fn cap(self, budget: usize, busy: usize) -> usize {
        match self {
            Self::Fixed(n) => n,
            Self::Fair => {
                let floor = (budget / 4).max(1);
                if busy <= 1 {
                    budget.saturating_sub(floor).max(floor)
                } else {
                    floor.max(budget / busy)
                }
            }
        }
    }
}

#[derive(Debug, Clone)]
pub struct PumpConfig {
    /// For logs and metrics: `delivery` or `forwarding`.
    pub name: &'static str,
    pub max_in_flight: usize,
    pub per_lane: LaneShare,
    pub poll_interval: Duration,
    /// How long shutdown waits for items in flight.
    pub drain: Duration,
    /// How long a claim's lease lasts.
    pub lease: Duration,
    /// What the lease is measured on.
    pub clock: Clock,
}

pub struct Pump<Q: Queue> {
    queue: Q,
    config: PumpConfig,
    worker_id: String,
    permits: Arc<Semaphore>,
    /// Places for outcomes waiting to be recorded.
    recording: Arc<Semaphore>,
    per_lane: Mutex<HashMap<String, usize>>,
    /// Lanes whose slots freed since the last claim.
    refill: Mutex<HashSet<String>>,
    slot_freed: Notify,
    wake: Arc<Wake>,
    /// Claims made, for each claim's owner name.
    claims: AtomicU64,
    /// Which lanes may have due work waiting in the database.
    backlog: Backlog,
    /// Set once the pump stops: no item is adopted after that.
    stopping: AtomicBool,
    /// Items adopted and started, for tests and tools.
    handed: AtomicU64,
    /// The claim whose query is under way, if any (`UnderWay`).
    under_way: Mutex<Option<Arc<UnderWay>>>,
    /// Whether the last claim came back short: only then may items be
    /// adopted during the next (in a burst claims come back full, and an
    /// item adopted meanwhile would only go back).
    last_short: AtomicBool,
}

/// A claim whose query is under way. It will take every due row stored
/// before it began, of the lanes it does not exclude, if it comes back
/// short. An item of such a lane stored meanwhile is adopted only after a
/// claim that came back short and beyond the slots this one may fill, and
/// waits for its verdict: started with
/// the claim's items if the claim showed its lane clear, given back (for a
/// later claim, behind the older rows) otherwise. Refusing it instead
/// stored it for a claim, and at a steady rate a try arrived during nearly
/// every claim: each claim left a try of the lane behind, and the lane
/// never went back to being handed its tries as they were stored.
struct UnderWay {
    epoch: u64,
    limit: usize,
    exclude: HashSet<String>,
    verdict: watch::Sender<Option<Verdict>>,
}

/// A claim under way, as it ends: no longer under way, and `Unknown` sent
/// unless a verdict was.
struct Unsettled<'a>(&'a Mutex<Option<Arc<UnderWay>>>, &'a Arc<UnderWay>);

impl Drop for Unsettled<'_> {
    fn drop(&mut self) {
        let mut slot = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if slot.as_ref().is_some_and(|c| Arc::ptr_eq(c, self.1)) {
            *slot = None;
        }
        drop(slot);
        self.1.verdict.send_if_modified(|v| {
            let unsent = v.is_none();
            if unsent {
                *v = Some(Verdict::Unknown);
            }
            unsent
        });
    }
}

/// What a claim showed once it came back.
#[derive(Clone)]
enum Verdict {
    /// Short: every lane but these had nothing more due from before it.
    Short(Arc<HashSet<String>>),
    /// Full or failed: no lane is known clear.
    Unknown,
}

impl Verdict {
    fn clears(&self, lane: &str) -> bool {
        matches!(self, Verdict::Short(not) if !not.contains(lane))
    }
}

/// A slot reserved for an item being stored leased to this worker
/// (`Pump::adopt`): worked on once `start`ed, given back if dropped.
pub struct Adopted<Q: Queue> {
    pump: Arc<Pump<Q>>,
    lane: String,
    permit: Option<OwnedSemaphorePermit>,
    lease_ends: Instant,
    /// The lease's end as the database records it: never before `lease_ends`.
    pub lease_until: DateTime<Utc>,
    /// The lease's owner: a name of its own, like a claim's.
    pub owner: Arc<str>,
    /// The verdict of the claim under way when adopted, to wait for.
    after: Option<watch::Receiver<Option<Verdict>>>,
}

impl<Q: Queue> Adopted<Q> {
    /// The item was stored leased to `owner`: work on it.
    pub fn start(mut self, item: Q::Item) {
        let Some(permit) = self.permit.take() else {
            return;
        };
        let claimed = Claimed {
            item,
            permit,
            lease_ends: self.lease_ends,
            owner: self.owner.clone(),
            adopted: true,
        };
        let pump = Arc::clone(&self.pump);
        let after = self.after.take();
        tokio::spawn(async move {
            if let Some(mut after) = after {
                // A dropped sender (the claim never finished) clears nothing.
                let verdict = match after.wait_for(Option::is_some).await {
                    Ok(v) => v.clone().unwrap_or(Verdict::Unknown),
                    Err(_) => Verdict::Unknown,
                };
                if !verdict.clears(&Q::lane(&claimed.item)) {
                    pump.give_back(claimed).await;
                    return;
                }
            }
            pump.handed.fetch_add(1, Ordering::Relaxed);
            metrics::counter!(crate::shared::metrics::TRIES_STARTED, "queue" => pump.config.name, "how" => "handed")
                .increment(1);
            pump.work(claimed).await
        });
    }
}

impl<Q: Queue> Drop for Adopted<Q> {
    fn drop(&mut self) {
        if let Some(permit) = self.permit.take() {
            self.pump.finish(&self.lane);
            drop(permit);
            self.pump.record_in_flight();
            // A claim that found no free slot meanwhile is owed one.
            self.pump.slot_freed.notify_one();
        }
    }
}

/// A claimed item with its in-flight slot, the end of its lease and the
/// name it was claimed under (the worker's id and the claim's number).
struct Claimed<I> {
    item: I,
    permit: OwnedSemaphorePermit,
    lease_ends: Instant,
    owner: Arc<str>,
    /// Handed over as it was stored (`Pump::adopt`), not claimed.
    adopted: bool,
}

impl<Q: Queue> Pump<Q> {
    pub fn new(queue: Q, config: PumpConfig, wake: Arc<Wake>) -> Self {
        Self {
            queue,
            worker_id: hookwarden_core::ids::new_id("worker"),
            permits: Arc::new(Semaphore::new(config.max_in_flight)),
            recording: Arc::new(Semaphore::new(config.max_in_flight * RECORDING_PER_SLOT)),
            per_lane: Mutex::new(HashMap::new()),
            refill: Mutex::new(HashSet::new()),
            slot_freed: Notify::new(),
            wake,
            claims: AtomicU64::new(0),
            backlog: Backlog::default(),
            stopping: AtomicBool::new(false),
            handed: AtomicU64::new(0),
            under_way: Mutex::new(None),
            last_short: AtomicBool::new(false),
            config,
        }
    }

    pub fn queue(&self) -> &Q {
        &self.queue
    }

    /// A slot for an item of `lane` that is about to be stored leased to
    /// this worker, so that it needs no claim: only while the lane has room
    /// and no older due work of the lane is known to wait in the database
    /// (which it would overtake). Refused for want of room, the lane is
    /// noted as having work waiting: the item will be stored for a claim.
    pub fn adopt(self: &Arc<Self>, lane: &str) -> Option<Adopted<Q>> {
        // Nor beyond the free slots owed to claims (the room of lanes woken
        // or freed and not yet served), or a lane waiting for room would
        // starve.
        if self.stopping.load(Ordering::Relaxed) || self.free_beyond_owed() == 0 {
            return None;
        }
        // While a claim is under way: only beyond the slots it may fill (the
        // rows it brings back must find theirs), only if it can take all
        // the lane has waiting, and then after its verdict (`UnderWay`).
        let under_way = self
            .under_way
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let after = match under_way {
            None if self.backlog.behind(lane) => return None,
            None => None,
            Some(c)
                if !self.last_short.load(Ordering::Relaxed)
                    || self.permits.available_permits() <= c.limit
                    || c.exclude.contains(lane)
                    || self.backlog.behind_since(lane, c.epoch) =>
            {
                return None
            }
            Some(c) => Some(c.verdict.subscribe()),
        };
        // In this order, as for a claim: the database's lease never ends
        // before the one the worker keeps to.
        let lease_ends = self.config.clock.instant() + self.config.lease;
        let lease = chrono::Duration::from_std(self.config.lease).ok()?;
        let lease_until = self.config.clock.now().checked_add_signed(lease)?;
        let Some(permit) = self.reserve(lane) else {
            self.backlog.gained([&lane.to_owned()]);
            return None;
        };
        self.record_in_flight();
        Some(Adopted {
            pump: Arc::clone(self),
            lane: lane.to_owned(),
            permit: Some(permit),
            lease_ends,
            lease_until,
            owner: self.owner_name(),
            after,
        })
    }

    /// An adopted item whose claim under way did not show its lane clear:
    /// older items of its lane may wait in the database, so it goes back
    /// there (unleased) to be claimed behind them.
    async fn give_back(&self, claimed: Claimed<Q::Item>) {
        let lane = Q::lane(&claimed.item);
        // Behind from now on: until the release commits no claim can see
        // the item, and a claim meanwhile must not clear its lane.
        self.backlog.returning(&lane);
        if let Err(e) = self.queue.release(&claimed.owner, vec![claimed.item]).await {
            tracing::warn!(queue = self.config.name, error.message = %format!("{e:#}"), "giving back an item stored during a claim failed; it waits for its lease");
        }
        self.backlog.returned(&lane);
        self.finish(&lane);
        drop(claimed.permit);
        self.record_in_flight();
        self.wake.lanes([lane]);
        self.slot_freed.notify_one();
    }

    /// Items of these lanes were stored for a claim (the worker had no room,
    /// or was not asked): later ones must not overtake them, and a claim is
    /// owed. Told by whoever stored them, whether or not the caller that
    /// published them is still there to wake the pump.
    pub fn stored_for_claim(&self, lanes: &[String]) {
        if lanes.is_empty() {
            return;
        }
        self.backlog.gained(lanes);
        self.wake.lanes(lanes.iter().cloned());
    }

    /// Whether this lane may have due work waiting in the database, as far
    /// as the pump knows (until a claim has shown otherwise, every lane
    /// may): while it may, its new items are not handed over at birth.
    pub fn behind(&self, lane: &str) -> bool {
        self.backlog.behind(lane)
    }

    /// How many items were adopted and started since the pump was made.
    pub fn handed(&self) -> u64 {
        self.handed.load(Ordering::Relaxed)
    }

    /// How often the pump claims whatever is due, woken or not.
    pub fn poll_interval(&self) -> std::time::Duration {
        self.config.poll_interval
    }

    /// The clock leases are measured on.
    pub fn clock(&self) -> &Clock {
        &self.config.clock
    }

    /// A name of its own for a claim or an adopted item: the worker's id and
    /// a number, so that a late outcome or release of an earlier claim of
    /// the same row by this worker finds the row no longer its own.
    fn owner_name(&self) -> Arc<str> {
        format!(
            "{}.{}",
            self.worker_id,
            self.claims.fetch_add(1, Ordering::Relaxed)
        )
        .into()
    }

    /// Runs until `shutdown`, then waits (bounded) for items in flight.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        tracing::info!(worker.id = %self.worker_id, queue = self.config.name, "worker started");
        let mut next = Some(Trigger::All);
        // The poll is a deadline, not a pause: freed slots and wakes, which
        // claim for named lanes only, never put it off, so work no wake
        // names (retries coming due, other replicas' writes) is claimed
        // within a poll interval whatever else goes on.
        let mut poll_at = Instant::now();
        while !shutdown.is_cancelled() {
            if next == Some(Trigger::All) {
                poll_at = Instant::now() + self.config.poll_interval;
            }
            let again = match next.take() {
                None => None,
                Some(trigger) => match self.claim(trigger).await {
                    Ok((items, again)) => {
                        for claimed in items {
                            let this = self.clone();
                            tokio::spawn(async move { this.work(claimed).await });
                        }
                        again
                    }
                    Err(e) => {
                        tracing::warn!(queue = self.config.name, error.message = %format!("{e:#}"), "claiming due work failed; will retry");
                        None
                    }
                },
            };
            if again.is_some() && self.permits.available_permits() > 0 {
                next = again;
                continue;
            }
            next = tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = self.wake.notify.notified() => self.worth_claiming(),
                _ = self.slot_freed.notified() => {
                    // Slots of lanes with nothing waiting (their work is
                    // handed over as it is stored) need no claim.
                    if self.refill_is_empty() && self.wake.is_empty() {
                        None
                    } else {
                        self.gather(&shutdown).await;
                        Some(Trigger::Lanes(HashSet::new()))
                    }
                }
                _ = tokio::time::sleep_until(poll_at) => Some(Trigger::All),
            };
        }
        self.stopping.store(true, Ordering::Relaxed);
        // Let items in flight finish and their outcomes be recorded; anything
        // cut off is retried after its lease.
        let (slots, places) = (
            self.config.max_in_flight as u32,
            (self.config.max_in_flight * RECORDING_PER_SLOT) as u32,
        );
        let _ = tokio::time::timeout(self.config.drain, async {
            let _slots = self.permits.acquire_many(slots).await;
            let _places = self.recording.acquire_many(places).await;
        })
        .await;
        tracing::info!(worker.id = %self.worker_id, queue = self.config.name, "worker stopped");
    }

    /// One step for tests and tools: claims what is due and works it all
    /// before returning the number of items.
    pub async fn run_once(self: &Arc<Self>) -> anyhow::Result<usize> {
        let (items, _) = self.claim(Trigger::All).await?;
        let n = items.len();
        let tasks: Vec<_> = items
            .into_iter()
            .map(|claimed| {
                let this = self.clone();
                tokio::spawn(async move { this.work(claimed).await })
            })
            .collect();
        for t in tasks {
            let _ = t.await;
        }
        Ok(n)
    }

    async fn work(&self, claimed: Claimed<Q::Item>) {
        let Claimed {
            item,
            permit,
            lease_ends,
            owner,
            adopted,
        } = claimed;
        let lane = Q::lane(&item);
        let done = self.queue.process(&owner, item, lease_ends).await;
        // A place to wait for recording first, then the slot goes back.
        let place = self.recording.clone().acquire_owned().await;
        self.finish(&lane);
        // A claimed item's slot claims again, as ever (work nothing wakes:
        // retries coming due, other replicas' writes); an adopted one's only
        // when its lane may have work waiting, since its lane's work comes
        // to it as it is stored.
        if !adopted || self.backlog.behind(&lane) {
            self.refill
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(lane);
        }
        drop(permit);
        self.record_in_flight();
        self.slot_freed.notify_one();
        self.queue.record(&owner, done).await;
        drop(place);
    }

    /// A slot freed while others are still busy: wait briefly for room for
    /// a few more (a quarter of the budget) in the lanes that freed slots, so
    /// the next claim fetches a batch. Free slots alone are not room: a lane
    /// alone holds three quarters of the budget at most, so a quarter is
    /// always free and each freed slot would claim at once, for one row.
    async fn gather(&self, shutdown: &CancellationToken) {
        let want = (self.config.max_in_flight / 4).max(1);
        let deadline = tokio::time::Instant::now() + CLAIM_LINGER;
        while self.refill_room() < want
            && self.permits.available_permits() < self.config.max_in_flight
        {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = self.wake.notify.notified() => return,
                _ = self.slot_freed.notified() => {}
                _ = tokio::time::sleep_until(deadline) => return,
            }
        }
    }

    /// After a wake: the claim to make, if a claim could find anything, i.e.
    /// if a lane that was woken (or any, when not named) may take more work.
    /// Nothing woken means a claim since covered what the wake announced
    /// (the claim took it; the wake's permit stayed behind): no claim. One
    /// would leave the full lanes out and walk all their due rows for
    /// nothing; in a one-endpoint burst these claims were most of the claims
    /// made, each reading some 2,000 index and heap pages.
    fn worth_claiming(&self) -> Option<Trigger> {
        let woken = self.wake.take();
        self.note(&woken);
        match woken {
            Woken::Lanes(lanes) => (self.room(lanes.iter()) > 0).then_some(Trigger::Lanes(lanes)),
            Woken::Any => Some(Trigger::All),
            Woken::Nothing => None,
        }
    }

    /// Woken lanes have work waiting in the database.
    fn note(&self, woken: &Woken) {
        match woken {
            Woken::Lanes(lanes) => self.backlog.gained(lanes),
            Woken::Any => self.backlog.gained_any(),
            Woken::Nothing => {}
        }
    }

    /// Free slots beyond those owed to claims: the room of the lanes woken
    /// or freed since the last claim (all of them for work of lanes not
    /// named). Adopting takes only these, so one endpoint's backlog worked
    /// by claims does not stop the others' tries from being adopted.
    fn free_beyond_owed(&self) -> usize {
        let Some(mut owed) = self.wake.woken_lanes() else {
            return 0;
        };
        owed.extend(
            self.refill
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .cloned(),
        );
        let owed = if owed.is_empty() {
            0
        } else {
            self.room(owed.iter())
        };
        self.permits.available_permits().saturating_sub(owed)
    }

    fn refill_is_empty(&self) -> bool {
        self.refill
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty()
    }

    /// Room for more in the lanes that freed slots since the last claim.
    fn refill_room(&self) -> usize {
        let lanes = self.refill.lock().unwrap_or_else(|p| p.into_inner());
        self.room(lanes.iter())
    }

    /// How many more items these lanes may take, together.
    fn room<'a>(&self, lanes: impl Iterator<Item = &'a String>) -> usize {
        let map = self.per_lane.lock().unwrap_or_else(|p| p.into_inner());
        lanes
            .map(|l| match map.get(l) {
                Some(n) => self.cap(map.len()).saturating_sub(*n),
                // A lane holding nothing: its share once it is busy too.
                None => self.cap(map.len() + 1),
            })
            .sum()
    }

    /// Claims due items that fit the budget, each with its in-flight permit,
    /// and whether to claim again right away: when the claim came back full
    /// and every item fit its lane, or when items over a lane's share may
    /// have crowded out a lane that was woken. Claiming again after a short
    /// claim would walk the due rows of the lanes left out for nothing.
    async fn claim(
        &self,
        trigger: Trigger,
    ) -> anyhow::Result<(Vec<Claimed<Q::Item>>, Option<Trigger>)> {
        // Whatever was woken until now, this claim covers.
        let woken = self.wake.take();
        self.note(&woken);
        let free = self.permits.available_permits();
        if free == 0 {
            // Served by the claim after the next freed slot.
            self.keep(trigger, woken, HashSet::new());
            return Ok((Vec::new(), None));
        }
        let refill = std::mem::take(&mut *self.refill.lock().unwrap_or_else(|p| p.into_inner()));
        // The lanes this claim is for; None: any lane.
        let named: Option<HashSet<String>> = match (&trigger, &woken) {
            (Trigger::All, _) | (_, Woken::Any) => None,
            (Trigger::Lanes(lanes), woken) => {
                let mut named: HashSet<String> = lanes.iter().chain(&refill).cloned().collect();
                if let Woken::Lanes(more) = woken {
                    named.extend(more.iter().cloned());
                }
                Some(named)
            }
        };
        let limit = match &named {
            None => free,
            // Lanes over a share that shrank (another lane got busy) have no
            // room: the freed slots are for whichever lane has, so the claim
            // is for any lane.
            Some(lanes) if lanes.is_empty() => 0,
            Some(lanes) => match self.room(lanes.iter()) {
                0 => free,
                room => free.min(room),
            },
        };
        if limit == 0 {
            return Ok((Vec::new(), None));
        }
        let exclude: Vec<String> = {
            let map = self.per_lane.lock().unwrap_or_else(|p| p.into_inner());
            let cap = self.cap(map.len());
            map.iter()
                .filter(|(_, n)| **n >= cap)
                .map(|(k, _)| k.clone())
                .collect()
        };
        // Before the claim, so never later than the lease the database records.
        let lease_ends = self.config.clock.instant() + self.config.lease;
        let owner = self.owner_name();
        let epoch = self.backlog.epoch();
        let under_way = Arc::new(UnderWay {
            epoch,
            limit,
            exclude: exclude.iter().cloned().collect(),
            verdict: watch::Sender::new(None),
        });
        *self.under_way.lock().unwrap_or_else(|p| p.into_inner()) = Some(Arc::clone(&under_way));
        // Should this future be dropped or the claim panic, the items
        // adopted meanwhile go back rather than wait for ever.
        let unsettled = Unsettled(&self.under_way, &under_way);
        let items = self.queue.claim(&owner, limit as u32, &exclude).await;
        *self.under_way.lock().unwrap_or_else(|p| p.into_inner()) = None;
        let items = match items {
            Ok(items) => items,
            Err(e) => {
                self.last_short.store(false, Ordering::Relaxed);
                under_way.verdict.send_replace(Some(Verdict::Unknown));
                // What this claim was for is still to be served.
                self.keep(trigger, woken, refill);
                return Err(e);
            }
        };
        let full = items.len() == limit;
        let mut out = Vec::with_capacity(items.len());
        let mut over = Vec::new();
        for item in items {
            match self.reserve(&Q::lane(&item)) {
                Some(permit) => out.push(Claimed {
                    item,
                    permit,
                    lease_ends,
                    owner: owner.clone(),
                    adopted: false,
                }),
                // Over the lane's share (or the budget): give it back.
                None => over.push(item),
            }
        }
        let crowded: HashSet<String> = over.iter().map(Q::lane).collect();
        self.backlog
            .settle(epoch, !full, exclude.iter().chain(&crowded).cloned());
        self.last_short.store(!full, Ordering::Relaxed);
        under_way.verdict.send_replace(Some(if full {
            Verdict::Unknown
        } else {
            Verdict::Short(Arc::new(exclude.iter().chain(&crowded).cloned().collect()))
        }));
        drop(unsettled);
        let next = match named {
            // A full claim for any lane: there may be more.
            None if over.is_empty() => full.then_some(Trigger::All),
            None => match &woken {
                Woken::Any => Some(Trigger::All),
                Woken::Lanes(lanes) => lanes
                    .iter()
                    .any(|l| !crowded.contains(l))
                    .then_some(Trigger::All),
                Woken::Nothing => None,
            },
            // A full claim for named lanes that other lanes' older rows
            // filled: again, for the named lanes it did not serve.
            Some(mut lanes) => {
                for c in &out {
                    lanes.remove(&Q::lane(&c.item));
                }
                lanes.retain(|l| !crowded.contains(l));
                (full && !lanes.is_empty()).then_some(Trigger::Lanes(lanes))
            }
        };
        if !over.is_empty() {
            // All at once: a lane with a backlog can return many per claim.
            // A failed release only leaves the rows to their lease; the
            // items claimed go on (dropping them would leak their lanes'
            // counts).
            if let Err(e) = self.queue.release(&owner, over).await {
                tracing::warn!(queue = self.config.name, error.message = %format!("{e:#}"), "giving back items over a lane's share failed; they wait for their lease");
            }
        }
        self.record_in_flight();
        metrics::counter!(crate::shared::metrics::TRIES_STARTED, "queue" => self.config.name, "how" => "claimed")
            .increment(out.len() as u64);
        Ok((out, next))
    }

    /// Puts back what a claim was for, when it could not serve it, without
    /// waking the pump: the next freed slot or poll serves it.
    fn keep(&self, trigger: Trigger, woken: Woken, refill: HashSet<String>) {
        self.wake.keep(woken);
        self.wake.keep(match trigger {
            Trigger::All => Woken::Any,
            Trigger::Lanes(lanes) => Woken::Lanes(lanes),
        });
        self.refill
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(refill);
    }

    /// The most one lane may hold while `busy` lanes hold work.
    fn cap(&self, busy: usize) -> usize {
        self.config.per_lane.cap(self.config.max_in_flight, busy)
    }

    fn reserve(&self, lane: &str) -> Option<OwnedSemaphorePermit> {
        let mut map = self.per_lane.lock().unwrap_or_else(|p| p.into_inner());
        // Busy lanes, counting this one whether or not it holds work yet.
        let busy = map.len() + usize::from(!map.contains_key(lane));
        let cap = self.cap(busy);
        if map.get(lane).is_some_and(|n| *n >= cap) || cap == 0 {
            return None;
        }
        // The permit first: a lane that gets none must not be counted as
        // busy (an empty entry would shrink every lane's fair share).
        let permit = self.permits.clone().try_acquire_owned().ok()?;
        *map.entry(lane.to_owned()).or_insert(0) += 1;
        Some(permit)
    }

    fn finish(&self, lane: &str) {
        let mut map = self.per_lane.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get_mut(lane) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(lane);
            }
        }
    }

    fn record_in_flight(&self) {
        let busy = self.config.max_in_flight - self.permits.available_permits();
        metrics::gauge!(crate::shared::metrics::IN_FLIGHT, "queue" => self.config.name)
            .set(busy as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::tests_support::config;
    use super::LaneShare;
    use std::sync::{Arc, Mutex};

    /// A queue of one lane that hands out one item per claim (none when
    /// `empty`; an error when `fails`) and notes under which name each step
    /// happened, and each claim's limit.
    #[derive(Default)]
    struct Names {
        steps: Mutex<Vec<(&'static str, String)>>,
        limits: Mutex<Vec<u32>>,
        empty: bool,
        fails: bool,
    }

    impl Names {
        fn note(&self, step: &'static str, owner: &str) {
            self.steps.lock().expect("names").push((step, owner.into()));
        }
    }

    #[async_trait::async_trait]
    impl super::Queue for Names {
        type Item = ();
        type Done = ();
        fn lane(_: &()) -> String {
            "lane".into()
        }
        async fn claim(&self, owner: &str, limit: u32, _: &[String]) -> anyhow::Result<Vec<()>> {
            self.note("claim", owner);
            self.limits.lock().expect("limits").push(limit);
            anyhow::ensure!(!self.fails, "the database is away");
            Ok(if self.empty { vec![] } else { vec![()] })
        }
        async fn release(&self, _: &str, _: Vec<()>) -> anyhow::Result<()> {
            Ok(())
        }
        async fn process(&self, owner: &str, _: (), _: tokio::time::Instant) {
            self.note("process", owner);
        }
        async fn record(&self, owner: &str, _: ()) {
            self.note("record", owner);
        }
    }

    #[tokio::test]
    async fn each_claim_owns_its_items_under_a_name_of_its_own() {
        let config = config(2, LaneShare::Fixed(2));
        let pump = Arc::new(super::Pump::new(
            Names::default(),
            config,
            Default::default(),
        ));
        pump.run_once().await.expect("first");
        pump.run_once().await.expect("second");
        let steps = pump.queue().steps.lock().expect("names").clone();
        let names = |step: &str| -> Vec<String> {
            steps
                .iter()
                .filter(|(s, _)| *s == step)
                .map(|(_, n)| n.clone())
                .collect()
        };
        let claims = names("claim");
        assert_eq!(claims.len(), 2);
        assert_ne!(
            claims[0], claims[1],
            "a later claim by the same worker has another name"
        );
        assert_eq!(names("process"), claims, "processed under its claim's name");
        assert_eq!(names("record"), claims, "recorded under its claim's name");
    }

    #[tokio::test]
    async fn a_wake_a_claim_already_covered_starts_no_claim() {
        let config = config(4, LaneShare::Fixed(4));
        let wake = Arc::new(super::Wake::default());
        let pump = Arc::new(super::Pump::new(
            Names::default(),
            config,
            Arc::clone(&wake),
        ));
        wake.lanes(["lane".to_owned()]);
        // The claim takes what was woken; the wake's permit stays behind.
        pump.run_once().await.expect("claim");
        assert_eq!(
            pump.worth_claiming(),
            None,
            "what the wake announced was claimed already"
        );
        wake.lanes(["lane".to_owned()]);
        assert_eq!(
            pump.worth_claiming(),
            Some(super::Trigger::Lanes(["lane".to_owned()].into())),
            "new work in a lane with room"
        );
        wake.any();
        assert_eq!(
            pump.worth_claiming(),
            Some(super::Trigger::All),
            "work in lanes not named"
        );
    }

    #[tokio::test]
    async fn a_claim_after_a_freed_slot_asks_for_the_lanes_room_not_the_free_budget() {
        let config = config(20, LaneShare::Fair);
        let empty = Names {
            empty: true,
            ..Default::default()
        };
        let pump = super::Pump::new(empty, config, Default::default());
        // One lane alone holds 14 of its 15 (three quarters of 20); 6 free.
        let _held: Vec<_> = (0..14)
            .map(|_| pump.reserve("lane").expect("room"))
            .collect();
        pump.refill.lock().expect("refill").insert("lane".into());
        assert_eq!(pump.refill_room(), 1);
        let lanes = || super::Trigger::Lanes(Default::default());
        pump.claim(lanes()).await.expect("refill claim");
        pump.claim(lanes()).await.expect("nothing freed since");
        pump.claim(super::Trigger::All).await.expect("poll");
        pump.claim(super::Trigger::Lanes(["new".to_owned()].into()))
            .await
            .expect("a new lane woken");
        assert_eq!(
            *pump.queue().limits.lock().expect("limits"),
            vec![1, 6, 6],
            "the freed lane's room; no claim when no lane has room; the free budget when polling; \
             a newcomer's share capped by the free budget"
        );
        // Another lane gets busy: the share falls to 10, under the 14 held.
        let _other = pump.reserve("other").expect("room");
        pump.refill.lock().expect("refill").insert("lane".into());
        pump.claim(lanes()).await.expect("over a shrunk share");
        assert_eq!(
            pump.queue().limits.lock().expect("limits").last(),
            Some(&5),
            "a freed slot of a lane over its share is for any lane"
        );
    }

    #[tokio::test]
    async fn what_a_failed_claim_was_for_is_kept_for_the_next() {
        let wake = Arc::new(super::Wake::default());
        let failing = Names {
            fails: true,
            ..Default::default()
        };
        let pump = super::Pump::new(failing, config(20, LaneShare::Fair), Arc::clone(&wake));
        pump.refill.lock().expect("refill").insert("freed".into());
        wake.lanes(["woken".to_owned()]);
        let named = super::Trigger::Lanes(["named".to_owned()].into());
        assert!(pump.claim(named).await.is_err());
        assert!(pump.refill.lock().expect("refill").contains("freed"));
        assert_eq!(
            pump.worth_claiming(),
            Some(super::Trigger::Lanes(
                ["woken".to_owned(), "named".to_owned()].into()
            )),
            "the woken and the named lanes wait for the next claim"
        );
    }

    #[test]
    fn a_try_that_could_outlive_its_lease_does_not_start() {
        let now = tokio::time::Instant::now();
        let timeout = std::time::Duration::from_secs(1);
        let lease_ends = now + std::time::Duration::from_secs(3);
        assert!(
            super::fits_in_lease(now, timeout, lease_ends),
            "fresh claim"
        );
        let late = now + std::time::Duration::from_millis(1500);
        assert!(
            !super::fits_in_lease(late, timeout, lease_ends),
            "a worker that waited 1.5 s of a 3 s lease must not send (1 s timeout, 1 s margin)"
        );
        assert!(!super::fits_in_lease(lease_ends, timeout, lease_ends));
    }

    #[test]
    fn the_fair_share_leaves_a_quarter_for_newcomers_and_splits_among_busy_lanes() {
        let fair = LaneShare::Fair;
        assert_eq!(fair.cap(20, 1), 15, "alone: all but a quarter");
        assert_eq!(fair.cap(20, 2), 10, "two: half each");
        assert_eq!(fair.cap(20, 3), 6);
        assert_eq!(fair.cap(20, 10), 5, "never under a quarter");
        assert_eq!(fair.cap(1, 1), 1, "a budget of one still moves");
        assert_eq!(fair.cap(4, 2), 2);
        assert_eq!(LaneShare::Fixed(3).cap(20, 1), 3);
    }
}

#[cfg(test)]
mod adoption {
    use super::tests_support::*;
    use super::LaneShare;
    use std::sync::Arc;

    /// A pump over an empty queue, with its wake, after a first claim has
    /// shown that nothing waits.
    async fn settled(
        budget: usize,
        share: LaneShare,
    ) -> (Arc<super::Pump<Empty>>, Arc<super::Wake>) {
        let wake = Arc::new(super::Wake::default());
        let pump = Arc::new(super::Pump::new(
            Empty::default(),
            config(budget, share),
            Arc::clone(&wake),
        ));
        pump.run_once().await.expect("claim");
        (pump, wake)
    }

    #[tokio::test]
    async fn an_item_is_adopted_only_with_room_and_nothing_older_waiting() {
        let pump = Arc::new(super::Pump::new(
            Empty::default(),
            config(4, LaneShare::Fixed(2)),
            Default::default(),
        ));
        assert!(
            pump.adopt("a").is_none(),
            "before any claim, older work may wait in the database"
        );
        // A claim that comes back short: nothing waits.
        pump.run_once().await.expect("claim");
        let first = pump.adopt("a").expect("room");
        let second = pump.adopt("a").expect("room");
        assert_eq!(pump.permits.available_permits(), 2);
        assert!(pump.adopt("a").is_none(), "over the lane's share");
        // The refused item is stored for a claim: later items of the lane
        // wait behind it, even with room again.
        drop(first);
        assert_eq!(
            pump.permits.available_permits(),
            3,
            "a dropped place is given back"
        );
        assert!(
            pump.adopt("a").is_none(),
            "it would overtake the one stored"
        );
        assert!(pump.adopt("b").is_some(), "another lane is not behind");
        drop(second);
        pump.run_once().await.expect("claim");
        assert!(pump.adopt("a").is_some(), "the claim took what waited");
    }

    #[tokio::test]
    async fn a_lane_refused_for_want_of_budget_is_not_counted_busy_and_a_claim_owed_comes_first() {
        let (pump, wake) = settled(2, LaneShare::Fixed(2)).await;
        let held = [pump.adopt("a"), pump.adopt("a")];
        assert!(held.iter().all(Option::is_some));
        assert!(pump.adopt("b").is_none(), "the budget is spent");
        assert!(
            !pump.per_lane.lock().expect("lanes").contains_key("b"),
            "a lane that got no slot does not shrink the others' share"
        );
        drop(held);
        // Work stored for a claim: the freed slots are that claim's.
        wake.lanes(["c".to_owned()]);
        assert!(pump.adopt("d").is_none(), "a claim is owed");
        pump.run_once().await.expect("claim");
        assert!(pump.adopt("d").is_some());
    }

    #[tokio::test]
    async fn slots_beyond_what_claims_are_owed_are_adopted_under_mixed_load() {
        let (pump, wake) = settled(4, LaneShare::Fixed(2)).await;
        // One endpoint's backlog is owed a claim for its room (two slots):
        // the other two slots still go to another endpoint's new tries.
        wake.lanes(["backlog".to_owned()]);
        let quiet = [pump.adopt("quiet"), pump.adopt("quiet")];
        assert!(quiet.iter().all(Option::is_some));
        assert!(
            pump.adopt("other").is_none(),
            "the last two slots are the claim's"
        );
    }
}

#[cfg(test)]
mod claim_under_way {
    use super::tests_support::config;
    use super::LaneShare;
    use std::sync::Arc;

    /// A queue of lane "a" whose claims wait for `go` once `entered`, then
    /// bring back as many items as asked (`full`) or none, and which counts
    /// the items given back.
    #[derive(Default)]
    struct Held {
        full: std::sync::atomic::AtomicBool,
        entered: tokio::sync::Notify,
        go: tokio::sync::Notify,
        released: std::sync::atomic::AtomicUsize,
    }

    #[async_trait::async_trait]
    impl super::Queue for Held {
        type Item = ();
        type Done = ();
        fn lane(_: &()) -> String {
            "a".into()
        }
        async fn claim(&self, _: &str, limit: u32, _: &[String]) -> anyhow::Result<Vec<()>> {
            self.entered.notify_one();
            self.go.notified().await;
            Ok(if self.full.load(Ordering::Relaxed) {
                vec![(); limit as usize]
            } else {
                Vec::new()
            })
        }
        async fn release(&self, _: &str, items: Vec<()>) -> anyhow::Result<()> {
            self.released.fetch_add(items.len(), Ordering::Relaxed);
            Ok(())
        }
        async fn process(&self, _: &str, _: (), _: tokio::time::Instant) {}
        async fn record(&self, _: &str, _: ()) {}
    }

    use std::sync::atomic::Ordering;

    /// A claim for lane "a" under way on a pump of 4 slots, 2 per lane (the
    /// claim may fill 2); first a claim of any lane that shows all clear.
    async fn claim_under_way(full: bool) -> (Arc<super::Pump<Held>>, tokio::task::JoinHandle<()>) {
        let pump = Arc::new(super::Pump::new(
            Held::default(),
            config(4, LaneShare::Fixed(2)),
            Default::default(),
        ));
        let first = {
            let pump = Arc::clone(&pump);
            tokio::spawn(async move { pump.run_once().await })
        };
        pump.queue().entered.notified().await;
        pump.queue().go.notify_one();
        first.await.expect("task").expect("claim");
        pump.queue().full.store(full, Ordering::Relaxed);
        let claim = {
            let pump = Arc::clone(&pump);
            tokio::spawn(async move {
                let lanes = std::iter::once("a".to_owned()).collect();
                pump.claim(super::Trigger::Lanes(lanes))
                    .await
                    .expect("claim");
            })
        };
        pump.queue().entered.notified().await;
        (pump, claim)
    }

    async fn settled<T>(what: impl Fn() -> T, want: T)
    where
        T: PartialEq + std::fmt::Debug,
    {
        for _ in 0..200 {
            if what() == want {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        assert_eq!(what(), want);
    }

    /// An item stored while a claim that can take all its lane has waiting
    /// is under way is adopted, and starts once the claim came back short.
    #[tokio::test]
    async fn an_item_stored_during_a_claim_starts_once_the_claim_shows_its_lane_clear() {
        let (pump, claim) = claim_under_way(false).await;
        let place = pump.adopt("a").expect("adopted beyond the claim's 2 slots");
        place.start(());
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert_eq!(pump.handed(), 0, "waits for the claim's verdict");
        pump.queue().go.notify_one();
        claim.await.expect("claim");
        settled(|| pump.handed(), 1).await;
        assert_eq!(pump.queue().released.load(Ordering::Relaxed), 0);
    }

    /// A claim that never finishes (its future dropped) leaves no item
    /// waiting for its verdict: they go back.
    #[tokio::test]
    async fn an_item_stored_during_an_abandoned_claim_goes_back() {
        let (pump, claim) = claim_under_way(false).await;
        let place = pump.adopt("a").expect("adopted beyond the claim's 2 slots");
        place.start(());
        claim.abort();
        let _ = claim.await;
        settled(|| pump.queue().released.load(Ordering::Relaxed), 1).await;
        assert_eq!(pump.handed(), 0, "never started");
        assert!(pump.adopt("b").is_some(), "no claim is under way any more");
    }

    /// After a full claim (more may wait, older than it), the item goes back
    /// to the database to be claimed behind them; and nothing is adopted
    /// into the slots the claim may fill.
    #[tokio::test]
    async fn an_item_stored_during_a_full_claim_goes_back_behind_the_older_ones() {
        let (pump, claim) = claim_under_way(true).await;
        let place = pump.adopt("a").expect("adopted beyond the claim's 2 slots");
        let second = pump.adopt("b").expect("one more slot beyond the claim's");
        assert!(
            pump.adopt("c").is_none(),
            "the last two slots are the claim's while it runs"
        );
        drop(second);
        place.start(());
        pump.queue().go.notify_one();
        claim.await.expect("claim");
        // The claim's second item (over the lane's share of 2, the adopted
        // item holding one) and the adopted item.
        settled(|| pump.queue().released.load(Ordering::Relaxed), 2).await;
        assert_eq!(pump.handed(), 0, "never started");
        assert!(pump.behind("a"), "its lane waits for a claim");
    }
}

#[cfg(test)]
mod tests_support {
    use super::{LaneShare, PumpConfig, Queue};

    /// A pump's settings for a test: only the budget and the share vary.
    pub fn config(max_in_flight: usize, per_lane: LaneShare) -> PumpConfig {
        PumpConfig {
            name: "test",
            max_in_flight,
            per_lane,
            poll_interval: std::time::Duration::from_secs(1),
            drain: std::time::Duration::from_secs(1),
            lease: std::time::Duration::from_secs(5),
            clock: Default::default(),
        }
    }

    /// A queue with nothing due; when `held`, each claim waits for `go`
    /// once it has said it `entered`.
    #[derive(Default)]
    pub struct Empty {
        pub held: bool,
        pub entered: tokio::sync::Notify,
        pub go: tokio::sync::Notify,
    }

    #[async_trait::async_trait]
    impl Queue for Empty {
        type Item = ();
        type Done = ();
        fn lane(_: &()) -> String {
            "lane".into()
        }
        async fn claim(&self, _: &str, _: u32, _: &[String]) -> anyhow::Result<Vec<()>> {
            if self.held {
                self.entered.notify_one();
                self.go.notified().await;
            }
            Ok(Vec::new())
        }
        async fn release(&self, _: &str, _: Vec<()>) -> anyhow::Result<()> {
            Ok(())
        }
        async fn process(&self, _: &str, _: (), _: tokio::time::Instant) {}
        async fn record(&self, _: &str, _: ()) {}
    }
}
