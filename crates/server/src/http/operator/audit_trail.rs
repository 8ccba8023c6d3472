//! The operator's view of the audit trail, oldest first, paged.

use crate::auth::operator::Operator;
use crate::http::cursor;
use crate::http::json::{page_limit, StrictQuery};
use crate::http::openapi::Page;
use crate::shared::error::{ApiError, ApiResult};
use crate::shared::state::AppState;
use axum::extract::State;
use axum::Json;
use hookwarden_store::ingress::AuditRecord;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::internal("operator audit trail", e)
}

/// One entry of the hash-chained audit trail.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditView {
    seq: i64,
    id: String,
    actor: String,
    action: String,
    target: String,
    request_id: String,
    details: Value,
    #[schema(format = DateTime)]
    created_at: String,
    /// This entry's link in the chain, hex: HMAC-SHA256 under the
    /// database's secret audit chain key (stored sealed under the master
    /// key) over the previous entry's link and this entry's fields; entries
    /// written before that key existed keep a plain SHA-256 link.
    /// `GET /api/v1/audit-chain` verifies the chain.
    hash: String,
}

fn audit_view(a: &AuditRecord) -> AuditView {
    AuditView {
        seq: a.seq,
        id: a.id.clone(),
        actor: a.actor.clone(),
        action: a.action.clone(),
        target: a.target.clone(),
        request_id: a.request_id.clone(),
        details: serde_json::from_str::<Value>(&a.details).unwrap_or(Value::Null),
        created_at: a.created_at.clone(),
        hash: a.hash.clone(),
    }
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Page size, 1–100 (default 50).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u32>,
    /// `nextCursor` of the previous page.
    cursor: Option<String>,
}

/// Read the audit trail
///
/// The hash-chained audit trail, oldest first: every management change, verification failure,
/// replay request and secret or key rotation, with actor, action, target, request id and
/// details (never a secret). `hookwarden audit verify` checks the chain.
#[utoipa::path(get, path = "/api/v1/audit-entries", tag = "operator", params(AuditQuery),
    security(("operatorKey" = [])),
    responses((status = 200, description = "The audit trail, oldest first", body = Page<AuditView>)))]
pub async fn audit_entries(
    State(state): State<AppState>,
    _op: Operator,
    StrictQuery(q): StrictQuery<AuditQuery>,
) -> ApiResult<Json<Page<AuditView>>> {
    let after = cursor::seq(q.cursor.as_deref())?;
    let page = state
        .store
        .list_audit(after, page_limit(q.limit)?)
        .await
        .map_err(internal)?;
    Ok(Json(Page::new(
        page.items.iter().map(audit_view).collect(),
        page.next_cursor,
    )))
}
