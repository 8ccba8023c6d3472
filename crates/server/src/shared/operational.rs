//! Operational webhooks: hookwarden's own events, to the platform that runs
//! it rather than to its tenants. They are ordinary events of one reserved
//! account, `ACCOUNT`, whose webhooks only the operator manages (operator
//! API, configuration file): signed with Standard Webhooks under their own
//! secrets, delivered, retried and listed by the same dispatcher.
//!
//! `ACCOUNT` cannot be a tenant's: it fails the account id rule of the
//! publish edge (`/`), and a token naming it is refused. Nothing is stored
//! while no operational webhook exists (looked up at most every
//! `LOOK_EVERY`), so the events cost a deployment that does not use them
//! nothing. Events about the operational endpoints themselves are not sent
//! (a failing operational endpoint must not feed itself).

use crate::shared::clock::Clock;
use crate::shared::pump::Wake;
use hookwarden_core::ids;
use hookwarden_store::model::{NewEvent, PublishOutcome};
use hookwarden_store::Store;
use serde_json::Value;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The account operational webhooks belong to.
pub const ACCOUNT: &str = "hookwarden/operational";

/// The producer its events name.
const PRODUCER: &str = "hookwarden";

/// How long the answer to "does any operational webhook exist?" is kept.
const LOOK_EVERY: Duration = Duration::from_secs(5);

/// An endpoint's breaker opened.
pub const ENDPOINT_PAUSED: &str = "endpoint.paused";
/// An endpoint was disabled by hookwarden (410 Gone, or failing too long).
pub const ENDPOINT_DISABLED: &str = "endpoint.disabled";
/// An endpoint that had been paused delivered again.
pub const ENDPOINT_RECOVERED: &str = "endpoint.recovered";
/// A delivery's last try failed.
pub const DELIVERY_DEAD: &str = "delivery.dead";
/// An integration's inbound requests were refused more than the threshold
/// in a minute.
pub const VERIFICATION_FAILING: &str = "integration.verification_failing";
/// The audit chain's head, when it moved.
pub const AUDIT_HEAD: &str = "audit.head";

/// Every operational event type.
pub const TYPES: [&str; 6] = [
    ENDPOINT_PAUSED,
    ENDPOINT_DISABLED,
    ENDPOINT_RECOVERED,
    DELIVERY_DEAD,
    VERIFICATION_FAILING,
    AUDIT_HEAD,
];

/// Sends operational events.
pub struct Operational {
    store: Arc<dyn Store>,
    wake: Arc<Wake>,
    clock: Clock,
    /// Whether an operational webhook existed, and when that was read.
    listening: Mutex<Listening>,
}

/// The cached answer, and how many times the webhooks changed: a look
/// that began before a change keeps its answer to itself (it may have read
/// the list before a webhook was added, and would otherwise hide that
/// webhook for `LOOK_EVERY`).
#[derive(Default)]
struct Listening {
    answer: Option<(bool, Instant)>,
    changes: u64,
}

impl Listening {
    /// The cached answer while it is fresh; otherwise the change count a
    /// look beginning now must hand back to `keep`.
    fn cached(&self, now: Instant) -> Result<bool, u64> {
        match self.answer {
            Some((any, at)) if now.duration_since(at) < LOOK_EVERY => Ok(any),
            _ => Err(self.changes),
        }
    }

    /// Keeps what a look that began at change count `began` read, unless
    /// the webhooks changed since.
    fn keep(&mut self, began: u64, any: bool, now: Instant) {
        if self.changes == began {
            self.answer = Some((any, now));
        }
    }

    fn changed(&mut self) {
        self.answer = None;
        self.changes += 1;
    }
}

impl Operational {
    pub fn new(store: Arc<dyn Store>, wake: Arc<Wake>, clock: Clock) -> Self {
        Self {
            store,
            wake,
            clock,
            listening: Mutex::new(Listening::default()),
        }
    }

    /// The operational webhooks changed: read again before the next event.
    pub fn changed(&self) {
        self.listening().changed();
    }

    fn listening(&self) -> std::sync::MutexGuard<'_, Listening> {
        self.listening.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `account_id` is the operational account (its endpoints'
    /// own troubles are not reported to them).
    pub fn is_own(account_id: &str) -> bool {
        account_id == ACCOUNT
    }

    /// Publishes one event to the operational webhooks subscribed to
    /// `kind`, if there are any. Failures are logged, never raised: telling
    /// the platform must not fail what it reports on.
    pub async fn emit(&self, kind: &'static str, data: Value) {
        if !self.anyone_listening().await {
            return;
        }
        let event = NewEvent {
            id: ids::event_id(),
            client_id: None,
            account_id: ACCOUNT.to_owned(),
            event_type: kind.to_owned(),
            payload: data,
            producer: PRODUCER.to_owned(),
            created_at: self.clock.now(),
            trace_parent: None,
        };
        match self.store.publish_event(&event).await {
            Ok(PublishOutcome::Created { webhooks, handed }) => self
                .wake
                .lanes(hookwarden_store::model::waiting(&webhooks, &handed)),
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(event.type = kind, error.message = %e, "an operational event could not be stored");
            }
        }
    }

    async fn anyone_listening(&self) -> bool {
        let began = match self.listening().cached(Instant::now()) {
            Ok(any) => return any,
            Err(began) => began,
        };
        let any = match self.store.list_webhooks(Some(ACCOUNT), None, 1).await {
            Ok(page) => !page.items.is_empty(),
            Err(e) => {
                tracing::warn!(error.message = %e, "looking for operational webhooks failed");
                return false;
            }
        };
        self.listening().keep(began, any, Instant::now());
        any
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A look that read the list before a webhook was added (and finished
    /// after) leaves nothing cached: the next look reads again. A look with
    /// no change meanwhile is kept for `LOOK_EVERY`.
    #[test]
    fn a_look_that_began_before_a_change_is_not_kept() {
        let t0 = Instant::now();
        let mut l = Listening::default();
        let began = l.cached(t0).expect_err("nothing cached yet");
        l.changed(); // a webhook added while the look was reading
        l.keep(began, false, t0);
        assert!(l.cached(t0).is_err(), "the stale `false` was kept");

        let began = l.cached(t0).expect_err("looks again");
        l.keep(began, true, t0);
        assert_eq!(l.cached(t0 + Duration::from_secs(1)), Ok(true));
        assert!(
            l.cached(t0 + LOOK_EVERY).is_err(),
            "read again after LOOK_EVERY"
        );
        l.changed();
        assert!(l.cached(t0).is_err(), "read again after a change");
    }
}
