//! The internal ops listener: health, readiness of real dependencies, metrics.

use crate::helpers::*;
use hookwarden_store::on_both;
use serde_json::{json, Value};
use std::time::Duration;

on_both!(ops_listener_reports_health_readiness_and_metrics);

async fn ops_listener_reports_health_readiness_and_metrics(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let ops = |path: &str| format!("http://{}{path}", app.ops);
    let health: Value = app
        .http
        .get(ops("/health"))
        .send()
        .await
        .expect("health")
        .json()
        .await
        .expect("json");
    assert_eq!(health["status"], "ok");
    let resp = app.http.get(ops("/ready")).send().await.expect("ready");
    assert_eq!(resp.status(), 200);
    let ready: Value = resp.json().await.expect("json");
    assert_eq!(ready["checks"]["database"], "ok");

    let rx = Receiver::start().await;
    app.create_webhook("acct_a", &rx.url("/hook"), &["*"]).await;
    app.publish("acct_a", "t", json!({"to": "+15550001234"}))
        .await;
    app.deliver_until(Duration::from_secs(10), || rx.count() == 1)
        .await;
    assert_eq!(rx.received()[0].path, "/hook");
    let metrics = app
        .http
        .get(ops("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    for name in [
        "hookwarden_deliveries_total",
        "hookwarden_delivery_duration_seconds_bucket",
        "hookwarden_delivery_queue_pending",
        "hookwarden_deliveries_in_flight",
        "hookwarden_events_published_total",
        "hookwarden_audit_head_seq",
    ] {
        assert!(metrics.contains(name), "{name} missing from /metrics");
    }
    assert!(!metrics.contains("+15550001234"));
    // The ops routes are not on the public listener, and vice versa.
    assert_eq!(
        app.http
            .get(app.url("/metrics"))
            .send()
            .await
            .expect("public")
            .status(),
        404
    );
    assert_eq!(
        app.http
            .get(ops("/v1/webhooks"))
            .send()
            .await
            .expect("ops")
            .status(),
        404
    );
}
