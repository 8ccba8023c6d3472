//! An endpoint's health across replicas and over days: the breaker counted
//! in the database, auto-disable after `HOOKWARDEN_DISABLE_AFTER`, and the
//! tenant's recovery after an outage.

use crate::helpers::*;
use axum::http::StatusCode;
use hookwarden_store::on_both;
use serde_json::{json, Value};
use std::time::Duration;

on_both!(
    an_endpoint_failing_every_try_for_disable_after_is_disabled_and_its_tries_are_dead,
    recovering_an_endpoint_tries_each_failed_delivery_since_then_once,
    recover_is_refused_for_another_account_a_disabled_endpoint_or_a_bad_time,
);

const WAIT: Duration = Duration::from_secs(20);

async fn webhook(app: &TestApp, account: &str, id: &str) -> Value {
    let (status, body, _) = app
        .get(&format!("/v1/webhooks/{id}"), &app.tenant(account))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

/// Five failures in a row pause an endpoint, whichever replicas made them:
/// three on one and two on the other pause it, and both show the same
/// `pausedUntil` (counted per process, neither would have).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_on_two_replicas_pause_the_endpoint_after_five_in_all() {
    let opts = || Options {
        retry_schedule: "1h",
        max_in_flight_per_endpoint: Some(3),
        ..Default::default()
    };
    let a = TestApp::with(Backend::Postgres, opts()).await;
    let b = TestApp::with(
        Backend::Postgres,
        Options {
            shared: Some((a.database_url.clone(), a.master_key.clone())),
            ..opts()
        },
    )
    .await;
    let down = Receiver::start().await;
    down.set_default(Reply::Status(500));
    let (id, _) = a.create_webhook("acct_a", &down.url("/h"), &["*"]).await;
    for n in 0..5 {
        a.publish("acct_a", "t", json!({"n": n})).await;
    }
    assert_eq!(a.dispatcher.run_once().await.expect("step"), 3);
    assert!(webhook(&a, "acct_a", &id).await["pausedUntil"].is_null());
    assert_eq!(b.dispatcher.run_once().await.expect("step"), 2);
    assert_eq!(down.count(), 5);
    let mut seen = Value::Null;
    for _ in 0..40 {
        seen = webhook(&a, "acct_a", &id).await;
        if seen["pausedUntil"].is_string() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(seen["pausedUntil"].is_string(), "paused: {seen}");
    assert!(seen["failingSince"].is_string(), "{seen}");
    let other = webhook(&b, "acct_a", &id).await;
    assert_eq!(other["pausedUntil"], seen["pausedUntil"], "one pause");
    a.stop().await;
    b.stop().await;
}

async fn an_endpoint_failing_every_try_for_disable_after_is_disabled_and_its_tries_are_dead(
    backend: Backend,
) {
    let app = TestApp::with(
        backend,
        Options {
            retry_schedule: "1h",
            customize: Some(Box::new(|raw| {
                raw.set("disable_after", "1m");
            })),
            ..Default::default()
        },
    )
    .await;
    let t = app.tenant("acct_a");
    let rx = Receiver::start().await;
    rx.set_default(Reply::Status(500));
    let (id, _) = app.create_webhook("acct_a", &rx.url("/h"), &["*"]).await;
    app.publish("acct_a", "t", json!({"n": 1})).await;
    assert_eq!(app.dispatcher.run_once().await.expect("step"), 1);
    let first_failure = webhook(&app, "acct_a", &id).await;
    assert!(first_failure["failingSince"].is_string(), "{first_failure}");
    assert_eq!(first_failure["disabled"], false);

    // Less than a minute of failures: still enabled.
    app.clock.advance(Duration::from_secs(30));
    app.publish("acct_a", "t", json!({"n": 2})).await;
    assert_eq!(app.dispatcher.run_once().await.expect("step"), 1);
    let hook = webhook(&app, "acct_a", &id).await;
    assert_eq!(hook["disabled"], false, "{hook}");
    assert_eq!(
        hook["failingSince"], first_failure["failingSince"],
        "the first failure's time is kept"
    );

    // A try that fails past the minute disables it; every pending try is a
    // dead letter with the reason.
    app.publish("acct_a", "t", json!({"n": 3})).await;
    app.publish("acct_a", "t", json!({"n": 4})).await;
    app.clock.advance(Duration::from_secs(31));
    assert!(app.dispatcher.run_once().await.expect("step") >= 1);
    let hook = webhook(&app, "acct_a", &id).await;
    assert_eq!(hook["disabled"], true, "{hook}");
    let reason = hook["disabledReason"].as_str().expect("reason");
    assert!(reason.contains("every try failed since"), "{reason}");
    let tries = app.deliveries("acct_a", &id).await;
    assert!(
        tries.iter().all(|t| t["status"] != "pending"),
        "no try left pending: {tries:?}"
    );
    let dead_with_reason = tries
        .iter()
        .filter(|t| t["status"] == "dead" && t["error"].as_str() == Some(reason))
        .count();
    assert!(dead_with_reason >= 2, "{tries:?}");
    let tried = rx.count();
    app.publish("acct_a", "t", json!({"n": 5})).await;
    app.clock.advance(Duration::from_secs(7200));
    assert_eq!(app.dispatcher.run_once().await.expect("step"), 0);
    assert_eq!(rx.count(), tried, "nothing more is sent");

    // The tenant enables it again: healthy, its failures forgotten.
    let (status, body, _) = app
        .put(
            &format!("/v1/webhooks/{id}"),
            &t,
            json!({"disabled": false}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["disabled"], false);
    assert!(body["failingSince"].is_null(), "{body}");
    assert!(body["disabledReason"].is_null(), "{body}");
    app.stop().await;
}

async fn recovering_an_endpoint_tries_each_failed_delivery_since_then_once(backend: Backend) {
    let app = TestApp::with(
        backend,
        Options {
            retry_schedule: "100ms",
            ..Default::default()
        },
    )
    .await;
    let t = app.tenant("acct_a");
    let rx = Receiver::start().await;
    rx.set_default(Reply::Status(500));
    let (id, _) = app.create_webhook("acct_a", &rx.url("/h"), &["*"]).await;
    // Tries are found by their ids' time, which is the real clock's.
    let since = chrono::Utc::now() - chrono::Duration::seconds(1);
    // Two events fail both tries: dead letters.
    let mut events = Vec::new();
    for n in 0..2 {
        events.push(app.publish("acct_a", "t", json!({"n": n})).await);
    }
    app.deliver_until(WAIT, || rx.count() == 4).await;
    let dead = app
        .deliveries("acct_a", &id)
        .await
        .into_iter()
        .filter(|t| t["status"] == "dead")
        .count();
    assert_eq!(dead, 2, "two dead letters");

    // The endpoint is back; its tenant recovers it.
    rx.set_default(Reply::Status(200));
    let path = format!("/v1/webhooks/{id}/recover");
    let (status, body, _) = app
        .post(&path, &t, json!({"since": since.to_rfc3339()}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body, json!({"requeued": 2, "more": false}));
    app.deliver_until(WAIT, || rx.count() == 6).await;
    let ok: Vec<String> = rx.received()[4..]
        .iter()
        .map(|r| r.headers["webhook-id"].to_str().expect("id").to_owned())
        .collect();
    let mut want = events.clone();
    want.sort();
    let mut got = ok.clone();
    got.sort();
    assert_eq!(got, want, "each failed delivery once");

    // Again at once: one recovery per endpoint per minute.
    let (status, body, headers) = app
        .post(&path, &t, json!({"since": since.to_rfc3339()}))
        .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert!(headers.get("retry-after").is_some());
    // A minute on: nothing left to recover; the pair is not re-queued twice.
    app.clock.advance(Duration::from_secs(61));
    let (status, body, _) = app
        .post(&path, &t, json!({"since": since.to_rfc3339()}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["requeued"], 0, "{body}");
    assert_eq!(app.dispatcher.run_once().await.expect("step"), 0);

    // A time after the failures recovers nothing.
    rx.set_default(Reply::Status(500));
    app.publish("acct_a", "t", json!({"n": 9})).await;
    app.deliver_until(WAIT, || rx.count() == 8).await;
    app.clock.advance(Duration::from_secs(61));
    let later = chrono::Utc::now() + chrono::Duration::seconds(60);
    let (_, body, _) = app
        .post(&path, &t, json!({"since": later.to_rfc3339()}))
        .await;
    assert_eq!(body["requeued"], 0, "{body}");

    let (_, audit, _) = app
        .operator(
            reqwest::Method::GET,
            "/api/v1/audit-entries?limit=100",
            None,
        )
        .await;
    let recovered = audit["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|e| e["action"] == "webhook.recovered")
        .count();
    assert_eq!(recovered, 3);
    app.stop().await;
}

async fn recover_is_refused_for_another_account_a_disabled_endpoint_or_a_bad_time(
    backend: Backend,
) {
    let app = TestApp::spawn(backend).await;
    let t = app.tenant("acct_a");
    let (id, _) = app
        .create_webhook("acct_a", "https://example.com/h", &["*"])
        .await;
    let path = format!("/v1/webhooks/{id}/recover");
    let since = json!({"since": "2026-01-01T00:00:00Z"});
    let (status, _, _) = app.post(&path, &app.tenant("acct_b"), since.clone()).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "another account's webhook");
    let (status, _, _) = app
        .post("/v1/webhooks/wh_missing/recover", &t, since.clone())
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let reader = app.sign(&app.claims(Some("acct_a"), "webhooks:read"));
    let (status, _, _) = app.post(&path, &reader, since.clone()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    for bad in [
        json!({}),
        json!({"since": "yesterday"}),
        json!({"since": 5}),
        json!({"since": "2026-01-01T00:00:00Z", "other": 1}),
    ] {
        let (status, body, _) = app.post(&path, &t, bad.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
    }
    let (status, body, _) = app
        .put(&format!("/v1/webhooks/{id}"), &t, json!({"disabled": true}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body, _) = app.post(&path, &t, since).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    app.stop().await;
}

/// One recovery per endpoint per minute holds across replicas: the second
/// replica asked right after the first answers 429, as the first would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_recovery_a_minute_holds_across_replicas() {
    let a = TestApp::spawn(Backend::Postgres).await;
    let b = a.replica(Backend::Postgres).await;
    let rx = Receiver::start().await;
    let (id, _) = a.create_webhook("acct_a", &rx.url("/h"), &["*"]).await;
    let path = format!("/v1/webhooks/{id}/recover");
    let since = json!({"since": (chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339()});
    // Both in one minute: not in its last seconds.
    early_in_a_minute(10).await;
    let (status, body, _) = a.post(&path, &a.tenant("acct_a"), since.clone()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let (status, body, headers) = b.post(&path, &b.tenant("acct_a"), since).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert!(headers.get("retry-after").is_some());
    b.stop().await;
    a.stop().await;
}
