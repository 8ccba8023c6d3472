//! What group-committed writes answer, item by item, decided the same way on
//! both dialects once each has read what its SQL found: an inbound event is
//! new or a duplicate, a published event is new, the same one again, or a
//! conflict, and a new event's first try is due at once or after its
//! endpoint's pause.

use crate::error::{Result, StoreError};
use crate::ingress::{NewInbound, RecordOutcome};
use crate::model::{AttemptResult, NewEvent, PublishOutcome};
use crate::rows::{self, Columns};
use chrono::{DateTime, Utc};
use hookwarden_core::payload_filter::PayloadFilter;
use hookwarden_core::{ids, validate::subscribed};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicI64, Ordering};

/// Each item of a stored inbound batch answered, in order: created when its
/// row went in (`inserted`), else the id of the event already stored for
/// its (provider, dedup key), earlier in the batch or before (`stored`:
/// rows of provider, dedup key and id).
pub(crate) fn inbound(
    items: &[&NewInbound],
    inserted: &HashSet<String>,
    stored: Vec<(String, String, String)>,
) -> Result<Vec<RecordOutcome>> {
    let stored: HashMap<(String, String), String> = stored
        .into_iter()
        .map(|(provider, key, id)| ((provider, key), id))
        .collect();
    items
        .iter()
        .map(|e| {
            if inserted.contains(&e.id) {
                return Ok(RecordOutcome::Created);
            }
            stored
                .get(&(e.provider.clone(), e.dedup_key.clone()))
                .map(|id| RecordOutcome::Duplicate {
                    event_id: id.clone(),
                })
                .ok_or_else(|| {
                    StoreError::Corrupt(format!(
                        "inbound {}: neither inserted nor stored before",
                        e.id
                    ))
                })
        })
        .collect()
}

/// A publish whose key was taken, answered from the stored event's row (its
/// columns and `deliveries`, the endpoints it fanned out to): the same event
/// again, or a conflict.
pub(crate) fn existing(row: &impl Columns, incoming: &NewEvent) -> Result<PublishOutcome> {
    let stored = rows::event(row)?;
    let deliveries: i64 = row.get("deliveries")?;
    Ok(if same_event(&stored, incoming) {
        PublishOutcome::Existing {
            event_id: stored.id,
            deliveries: deliveries as u64,
        }
    } else {
        PublishOutcome::Conflict
    })
}

/// Same content? Tells an idempotent re-publish from an id collision (the
/// producer and account are part of the key that matched).
fn same_event(stored: &NewEvent, incoming: &NewEvent) -> bool {
    stored.account_id == incoming.account_id
        && stored.producer == incoming.producer
        && stored.event_type == incoming.event_type
        && stored.payload == incoming.payload
}

/// When an event's first try to an endpoint is due: at once, or when the
/// endpoint's pause ends.
pub(crate) fn first_due(
    created_at: DateTime<Utc>,
    paused_until: Option<DateTime<Utc>>,
) -> DateTime<Utc> {
    paused_until.map_or(created_at, |p| p.max(created_at))
}

/// A webhook an event of its account may fan out to.
pub(crate) struct Subscriber {
    pub(crate) id: String,
    pub(crate) account_id: String,
    pub(crate) event_types: Vec<String>,
    pub(crate) paused_until: Option<DateTime<Utc>>,
    /// Events whose payload this does not match get no try. A stored
    /// filter that no longer reads (written by a later version, say)
    /// filters nothing: an event is never dropped for it. The operator
    /// hears of it (`unreadable_filter`).
    pub(crate) filter: Option<PayloadFilter>,
}

/// What a publish batch reads of each webhook of its accounts: `id,
/// account_id, event_types, throttled_until`.
pub(crate) const SUBSCRIBER_COLUMNS: &str =
    "id, account_id, event_types, throttled_until, payload_filter";

