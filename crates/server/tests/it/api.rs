//! The tenant API: CRUD, isolation between accounts, limits, errors.

use crate::helpers::*;
use axum::http::StatusCode;
use hookwarden_store::on_both;
use serde_json::json;

on_both!(
    webhook_crud_round_trip,
    other_accounts_ids_answer_404,
    eleventh_webhook_is_limit_exceeded,
    sixty_first_request_is_rate_limited,
    bad_input_gets_clear_errors,
    secret_is_shown_only_on_create_and_rotate,
    publish_is_idempotent_on_id,
    the_webhook_cap_is_a_setting_the_database_enforces,
    a_duplicate_webhook_is_a_conflict,
    prefix_subscriptions_fan_out_like_producer_grants,
);

async fn webhook_crud_round_trip(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let t = app.tenant("acct_a");
    let (status, created, _) =
        app.post("/v1/webhooks", &t, json!({"url": "https://example.com/h", "eventTypes": ["invoice.paid"], "description": "billing"})).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().expect("id");
    assert!(created["secret"]
        .as_str()
        .expect("secret")
        .starts_with("whsec_"));
    assert_eq!(created["eventTypes"], json!(["invoice.paid"]));
    let (status, got, _) = app.get(&format!("/v1/webhooks/{id}"), &t).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(got["description"], "billing");
    let (status, updated, _) = app
        .put(
            &format!("/v1/webhooks/{id}"),
            &t,
            json!({"eventTypes": ["*"]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["eventTypes"], json!(["*"]));
    let (status, list, _) = app.get("/v1/webhooks", &t).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["items"].as_array().expect("items").len(), 1);
    assert_eq!(list["nextCursor"], serde_json::Value::Null);
    let (status, _, _) = app.delete(&format!("/v1/webhooks/{id}"), &t).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, err, _) = app.get(&format!("/v1/webhooks/{id}"), &t).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(err["error"]["code"], "NOT_FOUND");
}

