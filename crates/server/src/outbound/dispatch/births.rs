//! The delivery worker's side of tries leased at birth (the store's
//! `births.rs`): a publish batch asks it for a slot per first try, stores the
//! try leased to it, and hands it over once committed, so the try needs no
//! claim.

use super::worker::{DeliveryQueue, Dispatcher};
use crate::shared::clock::Clock;
use crate::shared::pump::Adopted;
use chrono::{DateTime, Utc};
use hookwarden_store::births::{Births, Place};
use hookwarden_store::model::{Attempt, Webhook};
use std::sync::{Arc, Weak};

/// The running dispatcher, as the store sees it: weakly, since the
/// dispatcher holds the store (no cycle keeps either alive once the worker
/// has stopped).
pub struct DispatcherBirths {
    dispatcher: Weak<Dispatcher>,
    clock: Clock,
}

impl DispatcherBirths {
    pub fn new(dispatcher: &Arc<Dispatcher>) -> Self {
        Self {
            dispatcher: Arc::downgrade(dispatcher),
            clock: dispatcher.clock().clone(),
        }
    }
}

impl Births for DispatcherBirths {
    fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    fn reserve(
        &self,
        webhook_id: &str,
        paused_until: Option<DateTime<Utc>>,
    ) -> Option<Box<dyn Place>> {
        let dispatcher = self.dispatcher.upgrade()?;
        // Tries stored during a pause come due when it ends, and nothing
        // announces them: until a poll has surely claimed them, later tries
        // of the endpoint wait behind them.
        if let Some(until) = paused_until {
            let settled = chrono::Duration::from_std(dispatcher.poll_interval())
                .ok()
                .and_then(|poll| until.checked_add_signed(poll.checked_mul(2)?));
            // An end that cannot be computed counts as not yet settled.
            if settled.is_none_or(|at| at > self.clock.now()) {
                return None;
            }
        }
        Some(Box::new(dispatcher.adopt(webhook_id)?))
    }

    fn stored_for_claim(&self, webhook_ids: &[String]) {
        if let Some(dispatcher) = self.dispatcher.upgrade() {
            dispatcher.stored_for_claim(webhook_ids);
        }
    }
}

impl Place for Adopted<DeliveryQueue> {
    fn owner(&self) -> &str {
        &self.owner
    }

    fn lease_until(&self) -> DateTime<Utc> {
        self.lease_until
    }

    fn start(self: Box<Self>, attempt: Attempt, webhook: Webhook) {
        (*self).start((attempt, Some(webhook)));
    }
}
