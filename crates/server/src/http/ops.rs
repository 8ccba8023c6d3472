//! The internal ops listener: liveness, readiness of real dependencies, and
//! Prometheus metrics.

use crate::state::AppState;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use chrono::Utc;
use serde_json::json;

pub async fn health() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

pub async fn ready(State(state): State<AppState>) -> (StatusCode, Json<serde_json::Value>) {
    let db_ok = tokio::time::timeout(std::time::Duration::from_secs(2), state.store.ping())
        .await
        .map(|r| r.is_ok())
        .unwrap_or(false);
    let mut checks = json!({"database": if db_ok { "ok" } else { "down" }});
    let mut ok = db_ok;
    if let Some(nats) = &state.nats {
        let up = nats.connection_state() == async_nats::connection::State::Connected;
        checks["nats"] = json!(if up { "ok" } else { "down" });
        ok &= up;
    }
    if let Some(redis) = &state.redis {
        // Redis is an accelerator: down means degraded, reported, not unready.
        checks["redis"] = json!(if redis.ping().await { "ok" } else { "degraded" });
    }
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(json!({"status": if ok { "ready" } else { "not ready" }, "checks": checks})),
    )
}

pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    // Queue depths are read at scrape time from the database (the source of
    // truth): the delivery queue and the forwarding queue.
    if let Ok(stats) = state.store.queue_stats(Utc::now()).await {
        metrics::gauge!(crate::metrics::QUEUE_PENDING).set(stats.pending as f64);
        metrics::gauge!(crate::metrics::QUEUE_DUE).set(stats.due as f64);
        metrics::gauge!(crate::metrics::QUEUE_OLDEST_DUE).set(stats.oldest_due_age_seconds);
    }
    if let Ok(status) = state.store.processing_status(Utc::now()).await {
        let pending = status
            .by_status
            .iter()
            .find(|(s, _)| s == "pending")
            .map_or(0, |(_, n)| *n);
        metrics::gauge!(crate::metrics::FORWARD_QUEUE_PENDING).set(pending as f64);
        metrics::gauge!(crate::metrics::FORWARD_QUEUE_OLDEST_DUE)
            .set(status.oldest_pending_age_seconds);
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        crate::metrics::handle().render(),
    )
}

/// The public keys of identity tokens on forwarded requests.
pub async fn jwks(State(state): State<AppState>) -> Json<serde_json::Value> {
    Json(state.identity.jwks())
}
