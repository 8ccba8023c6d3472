//! `GET /api/v1/audit-chain`: the audit trail's chain verified by the
//! running service (what `hookwarden audit verify` does against the
//! database), so an operator can check it with the operator key alone.

use crate::auth::operator::Operator;
use crate::http::json::StrictQuery;
use crate::shared::error::{ApiError, ApiResult};
use crate::shared::state::AppState;
use axum::extract::State;
use axum::Json;
use hookwarden_core::audit::Head;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// One verification at a time: it reads the whole trail.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ChainQuery {
    /// A head printed or logged earlier (`SEQ:HASH`): the chain must still
    /// hold that entry unchanged.
    head: Option<String>,
}

/// The verdict.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChainReport {
    /// True when every link holds (and the given head, if any, is held).
    valid: bool,
    /// The chain's head as `SEQ:HASH` when valid: keep it outside the database.
    head: Option<String>,
    /// Entries checked (0 when invalid).
    entries: u64,
    /// Entries linked under the chain key.
    keyed: u64,
    /// The first broken link, when invalid.
    problem: Option<String>,
}

/// Verify the audit trail's hash chain.
///
/// Checks every entry's hash and link (keyed with the chain key) and, with
/// `head`, that the chain still holds that entry: finds edited, removed and
/// rewritten entries. Answers 200 with `valid: false` and the first problem
/// when the chain does not hold; reads the whole trail, one request at a time.
#[utoipa::path(get, path = "/api/v1/audit-chain", tag = "operator", params(ChainQuery),
    security(("operatorKey" = [])),
    responses((status = 200, description = "The verdict", body = ChainReport)))]
pub async fn verify(
    State(state): State<AppState>,
    _op: Operator,
    StrictQuery(q): StrictQuery<ChainQuery>,
) -> ApiResult<Json<ChainReport>> {
    let expected = q
        .head
        .as_deref()
        .map(|h| {
            h.parse::<Head>()
                .map_err(|_| ApiError::Validation("head must be SEQ:HASH".into()))
        })
        .transpose()?;
    let _turn = ONE_AT_A_TIME.lock().await;
    let verdict =
        crate::shared::audit::verify(state.store.as_ref(), &state.keyring, expected.as_ref())
            .await
            .map_err(|e| ApiError::internal("audit chain", e))?;
    Ok(Json(match verdict {
        Ok(v) => ChainReport {
            valid: true,
            head: Some(v.head.to_string()),
            entries: v.entries,
            keyed: v.keyed,
            problem: None,
        },
        Err(e) => ChainReport {
            valid: false,
            head: None,
            entries: 0,
            keyed: 0,
            problem: Some(e.to_string()),
        },
    }))
}
