//! Retention end to end: history past `HOOKWARDEN_RETENTION` is pruned, the
//! rest (and anything still to be delivered) kept, and metrics say so.

use crate::helpers::*;
use axum::http::StatusCode;
use hookwarden_server::shared::retention::prune_once;
use hookwarden_store::on_both;
use reqwest::Method;
use serde_json::json;
use std::time::Duration;

on_both!(history_past_retention_is_pruned_and_what_waits_is_kept);

const DAY: Duration = Duration::from_secs(86_400);

async fn history_past_retention_is_pruned_and_what_waits_is_kept(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let rx = Receiver::start().await;
    let (id, _) = app.create_webhook("acct_a", &rx.url("/h"), &["*"]).await;
    let delivered = app.publish("acct_a", "t", json!({"n": 1})).await;
    app.deliver_until(Duration::from_secs(20), || rx.count() == 1)
        .await;
    // A second endpoint held by the operator after an event was queued for
    // it: that try waits, whatever its age.
    let held_rx = Receiver::start().await;
    let (held, _) = app
        .create_webhook("acct_b", &held_rx.url("/h"), &["*"])
        .await;
    let waiting = app.publish("acct_b", "t", json!({"n": 2})).await;
    let (status, _, _) = app
        .operator(
            Method::POST,
            &format!("/api/v1/outbound/webhooks/{held}/disable"),
            Some(json!({"requestedBy": "ops", "reason": "test"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    let retention = app.state.settings.retention;
    assert_eq!(retention, 30 * DAY, "the default");
    // Not yet old enough: nothing goes.
    let none = prune_once(app.state.store.as_ref(), app.now(), retention)
        .await
        .expect("prune");
    assert_eq!(none.events, 0);
    // A month and a day later.
    app.clock.advance(31 * DAY);
    let done = prune_once(app.state.store.as_ref(), app.now(), retention)
        .await
        .expect("prune");
    assert_eq!((done.events, done.tries), (1, 1), "{done:?}");
    let (status, _, _) = app
        .get(&format!("/v1/events/{delivered}"), &app.tenant("acct_a"))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "pruned");
    assert!(app.deliveries("acct_a", &id).await.is_empty());
    let (status, _, _) = app
        .get(&format!("/v1/events/{waiting}"), &app.tenant("acct_b"))
        .await;
    assert_eq!(status, StatusCode::OK, "still to be delivered: kept");

    let metrics = app
        .http
        .get(format!("http://{}/metrics", app.ops))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("hookwarden_pruned_rows_total{table=\"events\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("hookwarden_oldest_row_age_seconds{table=\"events\"}"));
    app.stop().await;
}
