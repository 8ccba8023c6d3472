//! Recovering an endpoint after an outage: every delivery to it that failed
//! since a given time is tried again, once each, without scripts. A dead
//! letter gets a new try (as `POST /v1/deliveries/{id}/retry` would); a
//! delivery waiting for its next retry is brought forward to now. The
//! endpoint's pause and failure count are cleared: its tenant says it is
//! back (should it not be, the breaker pauses it again after a few tries).
//! The pump's per-endpoint share paces the tries, as for any backlog; at
//! most `MAX_PER_CALL` dead letters per call and one call per endpoint per
//! `COOLDOWN` (per minute across replicas) bound what one tenant can send a
//! URL this way.

use crate::shared::pump::Wake;
use chrono::{DateTime, Utc};
use hookwarden_core::ids;
use hookwarden_store::model::{ActivityDelta, AttemptStatus};
use hookwarden_store::search::AttemptFilter;
use hookwarden_store::{Store, StoreError};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

/// Most dead letters one call re-queues; `more` says when others remain
/// (those re-queued are not selected again, so calling again goes on).
pub const MAX_PER_CALL: u32 = 1_000;

/// One recovery per endpoint per this long on a replica, and one per
/// calendar minute across replicas: a tenant cannot loop recoveries into a
/// flood of tries at a third party's URL.
pub const COOLDOWN: Duration = Duration::from_secs(60);

/// Endpoints recovered lately, and when (bounded: old entries go first).
static RECENT: Mutex<BTreeMap<String, DateTime<Utc>>> = Mutex::new(BTreeMap::new());

/// Starts a recovery of `webhook_id` at `now`, or answers how long until
/// one may start.
fn begin(webhook_id: &str, now: DateTime<Utc>) -> Result<(), Duration> {
    let cooldown = chrono::Duration::from_std(COOLDOWN).unwrap_or_default();
    let mut recent = RECENT.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(at) = recent.get(webhook_id) {
        let ready = *at + cooldown;
        if ready > now {
            return Err((ready - now).to_std().unwrap_or(COOLDOWN));
        }
    }
    if recent.len() >= 10_000 {
        recent.retain(|_, at| *at + cooldown > now);
    }
    recent.insert(webhook_id.to_owned(), now);
    Ok(())
}

/// The same bound across replicas: each recovery adds one to the
/// endpoint's row of this minute in the activity table (summed over every
/// replica), and only the first of the minute goes on. (The replica's own
/// `begin` keeps a whole `COOLDOWN` between two of its own.)
async fn begin_everywhere(
    store: &dyn Store,
    webhook_id: &str,
    now: DateTime<Utc>,
) -> Result<(), RecoverError> {
    let minute =
        crate::shared::activity::minute_start(now.timestamp().div_euclid(60)).unwrap_or(now);
    let sums = store
        .add_activity(&[ActivityDelta {
            minute,
            series: format!("recover.{webhook_id}"),
            value: 1,
        }])
        .await?;
    match sums.first() {
        Some(d) if d.value > 1 => {
            let wait = (minute + chrono::Duration::seconds(60) - now)
                .to_std()
                .unwrap_or(COOLDOWN);
            Err(RecoverError::TooSoon(wait.max(Duration::from_secs(1))))
        }
        _ => Ok(()),
    }
}

/// Dead letters read per page.
const PAGE: u32 = 500;

#[derive(Debug, thiserror::Error)]
pub enum RecoverError {
    #[error("no such webhook")]
    NotFound,
    #[error("the endpoint is disabled")]
    Disabled,
    #[error("recovered moments ago")]
    TooSoon(Duration),
    #[error("storage: {0}")]
    Store(#[from] StoreError),
}

/// What a recovery did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Recovered {
    /// Dead letters given a new try, due now.
    pub requeued: u64,
    /// Deliveries waiting for a retry, now due.
    pub hurried: u64,
    /// More dead letters remain past `MAX_PER_CALL`: call again.
    pub more: bool,
}

/// Recovers `webhook_id` of `account_id`: its failed deliveries since
/// `since` are due again now.
pub async fn recover(
    store: &dyn Store,
    wake: &Wake,
    account_id: &str,
    webhook_id: &str,
    since: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<Recovered, RecoverError> {
    let webhook = store
        .get_webhook(account_id, webhook_id)
        .await?
        .ok_or(RecoverError::NotFound)?;
    if webhook.disabled {
        return Err(RecoverError::Disabled);
    }
    begin(webhook_id, now).map_err(RecoverError::TooSoon)?;
    begin_everywhere(store, webhook_id, now).await?;
    let mut done = Recovered {
        hurried: store.hurry_retries(webhook_id, since, now).await?,
        ..Recovered::default()
    };
    let filter = AttemptFilter {
        account_id: Some(account_id),
        webhook_id: Some(webhook_id),
        status: Some(AttemptStatus::Dead),
        from: Some(since),
        latest_only: true,
        ..AttemptFilter::default()
    };
    let mut cursor: Option<String> = None;
    let mut seen = 0u32;
    loop {
        let page = store
            .search_attempts(&filter, cursor.as_deref(), PAGE.min(MAX_PER_CALL - seen))
            .await?;
        for dead in &page.items {
            // Only if still the pair's latest try: a recovery racing a
            // retry re-queues each dead letter once between them.
            let new_id = ids::attempt_id();
            if store
                .retry_now(account_id, &dead.id, &new_id, now, now, true)
                .await?
                .is_some()
            {
                done.requeued += 1;
            }
        }
        seen += page.items.len() as u32;
        cursor = page.next_cursor;
        if cursor.is_none() {
            break;
        }
        if seen >= MAX_PER_CALL {
            done.more = true;
            break;
        }
    }
    if done.requeued + done.hurried > 0 {
        wake.lanes([webhook_id.to_owned()]);
    }
    Ok(done)
}
