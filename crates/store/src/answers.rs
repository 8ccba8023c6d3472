//! What group-committed writes answer, item by item, decided the same way on
//! both dialects once each has read what its SQL found: an inbound event is
//! new or a duplicate, a published event is new, the same one again, or a
//! conflict, and a new event's first try is due at once or after its
//! endpoint's pause.

use crate::error::{Result, StoreError};
use crate::ingress::{NewInbound, RecordOutcome};
use crate::model::{NewEvent, PublishOutcome};
use crate::rows::{self, Columns};
use chrono::{DateTime, Utc};
use std::collections::{HashMap, HashSet};

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
