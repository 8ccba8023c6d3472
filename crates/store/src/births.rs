//! First tries handed straight to this process's delivery worker as they
//! are stored, leased to it in the same insert ("leased at birth"), so that
//! a try whose endpoint has room needs no claim: no walk of the due index,
//! no lease update, no round trip. A try the worker has no room for is
//! stored unleased, as before, for a claim to find.

use crate::answers::{FirstTries, Subscriber};
use crate::model::{Attempt, AttemptStatus, NewEvent, PublishOutcome, Webhook};
use crate::rows::Columns;
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// The delivery worker's side: a place for one more try of an endpoint.
pub trait Births: Send + Sync {
    /// The worker's clock: a try is offered only when due by it.
    fn now(&self) -> DateTime<Utc>;
    /// A place for a try of `webhook_id` due now, if the worker has room
    /// for it and knows of no older due try of that endpoint waiting in
    /// the database (a try born leased must not overtake those).
    /// `paused_until` is the endpoint's last pause: tries stored during it
    /// come due when it ends, unannounced.
    fn reserve(
        &self,
        webhook_id: &str,
        paused_until: Option<DateTime<Utc>>,
    ) -> Option<Box<dyn Place>>;
    /// Tries of these endpoints, due now, were stored unleased: a claim is
    /// owed, and later tries must wait behind them.
    fn stored_for_claim(&self, webhook_ids: &[String]);
}

/// A reserved in-flight slot. Dropped without `start`, the slot is given back.
pub trait Place: Send {
    /// The lease's owner, recorded with the try.
    fn owner(&self) -> &str;
    /// The lease's end, recorded with the try: never earlier than the end
    /// the worker keeps to.
    fn lease_until(&self) -> DateTime<Utc>;
    /// The try was stored leased to `owner`: work on it.
    fn start(self: Box<Self>, attempt: Attempt, webhook: Webhook);
}

/// Where a store finds the worker, once the server has one running.
#[derive(Default)]
pub(crate) struct BirthSlot(RwLock<Option<Arc<dyn Births>>>);

impl BirthSlot {
    pub(crate) fn set(&self, births: Option<Arc<dyn Births>>) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = births;
    }

    pub(crate) fn get(&self) -> Option<Arc<dyn Births>> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// The places a batch's first tries got, one per try (None: stored
/// unleased, for a claim). Only tries due now are offered: a paused
/// endpoint's try waits for its pause in the database.
pub(crate) struct Born {
    births: Option<Arc<dyn Births>>,
    places: Vec<Option<Box<dyn Place>>>,
    /// Which tries were due when offered.
    due_now: Vec<bool>,
}

impl Born {
    pub(crate) fn reserve(
        births: Option<Arc<dyn Births>>,
        tries: &FirstTries,
        subscribers: &[Subscriber],
    ) -> Self {
        let Some(b) = births.as_deref() else {
            return Self {
                births,
                places: Vec::new(),
                due_now: Vec::new(),
            };
        };
        let now = b.now();
        let paused: HashMap<&str, Option<DateTime<Utc>>> = subscribers
            .iter()
            .map(|w| (w.id.as_str(), w.paused_until))
            .collect();
        let due_now: Vec<bool> = tries.due.iter().map(|d| *d <= now).collect();
        // An endpoint refused once in the batch is not asked again: its
        // later tries would overtake the refused one, stored for a claim
        // (the worker's answer can change between two asks).
        let mut refused: std::collections::HashSet<&str> = std::collections::HashSet::new();
        let places = (0..tries.ids.len())
            .map(|i| {
                let webhook_id = tries.webhook_ids[i].as_str();
                let paused_until = *paused.get(webhook_id)?;
                if !due_now[i] || refused.contains(webhook_id) {
                    return None;
                }
                let place = b.reserve(webhook_id, paused_until);
                if place.is_none() {
                    refused.insert(webhook_id);
                }
                place
            })
            .collect();
        Self {
            births,
            places,
            due_now,
        }
    }

    /// The webhooks whose tries got a place, each once (none: no row to
    /// read whole).
    pub(crate) fn granted(&self, tries: &FirstTries) -> Vec<String> {
        self.lanes(tries, |i| self.has_place(i))
    }

    /// Whether try `i` got a place (none without a worker).
    fn has_place(&self, i: usize) -> bool {
        self.places.get(i).is_some_and(Option::is_some)
    }

    /// Whether try `i` was due when offered (none are without a worker).
    fn was_due(&self, i: usize) -> bool {
        self.due_now.get(i).copied().unwrap_or(false)
    }

    /// The webhooks of the tries that got a place, decoded whole from
    /// `rows` (whole webhook rows; others' are skipped undecoded). A
    /// webhook not among them, or whose row does not decode, gives its
    /// places back: those tries are stored for a claim.
    pub(crate) fn whole<R: Columns>(
        &mut self,
        tries: &FirstTries,
        rows: &[R],
    ) -> HashMap<String, Webhook> {
        let granted = self.granted(tries);
        let webhooks: HashMap<String, Webhook> = rows
            .iter()
            .filter(|row| {
                row.get::<String>("id")
                    .is_ok_and(|id| granted.binary_search(&id).is_ok())
            })
            .filter_map(|row| {
                let w = crate::rows::webhook(row).ok()?;
                Some((w.id.clone(), w))
            })
            .collect();
        for (place, webhook_id) in self.places.iter_mut().zip(&tries.webhook_ids) {
            if !webhooks.contains_key(webhook_id) {
                *place = None;
            }
        }
        webhooks
    }

