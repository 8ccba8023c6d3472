//! Appending to the audit trail from handlers and workers. Details never hold
//! secrets; a failure to append is logged loudly (the change itself stands).

use crate::state::AppState;
use chrono::Utc;
use hookwarden_store::ingress::NewAudit;
use serde_json::Value;

pub async fn record(
    state: &AppState,
    actor: &str,
    action: &str,
    target: &str,
    request_id: &str,
    details: Value,
) {
    let entry = NewAudit {
        actor: actor.to_owned(),
        action: action.to_owned(),
        target: target.to_owned(),
        request_id: request_id.to_owned(),
        details,
    };
    if let Err(e) = state.store.append_audit(&entry, Utc::now()).await {
        tracing::error!(audit.action = action, audit.target = target, error.message = %e, "appending to the audit trail failed");
    }
}
