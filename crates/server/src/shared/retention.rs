//! Retention: events, their delivery tries, inbound events and their
//! forwarding jobs older than `HOOKWARDEN_RETENTION` are deleted, so the
//! database does not grow forever. The audit trail is never pruned.
//!
//! Pruning goes in small batches (`BATCH` events per transaction, a pause
//! between batches), so it never holds locks for long or crowds out the
//! deliveries on SQLite's one writer; a run stops after `MAX_BATCHES` and
//! the next one, `EVERY` later, goes on. Only finished history goes: an
//! event with a pending try, or a try made after the bound (a retry of an
//! old event), is kept, and a run's cursor moves past it. An inbound event
//! of a scheme that signs no timestamp leaves its deduplication key behind
//! (what stops a replay of an old request), so that request is still
//! answered as a duplicate. The store's pruning path is the only DELETE the
//! history tables' triggers allow, and only of rows older than the bound.

use crate::shared::clock::Clock;
use hookwarden_store::Store;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Events (or inbound events) per transaction.
pub const BATCH: u32 = 500;
/// Batches per run at most: a large backlog is worked off over several runs.
const MAX_BATCHES: usize = 200;
/// Between batches, so other writers go first.
const PAUSE: Duration = Duration::from_millis(20);
/// Between runs.
pub const EVERY: Duration = Duration::from_secs(60);

/// What one run deleted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pruned {
    pub events: u64,
    pub tries: u64,
    pub inbound_events: u64,
    pub jobs: u64,
}

/// One run at `now`: everything older than `now - retention`, in batches.
pub async fn prune_once(
    store: &dyn Store,
    now: chrono::DateTime<chrono::Utc>,
    retention: Duration,
) -> hookwarden_store::Result<Pruned> {
    let before = now - chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::MAX);
    let mut done = Pruned::default();
    let mut after: Option<String> = None;
    for _ in 0..MAX_BATCHES {
        let batch = store.prune_events(before, after.as_deref(), BATCH).await?;
        done.events += batch.events;
        done.tries += batch.tries;
        count("events", batch.events);
        count("delivery_attempts", batch.tries);
        match batch.last {
            Some(last) => after = Some(last),
            None => break,
        }
        tokio::time::sleep(PAUSE).await;
    }
    for _ in 0..MAX_BATCHES {
        let (events, jobs) = store.prune_inbound(before, BATCH).await?;
        done.inbound_events += events;
        done.jobs += jobs;
        count("inbound_events", events);
        count("processing_jobs", jobs);
        if events < u64::from(BATCH) {
            break;
        }
        tokio::time::sleep(PAUSE).await;
    }
    match store.oldest_kept().await {
        Ok((events, inbound)) => {
            for (kind, oldest) in [("events", events), ("inbound_events", inbound)] {
                let age = oldest.map_or(0.0, |t| (now - t).num_milliseconds().max(0) as f64 / 1e3);
                metrics::gauge!(crate::shared::metrics::OLDEST_KEPT, "table" => kind).set(age);
            }
        }
        Err(e) => tracing::warn!(error.message = %e, "reading the oldest rows kept failed"),
    }
    Ok(done)
}

fn count(table: &'static str, n: u64) {
    if n > 0 {
        metrics::counter!(crate::shared::metrics::PRUNED_ROWS, "table" => table).increment(n);
    }
}

/// Prunes every `EVERY` until `shutdown`.
pub async fn run(
    store: Arc<dyn Store>,
    clock: Clock,
    retention: Duration,
    shutdown: CancellationToken,
) {
    // First run a period after start: a starting replica has other work
    // (claims, a backlog), and pruning is never urgent.
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + EVERY, EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        match prune_once(store.as_ref(), clock.now(), retention).await {
            Ok(p) if p != Pruned::default() => tracing::info!(
                events = p.events,
                tries = p.tries,
                inbound_events = p.inbound_events,
                jobs = p.jobs,
                "pruned history past HOOKWARDEN_RETENTION"
            ),
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error.message = %e, "pruning failed; the next run tries again")
            }
        }
    }
}