impl Subscriber {
    pub(crate) fn from_row(row: &impl Columns) -> Result<Self> {
        Ok(Self {
            id: row.get("id")?,
            account_id: row.get("account_id")?,
            event_types: row.get::<sqlx::types::Json<Vec<String>>>("event_types")?.0,
            paused_until: row.opt_time("throttled_until")?,
            filter: rows::opt_json(row, "payload_filter")?.and_then(|f| {
                PayloadFilter::parse(&f)
                    .inspect_err(|_| {
                        unreadable_filter(&row.get::<String>("id").unwrap_or_default())
                    })
                    .ok()
            }),
        })
    }
}

/// Says, at most once a minute (it is read at every publish batch that
/// reaches the webhook), that a webhook's stored payload filter does not
/// read and so filters nothing. The webhook is named, never the filter or
/// the error, which may quote the filter's values (a tenant's data).
fn unreadable_filter(webhook: &str) {
    static LAST_MINUTE: AtomicI64 = AtomicI64::new(i64::MIN);
    let minute = Utc::now().timestamp() / 60;
    if LAST_MINUTE.swap(minute, Ordering::Relaxed) != minute {
        tracing::error!(webhook.id = %webhook,
            "a webhook's stored payload filter could not be read: it filters nothing (every event \
             of its types is sent) until the filter is set again");
    }
}

/// The first tries of a batch of events, column by column (for `unnest` on
/// PostgreSQL, a multi-row `VALUES` on SQLite).
#[derive(Default)]
pub(crate) struct FirstTries {
    pub(crate) ids: Vec<String>,
    pub(crate) event_ids: Vec<String>,
    pub(crate) webhook_ids: Vec<String>,
    pub(crate) account_ids: Vec<String>,
    pub(crate) at: Vec<DateTime<Utc>>,
    pub(crate) due: Vec<DateTime<Utc>>,
    /// Each try's snapshot, as an index into `bodies`: all tries of an event
    /// send the same body, which is built and bound once per event.
    pub(crate) body_of: Vec<usize>,
    /// The snapshots of the events with tries.
    pub(crate) bodies: Vec<String>,
    /// The same snapshots as values, for the tries handed to the worker.
    pub(crate) snapshots: Vec<serde_json::Value>,
    /// Each try's `traceparent`, its event's.
    pub(crate) traces: Vec<Option<String>>,
}

/// A published batch fanned out: each event stored now (`fresh`) gets a
/// first try per subscribed webhook of its account and is answered
/// `Created` with those webhooks; the others are answered `Conflict` here,
/// for the caller to replace with what the stored event says once the
/// batch's tries are in.
pub(crate) fn fan_out(
    items: &[&NewEvent],
    fresh: &[bool],
    webhooks: &[Subscriber],
) -> (Vec<PublishOutcome>, FirstTries) {
    let mut tries = FirstTries::default();
    let mut outcomes = Vec::with_capacity(items.len());
    for (e, fresh) in items.iter().zip(fresh) {
        if !fresh {
            outcomes.push(PublishOutcome::Conflict);
            continue;
        }
        let mut lanes = Vec::new();
        let subscribers = webhooks
            .iter()
            .filter(|w| w.account_id == e.account_id && subscribed(&w.event_types, &e.event_type))
            .filter(|w| w.filter.as_ref().is_none_or(|f| f.matches(&e.payload)));
        for (n, w) in subscribers.enumerate() {
            if n == 0 {
                let snapshot = crate::snapshot(e);
                tries.bodies.push(snapshot.to_string());
                tries.snapshots.push(snapshot);
            }
            tries.body_of.push(tries.bodies.len() - 1);
            tries.ids.push(ids::attempt_id());
            tries.event_ids.push(e.id.clone());
            tries.webhook_ids.push(w.id.clone());
            tries.account_ids.push(e.account_id.clone());
            tries.at.push(e.created_at);
            tries.due.push(first_due(e.created_at, w.paused_until));
            tries.traces.push(e.trace_parent.clone());
            lanes.push(w.id.clone());
        }
        outcomes.push(PublishOutcome::Created {
            webhooks: lanes,
            handed: Vec::new(),
        });
    }
    (outcomes, tries)
}

