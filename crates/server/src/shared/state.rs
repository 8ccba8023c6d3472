//! What every request handler and worker shares.

use crate::config::Settings;
use crate::shared::jwt::JwtVerifier;
use crate::shared::ratelimit::RateLimiter;
use hookwarden_core::crypto::Keyring;
use hookwarden_core::destination::AddressPolicy;
use hookwarden_store::Store;
use std::ops::Deref;
use std::sync::Arc;

pub struct Shared {
    pub settings: Settings,
    /// The time workers and handlers act on (set ahead by hand in tests).
    pub clock: crate::shared::clock::Clock,
    pub store: Arc<dyn Store>,
    pub keyring: Arc<Keyring>,
    pub jwt: JwtVerifier,
    pub limiter: Arc<dyn RateLimiter>,
    pub policy: AddressPolicy,
    /// Wakes the delivery worker when new work was committed by this process.
    pub wake: Arc<crate::shared::pump::Wake>,
    /// The NATS client when configured (readiness reports its state).
    pub nats: Option<async_nats::Client>,
    /// Redis when configured: shared limits, dedup markers, event locks.
    pub redis: Option<crate::shared::redis::Redis>,
    /// Wakes the forwarding worker when an inbound event was committed.
    pub forward_wake: Arc<crate::shared::pump::Wake>,
    /// Integrations as the receive path reads them (cached briefly).
    pub integrations: crate::inbound::cache::IntegrationCache,
    /// Failed authentications per client, and refusals awaiting the audit trail.
    pub refusals: crate::shared::refusals::Refusals,
    /// Activity counts for the console's charts, awaiting their flush.
    pub activity: Arc<crate::shared::activity::Activity>,
    /// Compiled JSON Schemas of event types.
    pub schemas: crate::outbound::schemas::SchemaCache,
    /// Signs the identity tokens of forwarded requests.
    pub identity: Arc<crate::shared::identity::IdentitySigner>,
    /// hookwarden's own events to the platform's operational webhooks.
    pub operational: Arc<crate::shared::operational::Operational>,
    /// Spans of the steps events take (none without an OTLP endpoint).
    pub traces: crate::shared::traces::Traces,
    /// What the development delivery sink received (bounded).
    pub sink: std::sync::Mutex<std::collections::VecDeque<crate::shared::sink::SinkRecord>>,
}

#[derive(Clone)]
pub struct AppState(pub Arc<Shared>);

impl Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}