async fn other_accounts_ids_answer_404(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (id, _) = app
        .create_webhook("acct_a", "https://example.com/h", &["*"])
        .await;
    let b = app.tenant("acct_b");
    let missing = app.get("/v1/webhooks/wh_doesnotexist", &b).await;
    for (status, body, _) in [
        app.get(&format!("/v1/webhooks/{id}"), &b).await,
        app.put(
            &format!("/v1/webhooks/{id}"),
            &b,
            json!({"url": "https://attacker.example/"}),
        )
        .await,
        app.delete(&format!("/v1/webhooks/{id}"), &b).await,
        app.get(&format!("/v1/webhooks/{id}/deliveries"), &b).await,
    ] {
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
        assert_eq!(
            body["error"]["code"], missing.1["error"]["code"],
            "indistinguishable from a missing id"
        );
    }
    assert_eq!(app.get("/v1/webhooks", &b).await.1["items"], json!([]));
    // A's webhook is untouched.
    let (_, got, _) = app
        .get(&format!("/v1/webhooks/{id}"), &app.tenant("acct_a"))
        .await;
    assert_eq!(got["url"], "https://example.com/h");
    // Attempts of account A cannot be retried by B either.
    app.publish("acct_a", "t", json!({"n": 1})).await;
    let items = app.deliveries("acct_a", &id).await;
    let attempt = items[0]["id"].as_str().expect("attempt id");
    let (status, _, _) = app
        .post(&format!("/v1/deliveries/{attempt}/retry"), &b, json!({}))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

async fn eleventh_webhook_is_limit_exceeded(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for i in 0..10 {
        app.create_webhook("acct_a", &format!("https://example.com/{i}"), &["*"])
            .await;
    }
    let (status, body, _) = app
        .post(
            "/v1/webhooks",
            &app.tenant("acct_a"),
            json!({"url": "https://example.com/x", "eventTypes": ["*"]}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["code"], "LIMIT_EXCEEDED");
    assert!(body["error"]["requestId"].as_str().is_some());
    app.create_webhook("acct_b", "https://example.com/b", &["*"])
        .await;
}

async fn sixty_first_request_is_rate_limited(backend: Backend) {
    let app = TestApp::with(
        backend,
        Options {
            rate_limit: 60,
            ..Default::default()
        },
    )
    .await;
    let t = app.tenant("acct_a");
    for i in 0..60 {
        let (status, _, _) = app.get("/v1/webhooks", &t).await;
        assert_eq!(status, StatusCode::OK, "request {i}");
    }
    let (status, body, headers) = app.get("/v1/webhooks", &t).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(body["error"]["code"], "RATE_LIMITED");
    let retry: u64 = headers["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!((1..=60).contains(&retry));
    // Another account has its own budget.
    assert_eq!(
        app.get("/v1/webhooks", &app.tenant("acct_b")).await.0,
        StatusCode::OK
    );
}

async fn bad_input_gets_clear_errors(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let t = app.tenant("acct_a");
    let cases = [
        (
            json!({"url": "https://example.com", "eventTypes": ["*"], "colour": "red"}),
            "unknown field",
        ),
        (
            json!({"url": "https://example.com", "eventTypes": []}),
            "eventTypes",
        ),
        (
            json!({"url": "ftp://example.com", "eventTypes": ["*"]}),
            "scheme",
        ),
        (
            json!({"url": "https://u:p@example.com", "eventTypes": ["*"]}),
            "credentials",
        ),
        (
            json!({"url": "https://example.com", "eventTypes": ["Bad Type"]}),
            "eventTypes",
        ),
        (
            json!({"url": "https://example.com", "eventTypes": ["*"], "secret": "not-a-secret"}),
            "secret",
        ),
        (json!({"eventTypes": ["*"]}), "missing field"),
    ];
    for (body, needle) in cases {
        let (status, err, _) = app.post("/v1/webhooks", &t, body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(err["error"]["code"], "VALIDATION_ERROR");
        assert!(
            err["error"]["message"]
                .as_str()
                .expect("message")
                .contains(needle),
            "{err} should mention {needle}"
        );
    }
    // Not JSON at all.
    let resp = app
        .http
        .post(app.url("/v1/webhooks"))
        .bearer_auth(&t)
        .body("url=x")
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 415);
    let resp = app
        .http
        .post(app.url("/v1/webhooks"))
        .bearer_auth(&t)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 400);
    // Over the body limit.
    let big = json!({"url": "https://example.com", "eventTypes": ["*"], "description": "x".repeat(1024 * 1024)});
    let (status, err) = app
        .post_oversize(
            "/v1/webhooks",
            &[("authorization", format!("Bearer {t}"))],
            big.to_string().as_bytes(),
        )
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{err}");
    // Bad query parameters.
    assert_eq!(
        app.get("/v1/webhooks?limit=1000", &t).await.0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        app.get("/v1/webhooks?sort=name", &t).await.0,
        StatusCode::BAD_REQUEST
    );
    // Unknown routes answer in the error format too, with the request id echoed.
    let resp = app
        .http
        .get(app.url("/v1/nothing"))
        .header("x-request-id", "trace-123")
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 404);
    assert_eq!(resp.headers()["x-request-id"], "trace-123");
    let body: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(body["error"]["requestId"], "trace-123");
    // A malformed request id is replaced, not echoed.
    let resp = app
        .http
        .get(app.url("/v1/nothing"))
        .header("x-request-id", "bad id; injected=1")
        .send()
        .await
        .expect("send");
    assert!(resp.headers()["x-request-id"]
        .to_str()
        .expect("ascii")
        .starts_with("req_"));
}

async fn secret_is_shown_only_on_create_and_rotate(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let t = app.tenant("acct_a");
    let (id, secret) = app
        .create_webhook("acct_a", "https://example.com/h", &["*"])
        .await;
    let key = &secret["whsec_".len()..];
    for (_, body, _) in [
        app.get(&format!("/v1/webhooks/{id}"), &t).await,
        app.get("/v1/webhooks", &t).await,
        app.put(
            &format!("/v1/webhooks/{id}"),
            &t,
            json!({"description": "x"}),
        )
        .await,
    ] {
        let text = body.to_string();
        assert!(!text.contains(key), "secret leaked in {text}");
        assert!(body.get("secret").is_none());
    }
    let (status, rotated, _) = app
        .put(
            &format!("/v1/webhooks/{id}"),
            &t,
            json!({"rotateSecret": true}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let new_secret = rotated["secret"].as_str().expect("new secret shown once");
    assert_ne!(new_secret, secret);
    assert!(rotated["secretRotationEndsAt"].as_str().is_some());
    let (_, again, _) = app.get(&format!("/v1/webhooks/{id}"), &t).await;
    assert!(!again.to_string().contains(&new_secret["whsec_".len()..]));
    // Supplying a secret of one's own works too, and both at once is refused.
    let mine = hookwarden_core::secret::WebhookSecret::generate()
        .expose()
        .to_string();
    let (status, _, _) = app
        .put(&format!("/v1/webhooks/{id}"), &t, json!({"secret": mine}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = app
        .put(
            &format!("/v1/webhooks/{id}"),
            &t,
            json!({"secret": mine, "rotateSecret": true}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // Every change is in the audit trail; no secret is.
    let (_, audit, _) = app
        .operator(
            reqwest::Method::GET,
            "/api/v1/audit-entries?limit=100",
            None,
        )
        .await;
    let actions: Vec<&str> = audit["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|a| a["action"].as_str().expect("action"))
        .collect();
    assert_eq!(
        actions
            .iter()
            .filter(|a| **a == "webhook.secret_rotated")
            .count(),
        2,
        "{actions:?}"
    );
    assert!(
        actions.contains(&"webhook.created") && actions.contains(&"webhook.updated"),
        "{actions:?}"
    );
    let text = audit.to_string();
    assert!(
        !text.contains(key)
            && !text.contains(&new_secret["whsec_".len()..])
            && !text.contains("whsec_"),
        "no secret in the audit trail"
    );
}

async fn publish_is_idempotent_on_id(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.create_webhook("acct_a", "https://example.com/h", &["*"])
        .await;
    let p = app.producer();
    let event = json!({"accountId": "acct_a", "eventType": "invoice.paid", "payload": {"n": 1}, "id": "evt_fixed_1"});
    let (s1, b1, _) = app.post("/v1/events", &p, event.clone()).await;
    let (s2, b2, _) = app.post("/v1/events", &p, event.clone()).await;
    assert_eq!((s1, s2), (StatusCode::ACCEPTED, StatusCode::ACCEPTED));
    // The event id is hookwarden's own; the client's id names it again.
    assert!(b1["eventId"]
        .as_str()
        .is_some_and(|id| id.starts_with("evt_")));
    assert_ne!(b1["eventId"], "evt_fixed_1");
    assert_eq!(b2["eventId"], b1["eventId"]);
    assert_eq!(b2["duplicate"], true);
    assert_eq!(b1["deliveries"], 1);
    let mut changed = event.clone();
    changed["payload"] = json!({"n": 2});
    assert_eq!(
        app.post("/v1/events", &p, changed).await.0,
        StatusCode::CONFLICT
    );
    for bad in [
        json!({"accountId": "acct_a", "eventType": "t", "payload": [1, 2]}),
        json!({"accountId": "acct_a", "eventType": "t", "payload": "text"}),
        json!({"accountId": "acct a", "eventType": "t", "payload": {}}),
        json!({"accountId": "acct_a", "eventType": "t", "payload": {}, "extra": 1}),
    ] {
        let (status, err, _) = app.post("/v1/events", &p, bad.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad} -> {err}");
    }
    // serde_json's raw-value key would make a payload the JSON text its
    // string holds (here `{"n":1}`, parsed afresh past the depth limit):
    // refused wherever it stands, spelt plainly or escaped.
    let reserved = "$serde_json::private::RawValue";
    let escaped = r#"{"accountId":"acct_a","eventType":"t","payload":{"\u0024serde_json::private::RawValue":"{\"n\":1}"}}"#;
    for body in [
        json!({"accountId": "acct_a", "eventType": "t", "payload": {reserved: "{\"n\":1}"}})
            .to_string(),
        json!({"accountId": "acct_a", "eventType": "t", "payload": {"a": [{reserved: "{}"}]}})
            .to_string(),
        escaped.to_owned(),
    ] {
        let resp = app
            .http
            .post(app.url("/v1/events"))
            .bearer_auth(&p)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .expect("send");
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{body}");
        let err: serde_json::Value = resp.json().await.expect("json");
        assert_eq!(err["error"]["code"], "VALIDATION_ERROR");
        assert_eq!(
            err["error"]["message"],
            format!("body must not hold the key {reserved}")
        );
    }
    let stats = app
        .state
        .store
        .queue_stats(chrono::Utc::now())
        .await
        .expect("stats");
    assert_eq!(
        stats.pending, 1,
        "one event, one delivery, however often published"
    );
}

async fn the_webhook_cap_is_a_setting_the_database_enforces(backend: Backend) {
    let app = TestApp::with(
        backend,
        Options {
            customize: Some(Box::new(|raw| {
                raw.set("max_webhooks_per_account", 3);
            })),
            ..Default::default()
        },
    )
    .await;
    for i in 0..3 {
        app.create_webhook("acct_a", &format!("https://example.com/{i}"), &["*"])
            .await;
    }
    let (status, body, _) = app
        .post(
            "/v1/webhooks",
            &app.tenant("acct_a"),
            json!({"url": "https://example.com/x", "eventTypes": ["*"]}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["code"], "LIMIT_EXCEEDED");
    assert_eq!(
        body["error"]["message"],
        "an account may have at most 3 webhooks"
    );
    // The database itself holds the cap, not only this process.
    let mut w = hookwarden_store::model::Webhook {
        id: hookwarden_core::ids::webhook_id(),
        account_id: "acct_a".into(),
        url: "https://example.com/direct".into(),
        description: String::new(),
        event_types: vec!["*".into()],
        secret: hookwarden_core::crypto::Sealed {
            key_id: "mk".into(),
            ciphertext: vec![1],
        },
        old_secret: None,
        disabled: false,
        disabled_reason: None,
        held_by_operator: false,
        throttled_until: None,
        health: Default::default(),
        controls: Default::default(),
        created_at: chrono::Utc::now(),
        updated_at: chrono::Utc::now(),
    };
    assert!(matches!(
        app.state.store.create_webhook(&w).await,
        Err(hookwarden_store::StoreError::WebhookLimit)
    ));
    w.account_id = "acct_b".into();
    app.state
        .store
        .create_webhook(&w)
        .await
        .expect("another account");
}

async fn a_duplicate_webhook_is_a_conflict(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let t = app.tenant("acct_a");
    app.create_webhook(
        "acct_a",
        "https://example.com/h",
        &["invoice.paid", "invoice.void"],
    )
    .await;
    // The same URL and the same types, in any order: every event twice.
    let (status, body, _) = app
        .post(
            "/v1/webhooks",
            &t,
            json!({"url": "https://example.com/h", "eventTypes": ["invoice.void", "invoice.paid"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "CONFLICT");
    // Other types, another URL or another account are not duplicates.
    let (other, _) = app
        .create_webhook("acct_a", "https://example.com/h", &["invoice.paid"])
        .await;
    app.create_webhook(
        "acct_a",
        "https://example.com/h2",
        &["invoice.paid", "invoice.void"],
    )
    .await;
    app.create_webhook(
        "acct_b",
        "https://example.com/h",
        &["invoice.paid", "invoice.void"],
    )
    .await;
    // Nor can an update make one.
    let (status, body, _) = app
        .put(
            &format!("/v1/webhooks/{other}"),
            &t,
            json!({"eventTypes": ["invoice.paid", "invoice.void"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (_, got, _) = app.get(&format!("/v1/webhooks/{other}"), &t).await;
    assert_eq!(got["eventTypes"], json!(["invoice.paid"]), "unchanged");
    // An update that changes neither URL nor types is no conflict.
    let (status, body, _) = app
        .put(
            &format!("/v1/webhooks/{other}"),
            &t,
            json!({"description": "still one"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

async fn prefix_subscriptions_fan_out_like_producer_grants(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (invoices, _) = app
        .create_webhook("acct_a", "https://example.com/inv", &["invoice.*"])
        .await;
    for bad in ["invoice*", "*.paid", "invoice.*.paid"] {
        let (status, body, _) = app
            .post(
                "/v1/webhooks",
                &app.tenant("acct_a"),
                json!({"url": "https://example.com/bad", "eventTypes": [bad]}),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
    }
    let paid = app.publish("acct_a", "invoice.paid", json!({"n": 1})).await;
    let refund = app
        .publish("acct_a", "invoice.refund.created", json!({"n": 2}))
        .await;
    app.publish("acct_a", "invoicex.paid", json!({"n": 3}))
        .await;
    app.publish("acct_a", "invoice", json!({"n": 4})).await;
    let items = app.deliveries("acct_a", &invoices).await;
    let mut events: Vec<&str> = items
        .iter()
        .map(|d| d["eventId"].as_str().unwrap_or_default())
        .collect();
    events.sort();
    let mut expected = vec![paid.as_str(), refund.as_str()];
    expected.sort();
    assert_eq!(events, expected, "{items:?}");
}