    /// Try `i`'s lease owner, for the insert (None: unleased).
    pub(crate) fn owner(&self, i: usize) -> Option<&str> {
        self.places.get(i)?.as_ref().map(|p| p.owner())
    }

    /// Try `i`'s lease end, for the insert.
    pub(crate) fn lease_until(&self, i: usize) -> Option<DateTime<Utc>> {
        self.places.get(i)?.as_ref().map(|p| p.lease_until())
    }

    /// Every try's lease owner, in order (NULL: unleased).
    pub(crate) fn owners(&self, tries: &FirstTries) -> Vec<Option<&str>> {
        (0..tries.ids.len()).map(|i| self.owner(i)).collect()
    }

    /// Every try's lease end, in order.
    pub(crate) fn leases(&self, tries: &FirstTries) -> Vec<Option<DateTime<Utc>>> {
        (0..tries.ids.len()).map(|i| self.lease_until(i)).collect()
    }

    /// Every try's webhook as it was read (its `updated_at`), for an insert
    /// that leases a try only if the webhook is still as read.
    pub(crate) fn seen(
        &self,
        tries: &FirstTries,
        webhooks: &HashMap<String, Webhook>,
    ) -> Vec<Option<DateTime<Utc>>> {
        (0..tries.ids.len())
            .map(|i| {
                self.owner(i)?;
                Some(webhooks.get(&tries.webhook_ids[i])?.updated_at)
            })
            .collect()
    }

    /// The ids and owners of the tries that were to be stored leased, for
    /// undoing their leases when the insert's outcome is unknown.
    pub(crate) fn leased(&self, tries: &FirstTries) -> (Vec<String>, Vec<String>) {
        (0..tries.ids.len())
            .filter_map(|i| Some((tries.ids[i].clone(), self.owner(i)?.to_owned())))
            .unzip()
    }

    /// The insert failed: every place is given back, and the worker is told
    /// that the batch's tries may be stored for a claim (if the insert did
    /// commit after all, the leases were undone).
    pub(crate) fn abandon(self, tries: &FirstTries) {
        let lanes = self.lanes(tries, |i| self.was_due(i));
        if let Some(b) = &self.births {
            b.stored_for_claim(&lanes);
        }
    }

    /// The endpoints of the tries `which` picks, each once.
    fn lanes(&self, tries: &FirstTries, which: impl Fn(usize) -> bool) -> Vec<String> {
        let mut lanes: Vec<String> = (0..tries.ids.len())
            .filter(|&i| which(i))
            .map(|i| tries.webhook_ids[i].clone())
            .collect();
        lanes.sort_unstable();
        lanes.dedup();
        lanes
    }

    /// After the commit: the tries that were stored leased go to the
    /// worker, and each event's answer says which (no claim needed for
    /// them); the places of those not stored (their event was a duplicate)
    /// or stored unleased (the webhook changed since it was read) are given
    /// back by dropping them. The worker hears of the tries due now that
    /// were stored for a claim. `stored` and `leased` answer for try `i`.
    pub(crate) fn start(
        self,
        tries: &FirstTries,
        stored: impl Fn(usize) -> bool,
        leased: impl Fn(usize) -> bool,
        webhooks: &HashMap<String, Webhook>,
        events: &[&NewEvent],
        answers: &mut [PublishOutcome],
    ) {
        let Some(births) = self.births.clone() else {
            return;
        };
        let unleased = self.lanes(tries, |i| {
            self.was_due(i) && stored(i) && !(self.has_place(i) && leased(i))
        });
        births.stored_for_claim(&unleased);
        let mut handed: HashMap<&str, Vec<String>> = HashMap::new();
        for (i, place) in self.places.into_iter().enumerate() {
            let Some(place) = place else { continue };
            let (event_id, webhook_id) = (&tries.event_ids[i], &tries.webhook_ids[i]);
            // Every place is for a webhook of the map (`whole`).
            let (Some(webhook), true) = (webhooks.get(webhook_id), stored(i) && leased(i)) else {
                continue;
            };
            place.start(
                Attempt {
                    id: tries.ids[i].clone(),
                    event_id: event_id.clone(),
                    webhook_id: webhook_id.clone(),
                    account_id: tries.account_ids[i].clone(),
                    attempt: 1,
                    status: AttemptStatus::Pending,
                    due_at: tries.due[i],
                    payload_snapshot: tries.snapshots[tries.body_of[i]].clone(),
                    trace_parent: tries.traces[i].clone(),
                    http_status: None,
                    duration_ms: None,
                    response_preview: None,
                    error: None,
                    created_at: tries.at[i],
                    completed_at: None,
                },
                webhook.clone(),
            );
            handed
                .entry(event_id.as_str())
                .or_default()
                .push(webhook_id.clone());
        }
        for (e, answer) in events.iter().zip(answers) {
            if let (PublishOutcome::Created { handed: h, .. }, Some(lanes)) =
                (answer, handed.remove(e.id.as_str()))
            {
                *h = lanes;
            }
        }
    }
}
