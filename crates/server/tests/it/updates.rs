//! Updates that cannot silently undo protections: `PUT` on an integration
//! refuses a body that leaves a setting out, `PATCH` merges, provider
//! secrets rotate and retire one at a time with the one that last verified
//! shown, the audit trail names what changed (never a secret), and a tenant
//! `PATCH` of a webhook keeps what it does not name.

use crate::helpers::*;
use axum::http::StatusCode;
use hookwarden_store::on_both;
use reqwest::Method;
use serde_json::{json, Value};

on_both!(
    put_refuses_missing_settings_and_patch_keeps_them,
    rotated_secrets_keep_verifying_until_retired,
    tenant_patch_keeps_what_it_does_not_name
);

const OLD: &str = "OLD-provider-secret-value";
const NEW: &str = "NEW-provider-secret-value";

fn sig(secret: &str, body: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let mut m = <Hmac<sha2::Sha256> as Mac>::new_from_slice(secret.as_bytes()).expect("key");
    m.update(body);
    hex::encode(m.finalize().into_bytes())
}

async fn get(app: &TestApp, name: &str) -> Value {
    let (status, body, _) = app
        .operator(Method::GET, &format!("/api/v1/integrations/{name}"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

/// The audit entries with this action, oldest first; the whole trail is
/// checked for the secrets on the way.
async fn audit(app: &TestApp, action: &str) -> Vec<Value> {
    let (status, body, _) = app
        .operator(Method::GET, "/api/v1/audit-entries?limit=100", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let text = body.to_string();
    for secret in [OLD, NEW, "THIRD", "whsec_"] {
        assert!(
            !text.contains(secret),
            "a secret in the audit trail: {text}"
        );
    }
    body["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|e| e["action"] == action)
        .cloned()
        .collect()
}

async fn put_refuses_missing_settings_and_patch_keeps_them(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let path = "/api/v1/integrations/acme";
    app.integration(
        json!({"name": "acme", "scheme": "hmac-sha256", "secret": OLD,
        "signatureHeader": "x-sig", "targetUrl": "http://127.0.0.1:9/in",
        "allowedCidrs": ["127.0.0.0/8", "::1/128"], "rateLimitPerMinute": 1000,
        "toleranceSeconds": 120, "idempotencyHeader": "x-delivery", "forwardRawBody": true}),
    )
    .await;
    let before = get(&app, "acme").await;

    // The runbook's rotation as it was written: only the secrets.
    let (status, err, _) = app
        .operator(Method::PUT, path, Some(json!({"secrets": [NEW, OLD]})))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{err}");
    assert_eq!(err["error"]["code"], "VALIDATION_ERROR", "{err}");
    let message = err["error"]["message"].as_str().expect("message");
    for field in [
        "scheme",
        "targetUrl",
        "allowedCidrs",
        "rateLimitPerMinute",
        "toleranceSeconds",
        "idempotencyHeader",
        "forwardRawBody",
    ] {
        assert!(message.contains(field), "{field} not named: {message}");
    }
    assert!(!message.contains(OLD) && !message.contains(NEW));
    let mut after = get(&app, "acme").await;
    after["activeSecrets"] = before["activeSecrets"].clone();
    assert_eq!(after, before, "a refused PUT changes nothing");

    // PATCH changes what it names and keeps the rest.
    let (status, patched, _) = app
        .operator(
            Method::PATCH,
            path,
            Some(json!({"rateLimitPerMinute": 100})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(patched["rateLimitPerMinute"], 100);
    assert_eq!(patched["allowedCidrs"], json!(["127.0.0.0/8", "::1/128"]));
    assert_eq!(patched["toleranceSeconds"], 120);
    assert_eq!(patched["idempotencyHeader"], "x-delivery");
    assert_eq!(patched["forwardRawBody"], true);
    assert_eq!(patched["signatureHeader"], "x-sig");
    assert_eq!(patched["activeSecrets"], 1);
    let updated = audit(&app, "integration.updated").await;
    assert_eq!(
        updated[0]["details"],
        json!({"changed": {"rateLimitPerMinute": [1000, 100]}, "secretsRotated": false})
    );

    // null sets a setting back to its default, and only that one.
    let (status, cleared, _) = app
        .operator(
            Method::PATCH,
            path,
            Some(json!({"allowedCidrs": null, "idempotencyHeader": null, "rateLimitPerMinute": null})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{cleared}");
    assert_eq!(cleared["allowedCidrs"], json!([]));
    assert_eq!(cleared["idempotencyHeader"], Value::Null);
    assert_eq!(cleared["rateLimitPerMinute"], 600);
    assert_eq!(cleared["toleranceSeconds"], 120);
    let updated = audit(&app, "integration.updated").await;
    assert_eq!(
        updated[1]["details"]["changed"],
        json!({
            "allowedCidrs": [["127.0.0.0/8", "::1/128"], []],
            "idempotencyHeader": ["x-delivery", null],
            "rateLimitPerMinute": [100, 600],
        })
    );
    // A required setting cannot be nulled, nor the name changed.
    for body in [
        json!({"targetUrl": null}),
        json!({"scheme": null}),
        json!({"secrets": null}),
        json!({"name": "other"}),
        json!({"rateLimitPerMinute": 0}),
    ] {
        let (status, err, _) = app.operator(Method::PATCH, path, Some(body.clone())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {err}");
    }
    assert_eq!(
        app.operator(Method::PATCH, "/api/v1/integrations/nope", Some(json!({})))
            .await
            .0,
        StatusCode::NOT_FOUND
    );

    // A full PUT (null for a default) is a replacement; secrets left out are kept.
    let full = json!({"scheme": "hmac-sha256", "targetUrl": "http://127.0.0.1:9/in?token=abc",
        "signatureHeader": "x-sig", "encoding": null, "prefix": null, "toleranceSeconds": 300,
        "allowedCidrs": ["127.0.0.1/32", "::1/128"], "rateLimitPerMinute": 50,
        "idempotencyHeader": null, "forwardRawBody": null});
    let (status, replaced, _) = app.operator(Method::PUT, path, Some(full)).await;
    assert_eq!(status, StatusCode::OK, "{replaced}");
    assert_eq!(replaced["forwardRawBody"], false);
    assert_eq!(replaced["rateLimitPerMinute"], 50);
    assert_eq!(replaced["activeSecrets"], 1);
    let body = br#"{"n":1}"#;
    let (status, _) = app
        .inbound("acme", &[("x-sig", sig(OLD, body))], body)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "the secret was kept");
    let updated = audit(&app, "integration.updated").await;
    let changed = &updated[2]["details"]["changed"];
    assert_eq!(changed["toleranceSeconds"], json!([120, 300]));
    assert_eq!(changed["forwardRawBody"], json!([true, false]));
    // The target's query (it may carry a token) is not recorded.
    assert_eq!(
        changed["targetUrl"],
        json!(["http://127.0.0.1:9/in", "http://127.0.0.1:9/in?…"])
    );
    assert!(!updated[2].to_string().contains("token=abc"));

    // Secrets given to PATCH replace the active ones, audited as a rotation.
    let (status, rotated, _) = app
        .operator(Method::PATCH, path, Some(json!({"secrets": [NEW]})))
        .await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    let updated = audit(&app, "integration.updated").await;
    assert_eq!(
        updated[3]["details"],
        json!({"changed": {}, "secretsRotated": true})
    );
    assert_eq!(audit(&app, "integration.secret_rotated").await.len(), 1);
    app.stop().await;
}

async fn rotated_secrets_keep_verifying_until_retired(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.integration(
        json!({"name": "acme", "scheme": "hmac-sha256", "secret": OLD,
        "signatureHeader": "x-sig", "targetUrl": "http://127.0.0.1:9/in",
        "allowedCidrs": ["127.0.0.0/8", "::1/128"], "rateLimitPerMinute": 1000}),
    )
    .await;
    let mut n = 0;
    let mut send = |secret: &'static str| {
        n += 1;
        let body = format!("{{\"n\":{n}}}");
        let app = &app;
        async move {
            app.inbound(
                "acme",
                &[("x-sig", sig(secret, body.as_bytes()))],
                body.as_bytes(),
            )
            .await
            .0
        }
    };
    let fresh = get(&app, "acme").await;
    assert_eq!(fresh["activeSecrets"], 1);
    assert_eq!(fresh["lastVerifiedSecret"], Value::Null);
    assert_eq!(send(OLD).await, StatusCode::ACCEPTED);
    assert_eq!(get(&app, "acme").await["lastVerifiedSecret"], 0);

    let rotate = "/api/v1/integrations/acme/rotate-secret";
    let (status, rotated, _) = app
        .operator(Method::POST, rotate, Some(json!({"secret": NEW})))
        .await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    assert_eq!(rotated["activeSecrets"], 2);
    // The old secret moved to index 1; nothing else changed.
    assert_eq!(rotated["lastVerifiedSecret"], 1);
    assert_eq!(rotated["allowedCidrs"], json!(["127.0.0.0/8", "::1/128"]));
    assert_eq!(rotated["rateLimitPerMinute"], 1000);
    assert!(!rotated.to_string().contains(NEW));

    assert_eq!(
        send(OLD).await,
        StatusCode::ACCEPTED,
        "the old one still verifies"
    );
    let view = get(&app, "acme").await;
    assert_eq!(view["lastVerifiedSecret"], 1);
    assert!(view["lastVerifiedAt"].is_string(), "{view}");
    assert_eq!(send(NEW).await, StatusCode::ACCEPTED);
    assert_eq!(get(&app, "acme").await["lastVerifiedSecret"], 0);

    // The old one can go: retired, it verifies nothing.
    let retire = "/api/v1/integrations/acme/secrets/retire";
    let (status, retired, _) = app
        .operator(Method::POST, retire, Some(json!({"index": 1})))
        .await;
    assert_eq!(status, StatusCode::OK, "{retired}");
    assert_eq!(retired["activeSecrets"], 1);
    assert_eq!(retired["lastVerifiedSecret"], 0);
    assert_eq!(send(OLD).await, StatusCode::UNAUTHORIZED);
    assert_eq!(send(NEW).await, StatusCode::ACCEPTED);
    // The last one stays; an index that names nothing is refused.
    for index in [0, 1, 7] {
        let (status, err, _) = app
            .operator(Method::POST, retire, Some(json!({"index": index})))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{index}: {err}");
    }

    // At most 5 secrets: a sixth is refused, nothing is dropped silently.
    for i in 0..4 {
        let (status, body, _) = app
            .operator(
                Method::POST,
                rotate,
                Some(json!({"secret": format!("THIRD-{i}")})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let (status, err, _) = app
        .operator(Method::POST, rotate, Some(json!({"secret": "THIRD-x"})))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{err}");
    assert_eq!(get(&app, "acme").await["activeSecrets"], 5);
    assert_eq!(send(NEW).await, StatusCode::ACCEPTED);
    assert_eq!(get(&app, "acme").await["lastVerifiedSecret"], 4);

    // keepPrevious: false replaces them all at once.
    let (status, alone, _) = app
        .operator(
            Method::POST,
            rotate,
            Some(json!({"secret": OLD, "keepPrevious": false})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{alone}");
    assert_eq!(alone["activeSecrets"], 1);
    assert_eq!(alone["lastVerifiedSecret"], Value::Null);
    assert_eq!(send(NEW).await, StatusCode::UNAUTHORIZED);
    assert_eq!(send(OLD).await, StatusCode::ACCEPTED);

    let rotations = audit(&app, "integration.secret_rotated").await;
    assert_eq!(rotations.len(), 6, "one entry per accepted rotation");
    assert_eq!(
        rotations[0]["details"],
        json!({"keptPrevious": true, "activeSecrets": [1, 2]})
    );
    assert_eq!(
        rotations[5]["details"],
        json!({"keptPrevious": false, "activeSecrets": [5, 1]})
    );
    let retirements = audit(&app, "integration.secret_retired").await;
    assert_eq!(
        retirements[0]["details"],
        json!({"index": 1, "activeSecrets": [2, 1]})
    );
    app.stop().await;
}

async fn tenant_patch_keeps_what_it_does_not_name(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let receiver = Receiver::start().await;
    let (id, _) = app
        .create_webhook(
            "acct_a",
            &receiver.url("/hook"),
            &["invoice.paid", "invoice.voided"],
        )
        .await;
    let token = app.tenant("acct_a");
    let path = format!("/v1/webhooks/{id}");
    let (status, patched, _) = app
        .call(
            Method::PATCH,
            &path,
            Some(&token),
            Some(json!({"description": "billing"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(patched["description"], "billing");
    assert_eq!(
        patched["eventTypes"],
        json!(["invoice.paid", "invoice.voided"])
    );
    assert_eq!(patched["url"], receiver.url("/hook"));
    assert!(patched.get("secret").is_none(), "no secret unless rotated");
    // PUT keeps what it leaves out too.
    let (status, put, _) = app
        .put(&path, &token, json!({"eventTypes": ["invoice.paid"]}))
        .await;
    assert_eq!(status, StatusCode::OK, "{put}");
    assert_eq!(put["description"], "billing");
    // null empties the description; the required fields cannot be null.
    let (status, cleared, _) = app
        .call(
            Method::PATCH,
            &path,
            Some(&token),
            Some(json!({"description": null})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{cleared}");
    assert_eq!(cleared["description"], "");
    assert_eq!(cleared["eventTypes"], json!(["invoice.paid"]));
    for body in [
        json!({"eventTypes": null}),
        json!({"url": null}),
        json!({"eventTypes": []}),
    ] {
        let (status, err, _) = app
            .call(Method::PATCH, &path, Some(&token), Some(body.clone()))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {err}");
    }
    // Another account's webhook is not found; a read-only token may not patch.
    let (status, _, _) = app
        .call(
            Method::PATCH,
            &path,
            Some(&app.tenant("acct_b")),
            Some(json!({"description": "x"})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let reader = app.sign(&app.claims(Some("acct_a"), "webhooks:read"));
    let (status, _, _) = app
        .call(
            Method::PATCH,
            &path,
            Some(&reader),
            Some(json!({"url": null})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    app.stop().await;
}
