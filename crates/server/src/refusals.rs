//! Refused requests stay cheap. A request that fails authentication (a bad
//! signature, token or key), comes from outside an integration's source
//! ranges or names no integration costs no database work: it is counted per
//! client in memory (a client over the limit is answered 429 before anything
//! else is done for it), and it reaches the audit trail *aggregated*, one
//! entry per provider, reason, source prefix and minute with a count, written
//! by a background flush, never one durable write per refused request.

use crate::ratelimit::LocalRateLimiter;
use crate::state::AppState;
use hookwarden_core::client_addr::{audit_prefix, limit_key};
use serde_json::json;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// How often aggregated refusals are written to the audit trail.
pub const FLUSH_EVERY: Duration = Duration::from_secs(5);
/// Most distinct aggregates held between flushes; past it refusals are
/// counted in a metric and in the next flush's overflow entry only.
const MAX_PENDING: usize = 10_000;
/// Most audit entries one flush writes; the rest become one overflow entry.
const MAX_ENTRIES_PER_FLUSH: usize = 50;

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
    overflow: AtomicU64,
}

impl Refusals {
    pub fn new(per_minute: u32) -> Self {
        Self {
            failures: LocalRateLimiter::default(),
            per_minute,
            pending: Mutex::default(),
            overflow: AtomicU64::new(0),
        }
    }

    /// How long a client that failed too often must wait, if it must.
    pub fn blocked(&self, client: IpAddr) -> Option<Duration> {
        self.failures.over(&limit_key(client), self.per_minute)
    }

    /// Counts one failed authentication (or request for no integration).
    pub fn failed(&self, client: IpAddr) {
        self.failures.count(&limit_key(client));
    }

    /// Notes a refused inbound request for the aggregated audit trail.
    /// True for the first of its aggregate (the caller logs that one loudly).
    pub fn note(&self, provider: &str, reason: &'static str, client: IpAddr) -> bool {
        let key = Aggregate {
            provider: provider.to_owned(),
            reason,
            prefix: audit_prefix(client),
            minute: chrono::Utc::now().timestamp() / 60,
        };
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = pending.get_mut(&key) {
            *n += 1;
            return false;
        }
        if pending.len() >= MAX_PENDING {
            drop(pending);
            self.overflow.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("hookwarden_refusals_unaggregated_total").increment(1);
            return false;
        }
        pending.insert(key, 1);
        true
    }

    /// Writes what was noted since the last flush; returns the entries written.
    pub async fn flush(&self, state: &AppState) -> usize {
        let taken = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|p| p.into_inner()));
        let mut overflow = self.overflow.swap(0, Ordering::Relaxed);
        let mut items: Vec<(Aggregate, u64)> = taken.into_iter().collect();
        // The largest aggregates get entries of their own.
        items.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let mut written = 0;
        for (i, (key, count)) in items.into_iter().enumerate() {
            if i >= MAX_ENTRIES_PER_FLUSH {
                overflow += count;
                continue;
            }
            let minute = chrono::DateTime::from_timestamp(key.minute * 60, 0)
                .map(crate::http::rfc3339)
                .unwrap_or_default();
            crate::audit::record(
                state,
                &format!("provider:{}", key.provider),
                "inbound.verification_failed",
                &format!("integration:{}", key.provider),
                "aggregated",
                json!({"reason": key.reason, "sourcePrefix": key.prefix, "minute": minute, "count": count}),
            )
            .await;
            written += 1;
        }
        if overflow > 0 {
            crate::audit::record(
                state,
                "hookwarden",
                "inbound.verification_failed",
                "integration:*",
                "aggregated",
                json!({"reason": "many sources", "count": overflow}),
            )
            .await;
            written += 1;
        }
        written
    }

    /// Flushes every `FLUSH_EVERY` until `shutdown`, then once more.
    pub async fn run(state: AppState, shutdown: tokio_util::sync::CancellationToken) {
        let mut tick = tokio::time::interval(FLUSH_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tick.tick() => { state.refusals.flush(&state).await; }
            }
        }
        state.refusals.flush(&state).await;
    }
}
