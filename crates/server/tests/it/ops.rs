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

/// Every `hookwarden_` series in `/metrics` has a `# HELP`; answers are
/// counted by route template and status (404 and 429 visible, no raw path);
/// failed tries by reason class; the forwarding backlog is a gauge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_explain_themselves_and_count_answers_by_route() {
    let app = TestApp::with(
        Backend::Sqlite,
        Options {
            rate_limit: 1,
            ..Options::default()
        },
    )
    .await;
    let rx = Receiver::start().await;
    rx.set_default(Reply::Status(503));
    app.create_webhook("acct_m1", &rx.url("/down"), &["*"])
        .await;
    app.publish("acct_m1", "t", json!({})).await;
    app.deliver_until(Duration::from_secs(10), || rx.count() == 1)
        .await;

    let t = app.tenant("acct_m2");
    let (first, _, _) = app.get("/v1/webhooks/wh_metricsprobe", &t).await;
    assert_eq!(first, 404);
    let (second, _, _) = app.get("/v1/webhooks/wh_metricsprobe", &t).await;
    assert_eq!(second, 429);
    let (unmatched, _, _) = app.get("/no/such/route/probe7341", &t).await;
    assert_eq!(unmatched, 404);

    let metrics = app
        .http
        .get(format!("http://{}/metrics", app.ops))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let series = |name: &str, labels: &[&str]| {
        metrics.lines().any(|l| {
            l.starts_with(&format!("{name}{{")) && labels.iter().all(|want| l.contains(want))
        })
    };
    let route = r#"route="/v1/webhooks/{id}""#;
    assert!(
        series(
            "hookwarden_http_responses_total",
            &[route, r#"status="404""#, r#"method="GET""#]
        ),
        "{metrics}"
    );
    assert!(
        series(
            "hookwarden_http_responses_total",
            &[route, r#"status="429""#]
        ),
        "{metrics}"
    );
    assert!(
        series(
            "hookwarden_http_responses_total",
            &[r#"route="unmatched""#, r#"status="404""#]
        ),
        "{metrics}"
    );
    assert!(!metrics.contains("wh_metricsprobe") && !metrics.contains("probe7341"));
    assert!(
        series(
            "hookwarden_delivery_failures_total",
            &[r#"reason="http_5xx""#]
        ),
        "{metrics}"
    );
    for gauge in [
        "hookwarden_forward_queue_pending",
        "hookwarden_forward_queue_oldest_due_seconds",
        "hookwarden_delivery_queue_pending",
    ] {
        assert!(
            metrics.lines().any(|l| l.starts_with(gauge)),
            "{gauge} missing"
        );
    }

    let mut names: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("hookwarden_"))
        .filter_map(|l| l.split(['{', ' ']).next())
        .collect();
    names.dedup();
    assert!(names.len() >= 8, "{names:?}");
    for name in names {
        let described = [
            name,
            name.trim_end_matches("_bucket"),
            name.trim_end_matches("_sum"),
            name.trim_end_matches("_count"),
        ]
        .iter()
        .any(|base| metrics.contains(&format!("# HELP {base} ")));
        assert!(described, "{name} has no # HELP");
    }
}
