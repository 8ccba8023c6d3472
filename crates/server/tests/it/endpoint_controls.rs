//! A webhook's own controls: custom headers (a secret one sealed, never
//! shown or logged), a payload filter checked at publish, and a rate limit
//! that makes tries wait instead of failing.

use crate::helpers::*;
use crate::logs;
use axum::http::StatusCode;
use hookwarden_store::on_both;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

on_both!(
    custom_headers_reach_the_endpoint_and_a_secret_one_is_never_shown,
    custom_headers_that_could_forge_or_smuggle_are_refused,
    a_payload_filter_keeps_events_that_do_not_match_from_the_endpoint,
    a_rate_limited_endpoint_gets_its_tries_spread_over_time_none_failed,
    v1a_deliveries_verify_with_the_public_key_alone_through_rotation_and_a_switch,
);

const WAIT: Duration = Duration::from_secs(20);

async fn create(app: &TestApp, account: &str, body: Value) -> (StatusCode, Value) {
    let (status, body, _) = app.post("/v1/webhooks", &app.tenant(account), body).await;
    (status, body)
}

async fn custom_headers_reach_the_endpoint_and_a_secret_one_is_never_shown(backend: Backend) {
    logs::capture();
    let app = TestApp::spawn(backend).await;
    let t = app.tenant("acct_a");
    let rx = Receiver::start().await;
    let key = format!("key-{}", uuid::Uuid::new_v4().simple());
    let (status, created) = create(
        &app,
        "acct_a",
        json!({"url": rx.url("/h"), "eventTypes": ["*"], "headers": [
            {"name": "X-Api-Key", "value": key, "secret": true},
            {"name": "X-Team", "value": "blue"}
        ]}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(
        created["headers"],
        json!([{"name": "X-Api-Key", "secret": true}, {"name": "X-Team", "value": "blue", "secret": false}])
    );
    let id = created["id"].as_str().expect("id").to_owned();
    let secret = created["secret"].as_str().expect("secret").to_owned();
    app.publish("acct_a", "t", json!({"n": 1})).await;
    app.deliver_until(WAIT, || rx.count() == 1).await;
    let got = rx.received();
    assert_eq!(got[0].headers["x-api-key"], key.as_str());
    assert_eq!(got[0].headers["x-team"], "blue");
    assert_eq!(reference_verify(&secret, &got), vec!["ok"], "still signed");

    // An update that leaves the secret's value out keeps it; the plain one
    // changes.
    let (status, updated, _) = app
        .put(
            &format!("/v1/webhooks/{id}"),
            &t,
            json!({"headers": [{"name": "X-Api-Key", "secret": true}, {"name": "X-Team", "value": "red"}]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    app.publish("acct_a", "t", json!({"n": 2})).await;
    app.deliver_until(WAIT, || rx.count() == 2).await;
    let got = rx.received();
    assert_eq!(got[1].headers["x-api-key"], key.as_str());
    assert_eq!(got[1].headers["x-team"], "red");

    // Moving the endpoint to another origin takes the secret's value again:
    // a token that may write the webhook cannot carry it off.
    let elsewhere = Receiver::start().await;
    for body in [
        json!({"url": elsewhere.url("/steal")}),
        json!({"url": elsewhere.url("/steal"), "headers": [{"name": "X-Api-Key", "secret": true}]}),
    ] {
        let (status, refused, _) = app
            .put(&format!("/v1/webhooks/{id}"), &t, body.clone())
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {refused}");
        assert!(!refused.to_string().contains(&key));
    }
    // The same origin, another path: kept.
    let (status, moved, _) = app
        .put(
            &format!("/v1/webhooks/{id}"),
            &t,
            json!({"url": rx.url("/other")}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{moved}");

    // The value is in no answer and no log line.
    let (_, listed, _) = app.get("/v1/webhooks", &t).await;
    let (_, one, _) = app.get(&format!("/v1/webhooks/{id}"), &t).await;
    let (_, op, _) = app
        .operator(
            reqwest::Method::GET,
            &format!("/api/v1/outbound/webhooks/{id}"),
            None,
        )
        .await;
    for shown in [&created, &updated, &moved, &listed, &one, &op] {
        assert!(!shown.to_string().contains(&key), "{shown}");
    }
    assert!(
        !logs::captured().contains(&key),
        "the secret header was logged"
    );

    // PATCH with null removes them all.
    let (status, patched, _) = app
        .call(
            reqwest::Method::PATCH,
            &format!("/v1/webhooks/{id}"),
            Some(&t),
            Some(json!({"headers": null})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert!(patched.get("headers").is_none(), "{patched}");
    app.publish("acct_a", "t", json!({"n": 3})).await;
    app.deliver_until(WAIT, || rx.count() == 3).await;
    assert!(rx.received()[2].headers.get("x-api-key").is_none());
    app.stop().await;
}

async fn custom_headers_that_could_forge_or_smuggle_are_refused(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let rx = Receiver::start().await;
    for bad in [
        json!([{"name": "webhook-signature", "value": "v1,forged"}]),
        json!([{"name": "Webhook-Id", "value": "evt_other"}]),
        json!([{"name": "Host", "value": "internal.example"}]),
        json!([{"name": "Content-Length", "value": "0"}]),
        json!([{"name": "Transfer-Encoding", "value": "chunked"}]),
        json!([{"name": "Webhook_Signature", "value": "v1,forged"}]),
        json!([{"name": "X-A", "value": "a\r\nX-Injected: 1"}]),
        json!([{"name": "X A", "value": "1"}]),
        json!([{"name": "X-A"}]),
        json!([{"name": "X-A", "value": "1"}, {"name": "x-a", "value": "2"}]),
        json!([{"name": "X-A", "value": "1", "other": true}]),
        json!("X-A: 1"),
    ] {
        let (status, body) = create(
            &app,
            "acct_a",
            json!({"url": rx.url("/h"), "eventTypes": ["*"], "headers": bad}),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert!(body["error"]["message"].is_string());
    }
    let many: Vec<Value> = (0..21)
        .map(|i| json!({"name": format!("X-{i}"), "value": "v"}))
        .collect();
    let (status, _) = create(
        &app,
        "acct_a",
        json!({"url": rx.url("/h"), "eventTypes": ["*"], "headers": many}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // Nothing was created by any of them.
    let (_, listed, _) = app.get("/v1/webhooks", &app.tenant("acct_a")).await;
    assert_eq!(listed["items"], json!([]));
    app.stop().await;
}

async fn a_payload_filter_keeps_events_that_do_not_match_from_the_endpoint(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let t = app.tenant("acct_a");
    let (gold_rx, all_rx) = (Receiver::start().await, Receiver::start().await);
    let (status, gold) = create(
        &app,
        "acct_a",
        json!({"url": gold_rx.url("/h"), "eventTypes": ["*"],
               "filter": {"pointer": "/customer/tier", "oneOf": ["gold", "platinum"]}}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{gold}");
    assert_eq!(
        gold["filter"],
        json!({"pointer": "/customer/tier", "oneOf": ["gold", "platinum"]})
    );
    app.create_webhook("acct_a", &all_rx.url("/h"), &["*"])
        .await;
    let publish = |tier: &'static str| {
        let app = &app;
        async move {
            let (status, body, _) = app
                .post(
                    "/v1/events",
                    &app.producer(),
                    json!({"accountId": "acct_a", "eventType": "order.paid",
                           "payload": {"customer": {"tier": tier}}}),
                )
                .await;
            assert_eq!(status, StatusCode::ACCEPTED, "{body}");
            body["deliveries"].as_u64().expect("deliveries")
        }
    };
    assert_eq!(publish("gold").await, 2);
    assert_eq!(
        publish("silver").await,
        1,
        "no try for the filtered endpoint"
    );
    assert_eq!(publish("platinum").await, 2);
    app.deliver_until(WAIT, || all_rx.count() == 3 && gold_rx.count() == 2)
        .await;
    assert_eq!(app.dispatcher.run_once().await.expect("step"), 0);
    let tiers: Vec<String> = gold_rx
        .received()
        .iter()
        .map(|r| {
            let v: Value = serde_json::from_slice(&r.body).expect("json");
            v["data"]["customer"]["tier"]
                .as_str()
                .expect("tier")
                .to_owned()
        })
        .collect();
    assert_eq!(tiers.len(), 2);
    assert!(
        tiers.iter().all(|t| t == "gold" || t == "platinum"),
        "{tiers:?}"
    );

    // Bad filters are refused, naming the problem.
    let id = gold["id"].as_str().expect("id");
    for bad in [
        json!({"pointer": "customer/tier", "equals": "gold"}),
        json!({"pointer": "/a"}),
        json!({"pointer": "/a", "equals": 1, "oneOf": [1]}),
        json!({"pointer": "/a", "oneOf": []}),
        json!({"pointer": "/a~9", "equals": 1}),
        json!({"pointer": "/a", "equals": 1, "regex": ".*"}),
    ] {
        let (status, body, _) = app
            .put(&format!("/v1/webhooks/{id}"), &t, json!({"filter": bad}))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        let says = body["error"]["message"].as_str().expect("message");
        assert!(says.contains("filter") || says.contains("regex"), "{says}");
    }
    // Removed: every event again.
    let (status, body, _) = app
        .put(&format!("/v1/webhooks/{id}"), &t, json!({"filter": null}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.get("filter").is_none(), "{body}");
    assert_eq!(publish("silver").await, 2);
    app.stop().await;
}

async fn a_rate_limited_endpoint_gets_its_tries_spread_over_time_none_failed(backend: Backend) {
    let app = TestApp::with(
        backend,
        Options {
            worker: true,
            ..Default::default()
        },
    )
    .await;
    let rx = Receiver::start().await;
    let (status, created) = create(
        &app,
        "acct_a",
        json!({"url": rx.url("/h"), "eventTypes": ["*"], "rateLimitPerSecond": 5}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["rateLimitPerSecond"], 5);
    let id = created["id"].as_str().expect("id").to_owned();
    let started = Instant::now();
    for n in 0..10 {
        app.publish("acct_a", "t", json!({"n": n})).await;
    }
    let deadline = started + WAIT;
    while rx.count() < 10 {
        assert!(Instant::now() < deadline, "{} of 10 delivered", rx.count());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // When each arrived at the receiver (not when this loop saw it).
    let arrivals: Vec<Duration> = rx.received().iter().map(|r| r.at - started).collect();
    let took = *arrivals.last().expect("ten");
    // Ten tries at five a second: the last at least 1.8 s after the first.
    assert!(took >= Duration::from_millis(1700), "took {took:?}");
    // No second holds more than five (and one for timing slack).
    for (i, at) in arrivals.iter().enumerate() {
        let within = arrivals[i..]
            .iter()
            .filter(|t| **t < *at + Duration::from_secs(1))
            .count();
        assert!(within <= 6, "{within} tries within a second: {arrivals:?}");
    }
    // Every try succeeded (their outcomes are written just after they are
    // answered): waited, none failed.
    let mut tries = app.deliveries("acct_a", &id).await;
    while tries.iter().any(|t| t["status"] == "pending") && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        tries = app.deliveries("acct_a", &id).await;
    }
    assert_eq!(tries.len(), 10, "one try each: {tries:?}");
    assert!(
        tries.iter().all(|t| t["status"] == "succeeded"),
        "waited, not failed: {tries:?}"
    );
    for bad in [json!(0), json!(1001), json!(-1), json!("5")] {
        let (status, body, _) = app
            .put(
                &format!("/v1/webhooks/{id}"),
                &app.tenant("acct_a"),
                json!({"rateLimitPerSecond": bad}),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
    }
    app.stop().await;
}

async fn v1a_deliveries_verify_with_the_public_key_alone_through_rotation_and_a_switch(
    backend: Backend,
) {
    let app = TestApp::spawn(backend).await;
    let t = app.tenant("acct_a");
    let rx = Receiver::start().await;
    let (status, created) = create(
        &app,
        "acct_a",
        json!({"url": rx.url("/h"), "eventTypes": ["*"], "signing": "v1a"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["signing"], "v1a");
    assert!(
        created.get("secret").is_none(),
        "no private key shown: {created}"
    );
    let first_key = created["publicKey"].as_str().expect("publicKey").to_owned();
    assert!(first_key.starts_with("whpk_"));
    let id = created["id"].as_str().expect("id").to_owned();
    app.publish("acct_a", "t", json!({"n": 1})).await;
    app.deliver_until(WAIT, || rx.count() == 1).await;
    let got = rx.received();
    let sig = got[0].headers["webhook-signature"].to_str().expect("ascii");
    assert!(sig.starts_with("v1a,") && !sig.contains(' '), "{sig}");
    assert_eq!(ed25519_verify(&first_key, &got), vec!["ok"]);
    // The attack: a body changed on the way, or another key, fails.
    let mut forged = got.clone();
    forged[0].body = axum::body::Bytes::from_static(br#"{"type":"t","data":{"n":2}}"#);
    assert_ne!(ed25519_verify(&first_key, &forged), vec!["ok"]);
    let other = WebhookSecretKey::other_public_key();
    assert_ne!(ed25519_verify(&other, &got), vec!["ok"]);
    // The reveal shows the public key, never the private one.
    let (status, revealed, _) = app.get(&format!("/v1/webhooks/{id}/secret"), &t).await;
    assert_eq!(status, StatusCode::OK, "{revealed}");
    assert_eq!(revealed["key"], first_key.as_str());

    // Rotation: a new key pair; during the grace both sign.
    let (status, rotated, _) = app
        .put(
            &format!("/v1/webhooks/{id}"),
            &t,
            json!({"rotateSecret": true}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    let second_key = rotated["publicKey"].as_str().expect("publicKey").to_owned();
    assert_ne!(second_key, first_key);
    app.publish("acct_a", "t", json!({"n": 2})).await;
    app.deliver_until(WAIT, || rx.count() == 2).await;
    let latest = rx.received()[1..].to_vec();
    assert_eq!(ed25519_verify(&second_key, &latest), vec!["ok"]);
    assert_eq!(
        ed25519_verify(&first_key, &latest),
        vec!["ok"],
        "old key in grace"
    );

    // Back to v1: a whsec_ secret shown once; the Ed25519 key still signs
    // during the grace, so receivers of either verify.
    let (status, switched, _) = app
        .put(&format!("/v1/webhooks/{id}"), &t, json!({"signing": "v1"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{switched}");
    assert_eq!(switched["signing"], "v1");
    assert!(switched.get("publicKey").is_none(), "{switched}");
    let secret = switched["secret"].as_str().expect("whsec").to_owned();
    app.publish("acct_a", "t", json!({"n": 3})).await;
    app.deliver_until(WAIT, || rx.count() == 3).await;
    let last = rx.received()[2..].to_vec();
    assert_eq!(reference_verify(&secret, &last), vec!["ok"]);
    assert_eq!(ed25519_verify(&second_key, &last), vec!["ok"]);

    // Refused: a shared secret for v1a, an unknown scheme.
    for bad in [
        json!({"url": rx.url("/x"), "eventTypes": ["*"], "signing": "v1a", "secret": secret}),
        json!({"url": rx.url("/y"), "eventTypes": ["*"], "signing": "v2"}),
        json!({"url": rx.url("/z"), "eventTypes": ["*"], "secret": "whsk_c2hvcnQ="}),
    ] {
        let (status, body) = create(&app, "acct_a", bad.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert!(!body.to_string().contains(&secret[6..]), "no secret echoed");
    }
    app.stop().await;
}

/// A `whpk_` key nobody here holds the private half of.
struct WebhookSecretKey;

impl WebhookSecretKey {
    fn other_public_key() -> String {
        hookwarden_core::secret::WebhookSecret::generate_ed25519()
            .public_key()
            .expect("public key")
    }
}
