//! The other half of `Refusals`: writing finished minutes to the audit trail
//! (it needs the shared state, which holds the counters of `super`).

use super::{Aggregate, Kind, Refusals, FLUSH_EVERY, MAX_ENTRIES_PER_KIND};
use crate::shared::state::AppState;
use hookwarden_store::model::ActivityDelta;
use serde_json::json;
use std::collections::HashMap;

/// The activity series counting an integration's refusals per minute,
/// summed over the replicas.
fn refused_series(provider: &str) -> String {
    format!("refused.{provider}")
}

/// Adds this replica's refusals per (integration, minute) to the database's
/// per-minute sums, and answers each sum over every replica so far: one
/// upsert per flush, only when something was refused. Empty when the
/// database does not answer (each replica then judges by its own count).
async fn shared_totals<T>(
    state: &AppState,
    per: &HashMap<(&str, i64), (u64, T)>,
) -> HashMap<(String, i64), u64> {
    let deltas: Vec<ActivityDelta> = per
        .iter()
        .filter_map(|((provider, minute), (n, _))| {
            Some(ActivityDelta {
                minute: crate::shared::activity::minute_start(*minute)?,
                series: refused_series(provider),
                value: i64::try_from(*n).ok()?,
            })
        })
        .collect();
    match state.store.add_activity(&deltas).await {
        Ok(sums) => sums
            .into_iter()
            .filter_map(|d| {
                let provider = d.series.strip_prefix("refused.")?.to_owned();
                Some((
                    (provider, d.minute.timestamp() / 60),
                    u64::try_from(d.value).ok()?,
                ))
            })
            .collect(),
        Err(e) => {
            tracing::warn!(error.message = %e, "the refusals' shared count is unavailable; each replica judges by its own");
            HashMap::new()
        }
    }
}

impl Refusals {
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
        self.tell_failing(state, &kinds).await;
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
                .map(crate::shared::rfc3339)
                .unwrap_or_default();
            for (prefix, count) in prefixes {
                crate::shared::audit::record(
                    state.store.as_ref(),
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

    /// An integration refused more than the threshold in a minute, by all
    /// replicas together (a provider secret rotated there and not here, or
    /// an attack spread over them): one `integration.verification_failing`
    /// event per integration and minute, from the replica whose count
    /// crossed the threshold, with this replica's counts by reason (never a
    /// source address or a body).
    async fn tell_failing(&self, state: &AppState, kinds: &HashMap<Kind, Vec<(String, u64)>>) {
        let threshold = u64::from(state.settings.verification_failing_threshold);
        // Per (integration, minute): the refusals, and their count by reason.
        type Counts = (u64, serde_json::Map<String, serde_json::Value>);
        let mut per: HashMap<(&str, i64), Counts> = HashMap::new();
        for ((provider, reason, minute), prefixes) in kinds {
            let n: u64 = prefixes.iter().map(|p| p.1).sum();
            let entry = per.entry((provider.as_str(), *minute)).or_default();
            entry.0 += n;
            entry.1.insert(reason.to_string(), json!(n));
        }
        let totals = shared_totals(state, &per).await;
        let mut over: Vec<_> = per
            .into_iter()
            .filter_map(|(key, (n, reasons))| {
                // Without the database's sum, this replica's own count.
                let total = totals.get(&(key.0.to_owned(), key.1)).copied().unwrap_or(n);
                let crossed = total > threshold && total.saturating_sub(n) <= threshold;
                crossed.then_some((key, (total, reasons)))
            })
            .collect();
        over.sort_by(|a, b| a.0.cmp(&b.0));
        for ((provider, minute), (refusals, reasons)) in over {
            let at = chrono::DateTime::from_timestamp(minute * 60, 0)
                .map(crate::shared::rfc3339)
                .unwrap_or_default();
            state
                .operational
                .emit(
                    crate::shared::operational::VERIFICATION_FAILING,
                    json!({"integration": provider, "minute": at, "refusals": refusals,
                           "threshold": threshold, "reasons": reasons}),
                )
                .await;
        }
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
