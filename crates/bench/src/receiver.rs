//! The bare server on the same framework: the baseline the ingress figures
//! are read against, and the receiver of deliveries, which reads each
//! payload's publish time for the publish-to-delivery latency.

use serde_json::Value;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What the receiver saw of each timed delivery: when it arrived and how
/// long after its publish (both in microseconds).
pub(crate) type Arrivals = Arc<Mutex<Vec<(u64, u64)>>>;

/// A bare server on the same framework: no verification, no storage. It
/// also serves as the receiver of deliveries (answering after `delay`).
pub(crate) async fn start_baseline(
    status: u16,
    delay: Duration,
) -> anyhow::Result<(u16, Arc<AtomicU64>, Arrivals)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let count = Arc::new(AtomicU64::new(0));
    let lat = Arc::new(Mutex::new(Vec::new()));
    let (c, l) = (count.clone(), lat.clone());
    let app = axum::Router::new().fallback(move |body: axum::body::Bytes| {
        let (c, l) = (c.clone(), l.clone());
        async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            c.fetch_add(1, Ordering::Relaxed);
            // Dispatch payloads carry their publish time: publish-to-delivery latency.
            if let Ok(v) = serde_json::from_slice::<Value>(&body) {
                if let Some(sent) = v["data"]["sentUs"].as_u64() {
                    let now = now_us();
                    l.lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push((now, now.saturating_sub(sent)));
                }
            }
            axum::http::StatusCode::from_u16(status).unwrap_or(axum::http::StatusCode::OK)
        }
    });
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((port, count, lat))
}

/// Microseconds since the epoch: publishers stamp payloads with it and the
/// receiver subtracts it.
pub(crate) fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}
