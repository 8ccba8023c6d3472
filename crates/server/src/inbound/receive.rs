//! `POST /api/v1/webhooks/{provider}`: verify the raw request before anything
//! is stored, then deduplicate (Redis marker first, the database's uniqueness
//! behind it) and commit the event with its first forwarding job.

use super::dedup;
use super::integrations::{keepable_header, open_secrets, scheme_of};
use crate::http::client_addr::ClientAddr;
use crate::http::json::StrictPath;
use crate::shared::error::{ApiError, ApiResult};
use crate::shared::state::AppState;
use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::{Extension, Json};
use chrono::Utc;
use hookwarden_core::client_addr::limit_key;
use hookwarden_core::destination::parse_cidrs;
use hookwarden_core::ids;
use hookwarden_core::inbound::{self, Headers};
use hookwarden_store::ingress::{NewInbound, RecordOutcome};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use zeroize::Zeroizing;

/// What an accepted inbound webhook is answered.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Received {
    /// The stored event (the earlier one, for a duplicate).
    event_id: String,
    /// Present, and true, when this delivery was received before.
    #[serde(skip_serializing_if = "Option::is_none")]
    duplicate: Option<bool>,
}

struct HeaderView<'a>(&'a HeaderMap);

impl Headers for HeaderView<'_> {
    fn header(&self, name: &str) -> Option<&str> {
        self.0.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Receive a provider's webhook
///
/// The endpoint a provider calls for the integration named `provider` (404 when there is none);
/// no credentials but the provider's signature. The request is verified over its raw bytes with
/// the integration's scheme before anything is stored (401 `INVALID_SIGNATURE`, also for a
/// timestamp outside the tolerance window), must come from the integration's allowed address
/// ranges when it has some (403), holds at most 1 MiB (413) of one JSON object (400), and is
/// rate-limited per provider and source address (429). A new delivery is stored and answered
/// 202 `{eventId}`; forwarding to the integration's target follows. A delivery received before
/// (the same provider delivery id, or the same body when the provider sends no id) is answered
/// 200 `{eventId, duplicate: true}`, naming the earlier event.
#[utoipa::path(post, path = "/api/v1/webhooks/{provider}", tag = "inbound",
    params(("provider" = String, Path, description = "Integration name")),
    request_body(content = Object, description = "The provider's JSON object, verified over its raw bytes \
        with the integration's scheme (signature headers as the provider documents them)"),
    responses(
        (status = 202, description = "Verified and stored; forwarding is under way", body = Received),
        (status = 200, description = "Received before: not stored again", body = Received),
        (status = 401, description = "Signature, token or timestamp did not verify", body = crate::http::openapi::ErrorResponse),
        (status = 403, description = "Source address outside the integration's ranges", body = crate::http::openapi::ErrorResponse),
        (status = 429, description = "Too many requests from this provider and address, or too many refused ones (bad signature, outside the source ranges, unknown provider) from this client", body = crate::http::openapi::ErrorResponse)))]
