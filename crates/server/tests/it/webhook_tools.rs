//! The tenant portal's two webhook tools: revealing a signing secret again
//! (audited, never logged) and sending a test event to one endpoint.

use crate::helpers::*;
use crate::logs;
use axum::http::StatusCode;
use hookwarden_store::on_both;
use reqwest::Method;
use serde_json::{json, Value};
use std::time::Duration;

on_both!(
    a_reveal_answers_the_secret_and_is_audited_without_it,
    a_reveal_is_refused_without_write_scope_or_for_another_account,
    a_test_event_reaches_only_that_endpoint_signed,
    a_test_event_is_refused_for_another_account_a_disabled_endpoint_or_another_type,
);

async fn audit_entries(app: &TestApp, action: &str) -> Vec<Value> {
    let (status, audit, _) = app
        .operator(Method::GET, "/api/v1/audit-entries?limit=100", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{audit}");
    audit["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|a| a["action"] == action)
        .cloned()
        .collect()
}

async fn a_reveal_answers_the_secret_and_is_audited_without_it(backend: Backend) {
    logs::capture();
    let app = TestApp::spawn(backend).await;
    let t = app.tenant("acct_a");
    let (id, secret) = app
        .create_webhook("acct_a", "https://example.com/h", &["*"])
        .await;
    let path = format!("/v1/webhooks/{id}/secret");
    let (status, body, headers) = app.get(&path, &t).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body,
        json!({"key": secret}),
        "the secret the create answered"
    );
    assert_eq!(headers["cache-control"], "no-store");

    // During a rotation's grace the previous secret is shown too.
    let (_, rotated, _) = app
        .put(
            &format!("/v1/webhooks/{id}"),
            &t,
            json!({"rotateSecret": true}),
        )
        .await;
    let new_secret = rotated["secret"].as_str().expect("new secret").to_owned();
    let (status, body, _) = app.get(&path, &t).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["key"], new_secret.as_str());
    assert_eq!(body["previousKey"], secret.as_str());
    assert_eq!(body["previousEndsAt"], rotated["secretRotationEndsAt"]);
    // Once the grace is over, the current one only.
    app.clock.advance(Duration::from_secs(25 * 3600));
    let (_, body, _) = app.get(&path, &t).await;
    assert_eq!(body, json!({"key": new_secret}));

    // Each reveal is in the trail: who, which webhook; never the secret.
    let reveals = audit_entries(&app, "webhook.secret_revealed").await;
    assert_eq!(reveals.len(), 3, "{reveals:?}");
    for r in &reveals {
        assert_eq!(r["target"], format!("webhook:{id}"));
        assert_eq!(r["actor"], "tenant:acct_a:acct_a");
    }
    let (_, audit, _) = app
        .operator(Method::GET, "/api/v1/audit-entries?limit=100", None)
        .await;
    let (audit, logs) = (audit.to_string(), logs::captured());
    for key in [&secret, &new_secret] {
        let bare = &key["whsec_".len()..];
        assert!(!audit.contains(bare), "a secret in the audit trail");
        assert!(!logs.contains(bare), "a secret in the logs");
    }
    assert!(
        logs.contains("webhook secret revealed"),
        "the reveal is logged (without the secret)"
    );
    app.stop().await;
}

async fn a_reveal_is_refused_without_write_scope_or_for_another_account(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (id, _) = app
        .create_webhook("acct_a", "https://example.com/h", &["*"])
        .await;
    let path = format!("/v1/webhooks/{id}/secret");
    let reader = app.sign(&app.claims(Some("acct_a"), "webhooks:read"));
    let (status, body, _) = app.get(&path, &reader).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .expect("message")
        .contains("webhooks:write"));
    // Another account's webhook answers exactly as a missing one.
    let (status, theirs, _) = app.get(&path, &app.tenant("acct_b")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, missing, _) = app
        .get("/v1/webhooks/wh_missing/secret", &app.tenant("acct_b"))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        (&theirs["error"]["code"], &theirs["error"]["message"]),
        (&missing["error"]["code"], &missing["error"]["message"])
    );
    let (status, _, _) = app.call(Method::GET, &path, None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        audit_entries(&app, "webhook.secret_revealed")
            .await
            .is_empty(),
        "nothing was revealed"
    );
    app.stop().await;
}

