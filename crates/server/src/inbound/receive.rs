//! The inbound path's decisions for one request: which integration it is
//! for and whether the client may be heard at all (`admit`), then verify the
//! raw bytes before anything is stored, deduplicate (Redis marker first, the
//! database's uniqueness behind it) and commit the event with its first
//! forwarding job (`accept`). The HTTP handler (`http/receive.rs`) reads the
//! body between the two, so a refused client costs no body read.

use super::integrations::keepable_header;
use super::ready::{OpenSecrets, Ready};
use super::{body, dedup};
use crate::shared::activity::Count;
use crate::shared::error::{ApiError, ApiResult};
use crate::shared::state::AppState;
use crate::shared::traces::Kind;
use axum::http::HeaderMap;
use hookwarden_core::client_addr::limit_key;
use hookwarden_core::ids;
use hookwarden_core::inbound::{self, Headers};
use hookwarden_store::ingress::{NewInbound, RecordOutcome};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::net::IpAddr;
use std::sync::Arc;

/// What became of an accepted request: the stored event (the earlier one,
/// for a duplicate).
pub struct Received {
    pub event_id: String,
    pub duplicate: bool,
}

struct HeaderView<'a>(&'a HeaderMap);

impl Headers for HeaderView<'_> {
    fn header(&self, name: &str) -> Option<&str> {
        self.0.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A request admitted to be read: its integration, ready, and the client.
pub struct Admitted {
    integration: Arc<Ready>,
    scheme: Arc<inbound::Scheme>,
    provider: String,
    source_ip: IpAddr,
    /// The delivery id the headers claim, before verification (log lines only).
    claimed_delivery: Option<String>,
}

/// Finds the integration and applies what costs nothing to check: an unknown
/// name is limited like a failed authentication, then the per-provider and
/// source limit, then source pinning. Nothing here reads the body.
pub async fn admit(
    state: &AppState,
    provider: String,
    source_ip: IpAddr,
    headers: &HeaderMap,
) -> ApiResult<Admitted> {
    // Integrations are held in memory: a request for none costs no query,
    // and a client naming many is limited like one failing authentication.
    let Some(integration) = state
        .integrations
        .get(state.store.as_ref(), &provider)
        .await
        .map_err(|e| ApiError::internal("load integration", e))?
    else {
        state.activity.count(Count::Refused);
        state
            .refusals
            .unknown_name(source_ip)
            .map_err(ApiError::RateLimited)?;
        return Err(ApiError::NotFound);
    };
    // Limits first: nothing below (audit, body, verification) is done for
    // a client over its share.
    state
        .limiter
        .check(
            &format!("ingress:{provider}:{}", limit_key(source_ip)),
            integration.rate_limit,
        )
        .await?;
    let scheme = integration
        .scheme
        .as_ref()
        .map(Arc::clone)
        .map_err(|e| ApiError::internal("integration scheme", e))?;
    // Known before verification from headers alone (never the body), for the log line.
    let claimed_delivery = dedup::header_id(
        &scheme,
        integration.row.idempotency_header.as_deref(),
        headers,
    );
    let admitted = Admitted {
        integration,
        scheme,
        provider,
        source_ip,
        claimed_delivery,
    };
    // Source pinning is an extra layer, never the only one: verification follows.
    if !admitted.integration.admits(source_ip) {
        admitted.refuse(state, "source_not_allowed");
        return Err(ApiError::Forbidden(
            "source address is not allowed for this provider".into(),
        ));
    }
    Ok(admitted)
}

impl Admitted {
    /// A refusal is logged, counted (metric, activity) and noted for the
    /// aggregated audit trail: no durable write of its own.
    fn refuse(&self, state: &AppState, reason: &'static str) {
        let first = state.refusals.note(&self.provider, reason, self.source_ip);
        state.activity.count(Count::Refused);
        log_refused(
            &self.provider,
            self.claimed_delivery.as_deref(),
            reason,
            first,
        );
        metrics::counter!("hookwarden_inbound_total", "provider" => self.provider.clone(), "outcome" => reason).increment(1);
    }
}

/// Verifies the raw request, then deduplicates and stores it.
pub async fn accept(
    state: &AppState,
    admitted: Admitted,
    headers: &HeaderMap,
    raw: axum::body::Bytes,
) -> ApiResult<Received> {
    let Admitted {
        ref integration,
        ref scheme,
        ref provider,
        source_ip,
        ..
    } = admitted;
    let secrets = integration
        .secrets(&state.keyring)
        .map_err(|e| ApiError::internal("open integration secrets", e))?;
    let integration = &integration.row;
    let now = state.clock.now();
    let verified = verify_off_runtime(
        scheme.clone(),
        secrets,
        headers,
        raw.clone(),
        now.timestamp(),
        integration.tolerance_seconds,
    )
    .await?;
    match verified {
        Err(e) => {
            admitted.refuse(state, refusal_reason(&e));
            return Err(ApiError::InvalidSignature);
        }
        // In memory only: the receive path makes no write for this.
        Ok(v) => {
            if let Some(i) = v.secret_index {
                state.integrations.verified.note(provider, i, now);
            }
        }
    }

    // Checked as strictly as a full parse, without building one.
    let shape = body::shape(&raw).map_err(|e| {
        ApiError::Validation(match e {
            body::NotAnObject::ReservedKey => body::reserved_key_refusal(),
            _ => "body must be a JSON object".into(),
        })
    })?;
    let body_sha256 = hex::encode(Sha256::digest(&raw));
    let dedup::Identity {
        dedup_key,
        delivery_id,
    } = dedup::identity(
        scheme,
        integration.idempotency_header.as_deref(),
        headers,
        shape.id.as_deref(),
        &body_sha256,
    );

    // Redis first: a known delivery answers without touching the database.
    if let Some(redis) = &state.redis {
        match redis.dedup_get(provider, &dedup_key).await {
            Ok(Some(event_id)) => {
                return Ok(duplicate(state, provider, delivery_id.as_deref(), event_id))
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error.message = %format!("{e:#}"), "Redis dedup marker unavailable; the database decides")
            }
        }
    }
    let scheme_header = admitted.integration.scheme_header();
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
    // Only a verified request is traced (an unverified caller cannot make
    // spans); its `traceparent` continues into the stored event and every
    // forwarding of it.
    let mut span = state.traces.start_under(
        "POST /api/v1/webhooks/{provider}",
        Kind::Server,
        crate::shared::traces::header(headers),
    );
    span.set("http.request.method", "POST");
    span.set("http.route", "/api/v1/webhooks/{provider}");
    span.set("hookwarden.integration", provider.as_str());
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
        trace_parent: span.stored(),
    };
    let outcome = state.store.record_inbound(&record).await.map_err(|e| {
        span.fail("the event was not stored");
        ApiError::internal("record inbound event", e)
    })?;
    let stored_id = match &outcome {
        RecordOutcome::Created => event_id.clone(),
        RecordOutcome::Duplicate { event_id } => event_id.clone(),
    };
    if let Some(redis) = &state.redis {
        if let Err(e) = redis.dedup_set(provider, &dedup_key, &stored_id).await {
            tracing::warn!(error.message = %format!("{e:#}"), "setting the Redis dedup marker failed; the database still deduplicates");
        }
    }
    span.set("hookwarden.inbound_event.id", stored_id.as_str());
    span.set(
        "hookwarden.duplicate",
        matches!(outcome, RecordOutcome::Duplicate { .. }),
    );
    match outcome {
        RecordOutcome::Duplicate { event_id } => {
            Ok(duplicate(state, provider, delivery_id.as_deref(), event_id))
        }
        RecordOutcome::Created => {
            state.forward_wake.lanes([provider.clone()]);
            metrics::counter!("hookwarden_inbound_total", "provider" => provider.clone(), "outcome" => "accepted").increment(1);
            state.activity.count(Count::Accepted);
            log_inbound(
                provider,
                delivery_id.as_deref(),
                "accepted",
                &integration.name,
                Some(&event_id),
            );
            Ok(Received {
                event_id,
                duplicate: false,
            })
        }
    }
}

fn duplicate(
    state: &AppState,
    provider: &str,
    delivery_id: Option<&str>,
    event_id: String,
) -> Received {
    metrics::counter!("hookwarden_inbound_total", "provider" => provider.to_owned(), "outcome" => "duplicate").increment(1);
    state.activity.count(Count::Duplicate);
    log_inbound(
        provider,
        delivery_id,
        "duplicate",
        provider,
        Some(&event_id),
    );
    Received {
        event_id,
        duplicate: true,
    }
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
    scheme: Arc<inbound::Scheme>,
    secrets: OpenSecrets,
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
