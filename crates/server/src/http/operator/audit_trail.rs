//! The operator's view of the audit trail: filtered by actor, action, target
//! and time, oldest or newest first, paged by seq.

use crate::auth::operator::Operator;
use crate::http::cursor;
use crate::http::json::{page_limit, StrictQuery};
use crate::http::openapi::Page;
use crate::http::operator::filters::{parse_text, parse_time};
use crate::shared::error::{ApiError, ApiResult};
use crate::shared::state::AppState;
use axum::extract::State;
use axum::Json;
use hookwarden_store::ingress::{AuditQuery, AuditRecord};
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

/// The longest actor, action or target a filter takes.
const MAX_FILTER: usize = 200;

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditParams {
    /// Who acted, exactly (e.g. `operator:ab12cd34/console`, `tenant:acct_1:portal`, `system`).
    actor: Option<String>,
    /// What was done, exactly (`integration.created`), or every action under a prefix
    /// when it ends in `.*` (`integration.*`). No other `*`.
    action: Option<String>,
    /// What it was done to, exactly (e.g. `integration:acme`).
    target: Option<String>,
    /// Created at or after (RFC 3339).
    from: Option<String>,
    /// Created before (RFC 3339).
    to: Option<String>,
    /// `createdAt` (the default: oldest first) or `-createdAt` (newest first); either way
    /// in trail order (`seq`).
    sort: Option<String>,
    /// Page size, 1–100 (default 50).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u32>,
    /// `nextCursor` of the previous page (of the same filters and sort).
    cursor: Option<String>,
}

/// `action` as an exact action or, ending in `.*`, a prefix (the dot kept).
fn parse_action(action: Option<String>) -> ApiResult<(Option<String>, Option<String>)> {
    let Some(action) = parse_text("action", action, MAX_FILTER)? else {
        return Ok((None, None));
    };
    let invalid = || {
        ApiError::Validation(
            "action must be an action or a prefix ending in .* (such as integration.*), \
             with no other *"
                .into(),
        )
    };
    match action.strip_suffix('*') {
        Some(prefix) if prefix.len() > 1 && prefix.ends_with('.') && !prefix.contains('*') => {
            Ok((None, Some(prefix.to_owned())))
        }
        Some(_) => Err(invalid()),
        None if action.contains('*') => Err(invalid()),
        None => Ok((Some(action), None)),
    }
}

/// Read the audit trail
///
/// The hash-chained audit trail: every management change, verification failure, replay
/// request and secret or key rotation, with actor, action, target, request id and details
/// (never a secret). Filtered by `actor`, `target` (exact), `action` (exact, or a prefix such
/// as `integration.*`) and the time created (`from` included, `to` excluded, RFC 3339), all
/// combined; oldest first (`sort=createdAt`, the default) or newest first
/// (`sort=-createdAt`), in trail order (`seq`); paged with `limit` and `cursor`. Any other
/// query parameter is refused (400). `hookwarden audit verify` checks the chain.
#[utoipa::path(get, path = "/api/v1/audit-entries", tag = "operator", params(AuditParams),
    security(("operatorKey" = [])),
    responses((status = 200, description = "The audit entries selected, in trail order", body = Page<AuditView>)))]
pub async fn audit_entries(
    State(state): State<AppState>,
    _op: Operator,
    StrictQuery(q): StrictQuery<AuditParams>,
) -> ApiResult<Json<Page<AuditView>>> {
    let descending = match q.sort.as_deref() {
        None | Some("createdAt") => false,
        Some("-createdAt") => true,
        Some(_) => {
            return Err(ApiError::Validation(
                "sort must be createdAt or -createdAt".into(),
            ))
        }
    };
    let (action, action_prefix) = parse_action(q.action)?;
    let query = AuditQuery {
        actor: parse_text("actor", q.actor, MAX_FILTER)?,
        action,
        action_prefix,
        target: parse_text("target", q.target, MAX_FILTER)?,
        from: parse_time("from", q.from.as_deref())?,
        to: parse_time("to", q.to.as_deref())?,
        after_seq: cursor::seq(q.cursor.as_deref())?,
        descending,
        limit: page_limit(q.limit)?,
    };
    let page = state.store.list_audit(&query).await.map_err(internal)?;
    Ok(Json(Page::new(
        page.items.iter().map(audit_view).collect(),
        page.next_cursor,
    )))
}

#[cfg(test)]
mod tests {
    use super::parse_action;

    #[test]
    fn an_action_is_exact_or_a_prefix_ending_in_dot_star() {
        let parse = |s: &str| parse_action(Some(s.into())).map_err(|e| e.message());
        assert_eq!(
            parse("integration.created"),
            Ok((Some("integration.created".into()), None))
        );
        assert_eq!(
            parse("integration.*"),
            Ok((None, Some("integration.".into())))
        );
        for bad in [
            "",
            "*",
            ".*",
            "integration*",
            "integ*ration.*",
            "a.*.*",
            "*.created",
        ] {
            let e = parse(bad).expect_err(bad);
            assert!(e.starts_with("action "), "{bad}: {e}");
        }
    }
}