async fn a_test_event_reaches_only_that_endpoint_signed(backend: Backend) {
    // The worker runs: the answer waits for the try.
    let app = TestApp::with(
        backend,
        Options {
            worker: true,
            ..Default::default()
        },
    )
    .await;
    let t = app.tenant("acct_a");
    let rx = Receiver::start().await;
    let sibling = Receiver::start().await;
    // Not subscribed to webhook.test: sent all the same.
    let (id, secret) = app
        .create_webhook("acct_a", &rx.url("/hook"), &["invoice.paid"])
        .await;
    let (sibling_id, _) = app
        .create_webhook("acct_a", &sibling.url("/all"), &["*"])
        .await;
    // No body at all.
    let (status, queued, _) = app
        .call(
            Method::POST,
            &format!("/v1/webhooks/{id}/test"),
            Some(&t),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{queued}");
    let event_id = queued["eventId"].as_str().expect("eventId").to_owned();
    let delivery_id = queued["deliveryId"]
        .as_str()
        .expect("deliveryId")
        .to_owned();
    // The answer carries the try's outcome.
    assert_eq!(queued["delivery"]["id"], delivery_id.as_str());
    assert_eq!(queued["delivery"]["status"], "succeeded", "{queued}");
    assert_eq!(queued["delivery"]["httpStatus"], 200);
    assert_eq!(rx.count(), 1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        sibling.count(),
        0,
        "no fan-out to the account's other endpoints"
    );

    let got = rx.received();
    assert_eq!(reference_verify(&secret, &got), vec!["ok"]);
    assert_eq!(got[0].headers["webhook-id"], event_id.as_str());
    let delivered: Value = serde_json::from_slice(&got[0].body).expect("json");
    assert_eq!(delivered["type"], "webhook.test");
    assert_eq!(delivered["data"], json!({"webhookId": id, "test": true}));
    assert!(delivered["timestamp"].is_string());

    let tries = app.deliveries("acct_a", &id).await;
    assert_eq!(tries.len(), 1, "{tries:?}");
    assert_eq!(tries[0]["id"], delivery_id.as_str());
    assert_eq!(tries[0]["eventId"], event_id.as_str());
    assert_eq!(tries[0]["status"], "succeeded");
    assert!(app.deliveries("acct_a", &sibling_id).await.is_empty());

    // The body may name the type, which is webhook.test, or be `null`.
    for body in [json!({"eventType": "webhook.test"}), json!({}), Value::Null] {
        let (status, again, _) = app
            .post(&format!("/v1/webhooks/{id}/test"), &t, body.clone())
            .await;
        assert_eq!(status, StatusCode::OK, "{body}: {again}");
    }
    assert_eq!(rx.count(), 4);
    assert_eq!(sibling.count(), 0);

    // A failing endpoint: the answer says how it failed (a retry follows).
    rx.set_default(Reply::Status(503));
    let (status, failed, _) = app
        .post(&format!("/v1/webhooks/{id}/test"), &t, json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{failed}");
    assert_eq!(failed["delivery"]["status"], "failed", "{failed}");
    assert_eq!(failed["delivery"]["httpStatus"], 503);

    let tests = audit_entries(&app, "webhook.test").await;
    assert_eq!(tests.len(), 5, "{tests:?}");
    assert!(tests.iter().all(|e| e["target"] == format!("webhook:{id}")));
    app.stop().await;
}

async fn a_test_event_is_refused_for_another_account_a_disabled_endpoint_or_another_type(
    backend: Backend,
) {
    let app = TestApp::spawn(backend).await;
    let t = app.tenant("acct_a");
    let (id, _) = app
        .create_webhook("acct_a", "https://example.com/h", &["*"])
        .await;
    let path = format!("/v1/webhooks/{id}/test");
    let (status, _, _) = app.post(&path, &app.tenant("acct_b"), json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "another account's webhook");
    let (status, _, _) = app
        .post("/v1/webhooks/wh_missing/test", &t, json!({}))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let reader = app.sign(&app.claims(Some("acct_a"), "webhooks:read"));
    let (status, _, _) = app.post(&path, &reader, json!({})).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    for bad in [json!({"eventType": "invoice.paid"}), json!({"other": 1})] {
        let (status, body, _) = app.post(&path, &t, bad.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
    }
    let (status, body, _) = app
        .put(&format!("/v1/webhooks/{id}"), &t, json!({"disabled": true}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body, _) = app.post(&path, &t, json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .expect("message")
        .contains("disabled"));
    // Nothing was queued by any of them.
    assert!(app.deliveries("acct_a", &id).await.is_empty());
    assert!(audit_entries(&app, "webhook.test").await.is_empty());
    app.stop().await;
}
