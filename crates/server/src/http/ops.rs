//! The internal ops listener: liveness, readiness of real dependencies, and
//! Prometheus metrics.

use crate::shared::state::AppState;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde_json::json;

pub async fn health() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// How long a readiness probe waits for the database.
const READY_DB_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Ready when the database (and NATS, when configured) answer. Each failing
/// dependency is named with its reason, in the body and in the logs, so an
/// operator reads "database unavailable", not a bare 503. Redis down and a
/// JWKS URL from which no key set has loaded are `degraded`: reported, and
/// still ready.
pub async fn ready(State(state): State<AppState>) -> (StatusCode, Json<serde_json::Value>) {
    let mut checks = json!({});
    let mut reasons = serde_json::Map::new();
    let db = match tokio::time::timeout(READY_DB_TIMEOUT, state.store.ping()).await {
        Ok(Ok(())) => Ok(()),
        // The store says "database unavailable: …" of connection failures.
        Ok(Err(e)) if e.to_string().starts_with("database unavailable") => Err(e.to_string()),
        Ok(Err(e)) => Err(format!("database unavailable: {e}")),
        Err(_) => Err(format!(
            "database unavailable: no answer within {}s",
            READY_DB_TIMEOUT.as_secs()
        )),
    };
    let mut ok = db.is_ok();
    checks["database"] = json!(if db.is_ok() { "ok" } else { "unavailable" });
    if let Err(why) = db {
        reasons.insert("database".into(), json!(why));
    }
    if let Some(nats) = &state.nats {
        let now = nats.connection_state();
        let up = now == async_nats::connection::State::Connected;
        checks["nats"] = json!(if up { "ok" } else { "unavailable" });
        if !up {
            reasons.insert("nats".into(), json!(format!("NATS unavailable: {now}")));
        }
        ok &= up;
    }
    if let Some(redis) = &state.redis {
        // Redis is an accelerator: down means degraded, reported, not unready.
        let up = redis.ping().await;
        checks["redis"] = json!(if up { "ok" } else { "degraded" });
        if !up {
            reasons.insert(
                "redis".into(),
                json!("Redis unavailable: running on local rate limits and database dedup"),
            );
        }
    }
    if let Some(status) = state.jwt.url_status() {
        // The JWKS URL only serves tokens of the tenant and producer APIs:
        // while no key set has loaded, those refuse tokens (401), but the
        // ingress and delivery work, so the replica stays in service.
        checks["jwks"] = json!(if status.is_ok() { "ok" } else { "degraded" });
        if let Err(why) = status {
            reasons.insert("jwks".into(), json!(why));
        }
    }
    for (dependency, why) in &reasons {
        let why = why.as_str().unwrap_or_default();
        let verdict = if dependency == "redis" || dependency == "jwks" {
            "degraded"
        } else {
            "not ready"
        };
        tracing::warn!(dependency = %dependency, "{verdict}: {why}");
    }
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let mut body = json!({"status": if ok { "ready" } else { "not ready" }, "checks": checks});
    if !reasons.is_empty() {
        body["reasons"] = serde_json::Value::Object(reasons);
    }
    (status, Json(body))
}

pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    // Queue depths are read at scrape time from the database (the source of
    // truth): the delivery queue and the forwarding queue.
    if let Ok(stats) = state.store.queue_stats(state.clock.now()).await {
        metrics::gauge!(crate::shared::metrics::QUEUE_PENDING).set(stats.pending as f64);
        metrics::gauge!(crate::shared::metrics::QUEUE_DUE).set(stats.due as f64);
        metrics::gauge!(crate::shared::metrics::QUEUE_OLDEST_DUE).set(stats.oldest_due_age_seconds);
    }
    // The backlog alone: counting every job ever made costs each scrape
    // 100–200 ms at 10⁶ jobs.
    if let Ok(backlog) = state.store.forwarding_backlog(state.clock.now()).await {
        metrics::gauge!(crate::shared::metrics::FORWARD_QUEUE_PENDING).set(backlog.pending as f64);
        metrics::gauge!(crate::shared::metrics::FORWARD_QUEUE_OLDEST_DUE)
            .set(backlog.oldest_pending_age_seconds);
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        crate::shared::metrics::handle().render(),
    )
}

/// The public keys of identity tokens on forwarded requests.
pub async fn jwks(State(state): State<AppState>) -> Json<serde_json::Value> {
    Json(state.identity.jwks())
}

/// Liveness of the public listener
///
/// Answers `{"status":"ok"}` while the process serves requests; no credentials. Readiness
/// (database, NATS, Redis) is `/ready` on the ops listener.
#[utoipa::path(get, path = "/api/v1/health", tag = "inbound",
    responses((status = 200, description = "Alive", body = crate::http::openapi::Health)))]
pub async fn api_health() -> Json<crate::http::openapi::Health> {
    Json(crate::http::openapi::Health::ok())
}