pub async fn receive(
    State(state): State<AppState>,
    StrictPath(provider): StrictPath<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    client: Option<Extension<ClientAddr>>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<(StatusCode, Json<Received>)> {
    let source_ip = client.map_or(peer.ip(), |c| c.0 .0);
    // Integrations are held in memory: a request for none costs no query,
    // and a client naming many is limited like one failing authentication.
    let Some(integration) = state
        .integrations
        .get(state.store.as_ref(), &provider)
        .await
        .map_err(|e| ApiError::internal("load integration", e))?
    else {
        state
            .refusals
            .unknown_name(source_ip)
            .map_err(ApiError::RateLimited)?;
        return Err(ApiError::NotFound);
    };
    // Limits first: nothing below (audit, body, verification) is done for
    // a client over its share.
    let limit = integration
        .rate_limit_per_minute
        .unwrap_or(super::integrations::DEFAULT_RATE_LIMIT)
        .clamp(1, u32::MAX as i64) as u32;
    state
        .limiter
        .check(
            &format!("ingress:{provider}:{}", limit_key(source_ip)),
            limit,
        )
        .await?;
    let scheme =
        scheme_of(&integration).map_err(|e| ApiError::internal("integration scheme", e))?;
    // Known before verification from headers alone (never the body), for the log line.
    let claimed_delivery =
        dedup::header_id(&scheme, integration.idempotency_header.as_deref(), &headers);
    // A refusal is logged, counted and noted for the aggregated audit trail:
    // no durable write of its own.
    let refuse = |reason: &'static str| {
        let first = state.refusals.note(&provider, reason, source_ip);
        log_refused(&provider, claimed_delivery.as_deref(), reason, first);
        metrics::counter!("hookwarden_inbound_total", "provider" => provider.clone(), "outcome" => reason).increment(1);
    };

    // Source pinning is an extra layer, never the only one: verification follows.
    if !integration.allowed_cidrs.is_empty() {
        let nets = parse_cidrs(&integration.allowed_cidrs.join(",")).unwrap_or_default();
        let ip = hookwarden_core::client_addr::canonical(source_ip);
        if !nets.iter().any(|n| n.contains(&ip)) {
            refuse("source_not_allowed");
            return Err(ApiError::Forbidden(
                "source address is not allowed for this provider".into(),
            ));
        }
    }

    crate::http::json::reject_declared_oversize(&headers, crate::shared::limits::MAX_BODY)?;
    let raw = axum::body::to_bytes(body, crate::shared::limits::MAX_BODY)
        .await
        .map_err(|_| ApiError::PayloadTooLarge)?;
    let secrets = open_secrets(&state.keyring, &integration)
        .map_err(|e| ApiError::internal("open integration secrets", e))?;
    let now = Utc::now();
    let verified = verify_off_runtime(
        scheme.clone(),
        secrets,
        &headers,
        raw.clone(),
        now.timestamp(),
        integration.tolerance_seconds,
    )
    .await?;
    match verified {
        Err(e) => {
            refuse(refusal_reason(&e));
            return Err(ApiError::InvalidSignature);
        }
        // In memory only: the receive path makes no write for this.
        Ok(v) => {
            if let Some(i) = v.secret_index {
                state.integrations.verified.note(&provider, i, now);
            }
        }
    }

    let parsed: Value = serde_json::from_slice(&raw)
        .map_err(|_| ApiError::Validation("body must be a JSON object".into()))?;
    if !parsed.is_object() {
        return Err(ApiError::Validation("body must be a JSON object".into()));
    }
    let body_sha256 = hex::encode(Sha256::digest(&raw));
    let dedup::Identity {
        dedup_key,
        delivery_id,
    } = dedup::identity(
        &scheme,
        integration.idempotency_header.as_deref(),
        &headers,
        &parsed,
        &body_sha256,
    );

    // Redis first: a known delivery answers without touching the database.
    if let Some(redis) = &state.redis {
        match redis.dedup_get(&provider, &dedup_key).await {
            Ok(Some(event_id)) => {
                return Ok(duplicate(&provider, delivery_id.as_deref(), event_id))
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error.message = %format!("{e:#}"), "Redis dedup marker unavailable; the database decides")
            }
        }
    }
    let scheme_header = match &scheme {
        inbound::Scheme::HmacSha256 { header, .. } | inbound::Scheme::Token { header } => {
            Some(header.as_str())
        }
        _ => None,
    };
    let kept: serde_json::Map<String, Value> = headers
        .iter()
        .filter(|(k, _)| keepable_header(k.as_str(), scheme_header))
        .filter_map(|(k, v)| {
            v.to_str()
                .ok()
                .map(|v| (k.as_str().to_owned(), Value::String(v.to_owned())))
        })
        .collect();
    let event_id = ids::new_id("ie");
    let correlation_id = headers
        .get("x-correlation-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| ids::is_well_formed_request_id(v))
        .map(str::to_owned)
        .unwrap_or_else(|| event_id.clone());
    let record = NewInbound {
        id: event_id.clone(),
        provider: provider.clone(),
        dedup_key: dedup_key.clone(),
        delivery_id: delivery_id.clone(),
        body_sha256,
        raw_body: raw.to_vec(),
        headers: Value::Object(kept),
        source_ip: Some(source_ip.to_string()),
        correlation_id,
        received_at: now,
        job_id: ids::new_id("job"),
    };
    let outcome = state
        .store
        .record_inbound(&record)
        .await
        .map_err(|e| ApiError::internal("record inbound event", e))?;
    let stored_id = match &outcome {
        RecordOutcome::Created => event_id.clone(),
        RecordOutcome::Duplicate { event_id } => event_id.clone(),
    };
    if let Some(redis) = &state.redis {
        if let Err(e) = redis.dedup_set(&provider, &dedup_key, &stored_id).await {
            tracing::warn!(error.message = %format!("{e:#}"), "setting the Redis dedup marker failed; the database still deduplicates");
        }
    }
    match outcome {
        RecordOutcome::Duplicate { event_id } => {
            Ok(duplicate(&provider, delivery_id.as_deref(), event_id))
        }
        RecordOutcome::Created => {
            state.forward_wake.lanes([provider.clone()]);
            metrics::counter!("hookwarden_inbound_total", "provider" => provider.clone(), "outcome" => "accepted").increment(1);
            log_inbound(
                &provider,
                delivery_id.as_deref(),
                "accepted",
                &integration.name,
                Some(&event_id),
            );
            Ok((
                StatusCode::ACCEPTED,
                Json(Received {
                    event_id,
                    duplicate: None,
                }),
            ))
        }
    }
}

