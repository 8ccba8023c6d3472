//! Refused requests stay cheap. A request that fails authentication (a bad
//! signature, token or key), comes from outside an integration's source
//! ranges or names no integration costs no database work: it is counted per
//! client and scope in memory (a client over the limit is answered 429
//! before anything else is done for it), and it reaches the audit trail
//! *aggregated*: one entry per provider, reason, source prefix and minute
//! with a count, written once that minute is over, never one durable write
//! per refused request.

use crate::shared::ratelimit::LocalRateLimiter;
use hookwarden_core::client_addr::{audit_prefix, limit_key};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

// Writing to the audit trail needs the shared state, which holds `Refusals`:
// that half lives in a child module, so this type does not depend on the state.
mod flush;

/// How often finished minutes of refusals are written to the audit trail.
pub const FLUSH_EVERY: Duration = Duration::from_secs(5);
/// Most distinct aggregates held; past it a refusal is counted under its
/// provider, reason and minute with the source prefix `*` (a few keys more
/// at most: providers are known integrations, reasons a fixed list).
const MAX_PENDING: usize = 10_000;
/// Most audit entries one minute's flush writes per provider and reason;
/// the smaller aggregates are summed into one `*` entry.
const MAX_ENTRIES_PER_KIND: usize = 20;

/// Provider, reason and minute: what one minute's entries are grouped by.
type Kind = (String, &'static str, i64);

#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Aggregate {
    provider: String,
    reason: &'static str,
    prefix: String,
    minute: i64,
}

pub struct Refusals {
    failures: LocalRateLimiter,
    per_minute: u32,
    pending: Mutex<HashMap<Aggregate, u64>>,
}

impl Refusals {
    pub fn new(per_minute: u32) -> Self {
        Self {
            failures: LocalRateLimiter::default(),
            per_minute,
            pending: Mutex::default(),
        }
    }

    fn key(scope: &str, client: IpAddr) -> String {
        format!("{scope}:{}", limit_key(client))
    }

    /// How long a client that failed too often in `scope` must wait, if it must.
    pub fn blocked(&self, scope: &str, client: IpAddr) -> Option<Duration> {
        self.failures
            .over(&Self::key(scope, client), self.per_minute)
    }

    /// Counts one failed authentication in `scope`.
    pub fn failed(&self, scope: &str, client: IpAddr) {
        self.failures.count(&Self::key(scope, client));
    }

    /// Counts one request naming no integration; false once the client is
    /// over its limit for those.
    pub fn unknown_name(&self, client: IpAddr) -> Result<(), Duration> {
        let key = Self::key("unknown-provider", client);
        if let Some(wait) = self.failures.over(&key, self.per_minute) {
            return Err(wait);
        }
        self.failures.count(&key);
        Ok(())
    }

    /// Notes a refused inbound request for the aggregated audit trail.
    /// True for the first of its aggregate (the caller logs that one loudly).
    pub fn note(&self, provider: &str, reason: &'static str, client: IpAddr) -> bool {
        let mut key = Aggregate {
            provider: provider.to_owned(),
            reason,
            prefix: audit_prefix(client),
            minute: chrono::Utc::now().timestamp() / 60,
        };
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        if !pending.contains_key(&key) && pending.len() >= MAX_PENDING {
            metrics::counter!(crate::shared::metrics::REFUSALS_UNAGGREGATED).increment(1);
            key.prefix = "*".to_owned();
        }
        let n = pending.entry(key).or_insert(0);
        *n += 1;
        *n == 1
    }
}