/// Which of a batch's outcomes were recorded, from the (try, worker) pairs
/// the database recorded: each pair answers the first outcome of that try
/// from that worker. Of one try finished twice in a batch, by one worker
/// or by a worker that lost its lease beside the one holding it, only the
/// outcome recorded hears true; the other answers false, as it would alone.
pub(crate) fn recorded(items: &[&AttemptResult], pairs: Vec<(String, String)>) -> Vec<bool> {
    let mut pairs: HashSet<(String, String)> = pairs.into_iter().collect();
    items
        .iter()
        .map(|r| pairs.remove(&(r.attempt_id.clone(), r.worker_id.clone())))
        .collect()
}

/// The accounts of the events stored now, each once: whose webhooks a
/// batch reads.
pub(crate) fn fresh_accounts(items: &[&NewEvent], fresh: &[bool]) -> Vec<String> {
    let mut accounts: Vec<String> = items
        .iter()
        .zip(fresh)
        .filter(|(_, f)| **f)
        .map(|(e, _)| e.account_id.clone())
        .collect();
    accounts.sort();
    accounts.dedup();
    accounts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: &str, account: &str, kind: &str) -> NewEvent {
        NewEvent {
            id: id.into(),
            client_id: None,
            account_id: account.into(),
            event_type: kind.into(),
            payload: serde_json::json!({ "of": id }),
            producer: "p".into(),
            created_at: Utc::now(),
            trace_parent: None,
        }
    }

    fn webhook(id: &str, account: &str, types: &[&str]) -> Subscriber {
        Subscriber {
            id: id.into(),
            account_id: account.into(),
            event_types: types.iter().map(|t| t.to_string()).collect(),
            paused_until: None,
            filter: None,
        }
    }

    #[test]
    fn each_try_carries_its_own_events_snapshot_built_once_per_event() {
        let (a, b, c) = (
            event("ev_a", "acct_1", "order.paid"),
            event("ev_b", "acct_2", "order.paid"),
            event("ev_c", "acct_1", "user.created"),
        );
        let hooks = [
            webhook("wh_all", "acct_1", &["*"]),
            webhook("wh_orders", "acct_1", &["order.*"]),
        ];
        let (_, tries) = fan_out(&[&a, &b, &c], &[true, true, true], &hooks);
        assert_eq!(tries.event_ids, ["ev_a", "ev_a", "ev_c"]);
        assert_eq!(tries.bodies.len(), 2, "one body per event with tries");
        for (i, event_id) in tries.event_ids.iter().enumerate() {
            let body: serde_json::Value =
                serde_json::from_str(&tries.bodies[tries.body_of[i]]).expect("json");
            assert_eq!(body["data"]["of"], event_id.as_str(), "try {i}");
        }
    }

    #[test]
    fn a_webhook_s_payload_filter_keeps_events_it_does_not_match_from_it() {
        let (gold, silver, none) = (
            NewEvent {
                payload: serde_json::json!({"tier": "gold"}),
                ..event("ev_g", "acct_1", "t")
            },
            NewEvent {
                payload: serde_json::json!({"tier": "silver"}),
                ..event("ev_s", "acct_1", "t")
            },
            event("ev_n", "acct_1", "t"),
        );
        let filtered = Subscriber {
            filter: PayloadFilter::parse(
                &serde_json::json!({"pointer": "/tier", "equals": "gold"}),
            )
            .ok(),
            ..webhook("wh_gold", "acct_1", &["*"])
        };
        let hooks = [filtered, webhook("wh_all", "acct_1", &["*"])];
        let (outcomes, tries) = fan_out(&[&gold, &silver, &none], &[true; 3], &hooks);
        assert_eq!(tries.webhook_ids, ["wh_gold", "wh_all", "wh_all", "wh_all"]);
        assert_eq!(
            outcomes[1],
            PublishOutcome::Created {
                webhooks: vec!["wh_all".into()],
                handed: Vec::new(),
            }
        );
    }
}
