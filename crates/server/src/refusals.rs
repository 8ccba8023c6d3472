//! Refused requests stay cheap. A request that fails authentication (a bad
//! signature, token or key), comes from outside an integration's source
//! ranges or names no integration costs no database work: it is counted per
//! client and scope in memory (a client over the limit is answered 429
//! before anything else is done for it), and it reaches the audit trail
//! *aggregated*: one entry per provider, reason, source prefix and minute
//! with a count, written once that minute is over, never one durable write
//! per refused request.

use crate::ratelimit::LocalRateLimiter;
use crate::state::AppState;
use hookwarden_core::client_addr::{audit_prefix, limit_key};
use serde_json::json;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

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
            metrics::counter!(crate::metrics::REFUSALS_UNAGGREGATED).increment(1);
            key.prefix = "*".to_owned();
        }
        let n = pending.entry(key).or_insert(0);
        *n += 1;
        *n == 1
    }

    /// Writes the minutes that are over (all of them when `everything`);
    /// returns the entries written.
    pub async fn flush(&self, state: &AppState, everything: bool) -> usize {
        let current = chrono::Utc::now().timestamp() / 60;
        let done: Vec<(Aggregate, u64)> = {
            let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            let keys: Vec<Aggregate> = pending
                .keys()
                .filter(|k| everything || k.minute < current)
                .cloned()
                .collect();
            keys.into_iter()
                .filter_map(|k| pending.remove(&k).map(|n| (k, n)))
                .collect()
        };
        // Per (provider, reason, minute): the largest prefixes get entries of
        // their own, the rest one `*` entry.
        let mut kinds: HashMap<Kind, Vec<(String, u64)>> = HashMap::new();
        for (k, n) in done {
            kinds
                .entry((k.provider, k.reason, k.minute))
                .or_default()
                .push((k.prefix, n));
        }
        let mut written = 0;
        let mut kinds: Vec<_> = kinds.into_iter().collect();
        kinds.sort_by(|a, b| a.0.cmp(&b.0));
        for ((provider, reason, minute), mut prefixes) in kinds {
            prefixes.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            let rest: u64 = prefixes
                .iter()
                .skip(MAX_ENTRIES_PER_KIND)
                .map(|p| p.1)
                .sum();
            prefixes.truncate(MAX_ENTRIES_PER_KIND);
            if rest > 0 {
                match prefixes.iter_mut().find(|p| p.0 == "*") {
                    Some(star) => star.1 += rest,
                    None => prefixes.push(("*".to_owned(), rest)),
                }
            }
            let at = chrono::DateTime::from_timestamp(minute * 60, 0)
                .map(crate::http::rfc3339)
                .unwrap_or_default();
            for (prefix, count) in prefixes {
                crate::audit::record(
                    state,
                    &format!("provider:{provider}"),
                    "inbound.verification_failed",
                    &format!("integration:{provider}"),
                    "aggregated",
                    json!({"reason": reason, "sourcePrefix": prefix, "minute": at, "count": count}),
                )
                .await;
                written += 1;
            }
        }
        written
    }

    /// Flushes finished minutes every `FLUSH_EVERY` until `shutdown`, then
    /// everything.
    pub async fn run(state: AppState, shutdown: tokio_util::sync::CancellationToken) {
        let mut tick = tokio::time::interval(FLUSH_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tick.tick() => { state.refusals.flush(&state, false).await; }
            }
        }
        state.refusals.flush(&state, true).await;
    }
}