fn duplicate(
    provider: &str,
    delivery_id: Option<&str>,
    event_id: String,
) -> (StatusCode, Json<Received>) {
    metrics::counter!("hookwarden_inbound_total", "provider" => provider.to_owned(), "outcome" => "duplicate").increment(1);
    log_inbound(
        provider,
        delivery_id,
        "duplicate",
        provider,
        Some(&event_id),
    );
    (
        StatusCode::OK,
        Json(Received {
            event_id,
            duplicate: Some(true),
        }),
    )
}

/// The one log line of every inbound request (SPEC §8): provider, delivery
/// id, verification result, target workflow; never a secret or the body.
fn log_inbound(
    provider: &str,
    delivery_id: Option<&str>,
    outcome: &str,
    workflow: &str,
    event_id: Option<&str>,
) {
    tracing::info!(
        provider,
        delivery.id = delivery_id.unwrap_or("-"),
        verification = "passed",
        outcome,
        target.workflow = workflow,
        event.id = event_id.unwrap_or("-"),
        "inbound webhook {outcome}"
    );
}

/// Bodies above this are verified on a blocking thread: hashing a large body
/// under several secrets must not hold an async worker (small ones are
/// cheaper to verify in place than to hand over).
const VERIFY_IN_PLACE_UP_TO: usize = 64 * 1024;

/// Verifies the request; the error is an internal one (a lost blocking task),
/// the inner result the verification's.
async fn verify_off_runtime(
    scheme: inbound::Scheme,
    secrets: Vec<Zeroizing<String>>,
    headers: &HeaderMap,
    raw: axum::body::Bytes,
    now: i64,
    tolerance: i64,
) -> ApiResult<Result<inbound::Verified, inbound::InboundError>> {
    let small = raw.len() <= VERIFY_IN_PLACE_UP_TO;
    let run = move |headers: &HeaderMap| {
        let refs: Vec<&[u8]> = secrets.iter().map(|s| s.as_bytes()).collect();
        inbound::verify(&scheme, &refs, &HeaderView(headers), &raw, now, tolerance)
    };
    if small {
        return Ok(run(headers));
    }
    // At most one large verification per core at once: the blocking pool is
    // shared (DNS lookups of deliveries run there too), and a flood of large
    // bodies must queue here, not there.
    static HEAVY: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    let heavy = HEAVY.get_or_init(|| {
        tokio::sync::Semaphore::new(std::thread::available_parallelism().map_or(2, |n| n.get()))
    });
    let _permit = heavy
        .acquire()
        .await
        .map_err(|e| ApiError::internal("verification permit", e))?;
    let headers = headers.clone();
    tokio::task::spawn_blocking(move || run(&headers))
        .await
        .map_err(|e| ApiError::internal("verification task", e))
}

/// Why verification failed, as the aggregated audit trail and the metrics
/// say it (never a secret or a signature): clock skew tells apart from a
/// wrong secret.
fn refusal_reason(e: &inbound::InboundError) -> &'static str {
    match e {
        inbound::InboundError::MissingHeader(_) => "signature_missing",
        inbound::InboundError::Malformed => "signature_malformed",
        inbound::InboundError::Stale => "timestamp_stale",
        inbound::InboundError::Mismatch => "signature_mismatch",
    }
}

/// The log line of a refused inbound request: the first of its kind in a
/// minute (provider, reason, source prefix) at WARN, the rest at DEBUG, so a
/// flood cannot flood the log either.
fn log_refused(provider: &str, delivery_id: Option<&str>, reason: &str, first: bool) {
    let delivery = delivery_id.unwrap_or("-");
    if first {
        tracing::warn!(
            provider,
            delivery.id = delivery,
            verification = "failed",
            outcome = reason,
            target.workflow = provider,
            "inbound webhook refused"
        );
    } else {
        tracing::debug!(
            provider,
            delivery.id = delivery,
            verification = "failed",
            outcome = reason,
            target.workflow = provider,
            "inbound webhook refused"
        );
    }
}
