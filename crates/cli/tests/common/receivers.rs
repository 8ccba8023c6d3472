//! Receivers standing in for customers' endpoints: one that records each
//! delivery, one that tallies deliveries per id and catches the same id
//! received twice at once.

use axum::body::Bytes;
use axum::http::HeaderMap;
use serde_json::Value;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Records the `webhook-id` of each delivery; answers slowly so work piles up.
pub async fn receiver(delay: Duration) -> (u16, Arc<Mutex<Vec<(String, String)>>>) {
    let seen: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let s = seen.clone();
    let app = axum::Router::new().fallback(move |headers: HeaderMap, body: Bytes| {
        let s = s.clone();
        async move {
            tokio::time::sleep(delay).await;
            let id = headers
                .get("webhook-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            s.lock()
                .expect("lock")
                .push((id, String::from_utf8_lossy(&body).into_owned()));
            "ok"
        }
    });
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (port, seen)
}
/// Counts deliveries per `webhook-id` and the most ever in flight for one id.
#[derive(Default)]
pub struct Tally {
    pub received: std::collections::HashMap<String, usize>,
    pub in_flight: std::collections::HashMap<String, usize>,
    pub max_in_flight_one_id: usize,
    /// Ids that were being received twice at once, and at what time, to
    /// find them in the server's logs when the assertion fails.
    pub overlaps: Vec<(String, chrono::DateTime<chrono::Utc>)>,
}

/// Ends one request's "in flight" mark even when the request is cancelled
/// (a sender killed mid-request drops the handler).
pub struct InFlight {
    pub tally: Arc<Mutex<Tally>>,
    pub id: String,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut g = self.tally.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = g.in_flight.get_mut(&self.id) {
            *n = n.saturating_sub(1);
        }
    }
}

pub async fn tallying_receiver(delay: Duration) -> (u16, Arc<Mutex<Tally>>) {
    let tally: Arc<Mutex<Tally>> = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let t = tally.clone();
    let app = axum::Router::new().fallback(move |headers: HeaderMap, body: Bytes| {
        let t = t.clone();
        async move {
            // The producer's own reference when the payload carries one (a
            // NATS publisher learns no eventId: it knows its events by the
            // id it gave, and receivers see hookwarden's own `webhook-id`),
            // else the `webhook-id`.
            let reference = serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|v| v["data"]["ref"].as_str().map(str::to_owned));
            let id = reference.unwrap_or_else(|| {
                headers
                    .get("webhook-id")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_owned()
            });
            {
                let mut g = t.lock().expect("lock");
                let n = g.in_flight.entry(id.clone()).or_default();
                *n += 1;
                let now = *n;
                g.max_in_flight_one_id = g.max_in_flight_one_id.max(now);
                if now > 1 {
                    g.overlaps.push((id.clone(), chrono::Utc::now()));
                }
            }
            let _mark = InFlight {
                tally: t.clone(),
                id: id.clone(),
            };
            tokio::time::sleep(delay).await;
            *t.lock().expect("lock").received.entry(id).or_default() += 1;
            "ok"
        }
    });
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (port, tally)
}
