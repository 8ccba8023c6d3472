//! The inbound gateway end to end: each scheme verified over the raw bytes as
//! its provider documents it, every attack refused before anything is stored,
//! duplicates named, forwarding signed with the integration's own secret.

use crate::helpers::*;
use axum::http::StatusCode;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use hookwarden_store::on_both;
use reqwest::Method;
use serde_json::{json, Value};
use sha2::Sha256;
use std::io::Write;
use std::time::Duration;

on_both!(
    acme_and_globex_work_as_the_seed_describes,
    every_scheme_verifies_as_documented_and_refuses_forgeries,
    duplicates_are_named_even_when_fifty_arrive_at_once,
    limits_on_size_shape_rate_and_source,
    forwarding_retries_then_dead_letters_and_replay_delivers_again,
    forwarded_requests_carry_a_verifiable_identity_token,
);

const WAIT: Duration = Duration::from_secs(20);

/// Headers as a provider sends them.
type Sent<'a> = Vec<(&'a str, String)>;

fn mac(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("key");
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().to_vec()
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// A Standard Webhooks signature made by the reference library.
fn reference_sign(secret: &str, id: &str, ts: i64, body: &str) -> String {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/sign_standard_webhooks.py"
    );
    let mut child = std::process::Command::new("python3")
        .arg(script)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    writeln!(
        child.stdin.as_mut().expect("stdin"),
        "{}",
        json!({"secret": secret, "id": id, "timestamp": ts, "body": body})
    )
    .expect("write");
    let out = child.wait_with_output().expect("run");
    assert!(
        out.status.success(),
        "reference signer failed (pip install standardwebhooks)"
    );
    String::from_utf8(out.stdout)
        .expect("utf8")
        .trim()
        .to_owned()
}

async fn event_count(app: &TestApp) -> usize {
    let (_, list, _) = app
        .operator(Method::GET, "/api/v1/events?limit=100", None)
        .await;
    list["items"].as_array().expect("items").len()
}

async fn acme_and_globex_work_as_the_seed_describes(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let target = Receiver::start().await;
    let acme_fwd = app
        .integration(
            json!({"name": "acme", "scheme": "hmac-sha256", "secret": "acme-provider-secret",
            "signatureHeader": "x-acme-signature", "targetUrl": target.url("/acme")}),
        )
        .await;
    app.integration(
        json!({"name": "globex", "scheme": "token", "secret": "globex-shared-token",
        "signatureHeader": "x-globex-token", "targetUrl": target.url("/globex")}),
    )
    .await;
    let body = br#"{"type":"order.created","order":{"id":"A-1","total":42}}"#;
    let sig = hex::encode(mac(b"acme-provider-secret", &[body]));
    let (status, accepted) = app
        .inbound(
            "acme",
            &[
                ("x-acme-signature", sig.clone()),
                ("content-type", "application/json".into()),
            ],
            body,
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    let event_id = accepted["eventId"].as_str().expect("eventId").to_owned();
    let (status, _) = app
        .inbound(
            "globex",
            &[("x-globex-token", "globex-shared-token".into())],
            br#"{"k":"v"}"#,
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);

    // Every forgery is refused before anything is stored.
    let reserialized =
        serde_json::to_vec(&serde_json::from_slice::<Value>(body).expect("json")).expect("json");
    let pretty = serde_json::to_vec_pretty(&serde_json::from_slice::<Value>(body).expect("json"))
        .expect("json");
    let mut one_byte = body.to_vec();
    one_byte[10] ^= 0x01;
    let wrong_secret = hex::encode(mac(b"not-the-secret", &[body]));
    let cases: Vec<(&str, Sent, Vec<u8>)> = vec![
        (
            "wrong secret",
            vec![("x-acme-signature", wrong_secret)],
            body.to_vec(),
        ),
        (
            "one byte changed",
            vec![("x-acme-signature", sig.clone())],
            one_byte,
        ),
        (
            "re-serialized",
            vec![("x-acme-signature", sig.clone())],
            if reserialized == body {
                pretty
            } else {
                reserialized
            },
        ),
        ("missing header", vec![], body.to_vec()),
        (
            "malformed header",
            vec![("x-acme-signature", "not-hex!".into())],
            body.to_vec(),
        ),
        (
            "globex token as acme",
            vec![("x-globex-token", "globex-shared-token".into())],
            body.to_vec(),
        ),
    ];
    for (name, headers, b) in &cases {
        let (status, err) = app.inbound("acme", headers, b).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{name}: {err}");
        assert_eq!(err["error"]["code"], "INVALID_SIGNATURE", "{name}");
    }
    let (status, _) = app
        .inbound(
            "globex",
            &[("x-globex-token", "globex-shared-tokeN".into())],
            b"{}",
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // A valid acme signature presented to another provider.
    let (status, _) = app
        .inbound("globex", &[("x-acme-signature", sig.clone())], body)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        event_count(&app).await,
        2,
        "refused requests stored nothing"
    );

    // Forwarded: normalized, correlated, signed with the forwarding secret only.
    app.forward_until(WAIT, || target.count() == 2).await;
    let got = target.received();
    let acme = got
        .iter()
        .find(|r| r.path == "/acme")
        .expect("acme forwarded");
    assert_eq!(acme.headers["x-hookwarden-event-id"], event_id.as_str());
    assert_eq!(acme.headers["x-hookwarden-provider"], "acme");
    assert_eq!(acme.headers["x-correlation-id"], event_id.as_str());
    assert_eq!(
        reference_verify(&acme_fwd, std::slice::from_ref(acme)),
        ["ok"]
    );
    let forwarded: Value = serde_json::from_slice(&acme.body).expect("json");
    assert_eq!(forwarded["payload"]["order"]["id"], "A-1");
    assert_eq!(forwarded["provider"], "acme");
    let everything = format!("{:?}{}", acme.headers, String::from_utf8_lossy(&acme.body));
    assert!(
        !everything.contains("acme-provider-secret") && !everything.contains(&sig),
        "no provider secret or signature downstream"
    );

    // The operator sees the event with its raw body; the signature header is not kept.
    let (status, detail, _) = app
        .operator(Method::GET, &format!("/api/v1/events/{event_id}"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(detail["rawBody"].as_str().expect("raw").as_bytes(), body);
    assert_eq!(detail["headers"]["content-type"], "application/json");
    assert!(detail["headers"].get("x-acme-signature").is_none());
    assert_eq!(detail["status"], "succeeded");
    // Verification failures are in the audit trail, aggregated (one entry
    // per provider, reason, source prefix and minute, with a count), without secrets.
    app.state.refusals.flush(&app.state, true).await;
    let (_, audit, _) = app
        .operator(Method::GET, "/api/v1/audit-entries?limit=100", None)
        .await;
    let failures: Vec<&Value> = audit["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|a| a["action"] == "inbound.verification_failed")
        .collect();
    let counted: u64 = failures
        .iter()
        .map(|a| a["details"]["count"].as_u64().expect("count"))
        .sum();
    assert_eq!(counted, cases.len() as u64 + 2);
    // One entry per provider, reason (missing, malformed, stale, mismatch),
    // source prefix and minute.
    assert!(
        failures.len() <= 2 * 4 * 2,
        "aggregated: {}",
        failures.len()
    );
    assert!(failures
        .iter()
        .all(|a| a["details"]["sourcePrefix"] == "127.0.0.0/24"));
    assert!(!audit.to_string().contains("acme-provider-secret"));
}

async fn every_scheme_verifies_as_documented_and_refuses_forgeries(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let target = Receiver::start().await;
    let t = now();
    let sw_secret = hookwarden_core::secret::WebhookSecret::generate()
        .expose()
        .to_string();
    for (name, scheme, secret, extra) in [
        (
            "stripe",
            "stripe",
            "whsec_stripe_endpoint_secret",
            json!({}),
        ),
        ("github", "github", "gh-secret", json!({})),
        ("slack", "slack", "slack-signing-secret", json!({})),
        ("shopify", "shopify", "shpss_shopify_secret", json!({})),
        ("sw", "standard-webhooks", sw_secret.as_str(), json!({})),
        (
            "b64",
            "hmac-sha256",
            "b64-secret",
            json!({"signatureHeader": "x-signature", "encoding": "base64", "prefix": "sha256="}),
        ),
    ] {
        let mut body = json!({"name": name, "scheme": scheme, "secret": secret, "targetUrl": target.url(&format!("/{name}"))});
        for (k, v) in extra.as_object().expect("object") {
            body[k] = v.clone();
        }
        app.integration(body).await;
    }
    let body = br#"{"id":"evt_1NG8Du2eZvKYlo2C","object":"event","type":"invoice.paid"}"#;
    let stripe = |ts: i64, key: &[u8]| {
        format!(
            "t={ts},v1={}",
            hex::encode(mac(key, &[ts.to_string().as_bytes(), b".", body]))
        )
    };
    let slack = |ts: i64, key: &[u8]| {
        format!(
            "v0={}",
            hex::encode(mac(key, &[b"v0:", ts.to_string().as_bytes(), b":", body]))
        )
    };
    let b64 = format!("sha256={}", STANDARD.encode(mac(b"b64-secret", &[body])));
    let body_str = std::str::from_utf8(body).expect("utf8");
    let sw_sig = reference_sign(&sw_secret, "msg_1", t, body_str);
    let good: Vec<(&str, Sent)> = vec![
        (
            "stripe",
            vec![(
                "stripe-signature",
                stripe(t, b"whsec_stripe_endpoint_secret"),
            )],
        ),
        (
            "github",
            vec![
                (
                    "x-hub-signature-256",
                    format!("sha256={}", hex::encode(mac(b"gh-secret", &[body]))),
                ),
                ("x-github-delivery", "d-1".into()),
            ],
        ),
        (
            "slack",
            vec![
                ("x-slack-request-timestamp", t.to_string()),
                ("x-slack-signature", slack(t, b"slack-signing-secret")),
            ],
        ),
        (
            "shopify",
            vec![
                (
                    "x-shopify-hmac-sha256",
                    STANDARD.encode(mac(b"shpss_shopify_secret", &[body])),
                ),
                ("x-shopify-webhook-id", "s-1".into()),
            ],
        ),
        (
            "sw",
            vec![
                ("webhook-id", "msg_1".into()),
                ("webhook-timestamp", t.to_string()),
                ("webhook-signature", sw_sig.clone()),
            ],
        ),
        ("b64", vec![("x-signature", b64.clone())]),
    ];
    for (provider, headers) in &good {
        let (status, resp) = app.inbound(provider, headers, body).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{provider}: {resp}");
    }
    // Well outside the 300 s window, so the test's own clock drift cannot matter.
    let stale = t - 400;
    let future = t + 400;
    let bad: Vec<(&str, &str, Sent)> = vec![
        (
            "stripe",
            "stale",
            vec![(
                "stripe-signature",
                stripe(stale, b"whsec_stripe_endpoint_secret"),
            )],
        ),
        (
            "stripe",
            "future",
            vec![(
                "stripe-signature",
                stripe(future, b"whsec_stripe_endpoint_secret"),
            )],
        ),
        (
            "stripe",
            "wrong secret",
            vec![("stripe-signature", stripe(t, b"whsec_other"))],
        ),
        (
            "slack",
            "stale",
            vec![
                ("x-slack-request-timestamp", stale.to_string()),
                ("x-slack-signature", slack(stale, b"slack-signing-secret")),
            ],
        ),
        (
            "slack",
            "future",
            vec![
                ("x-slack-request-timestamp", future.to_string()),
                ("x-slack-signature", slack(future, b"slack-signing-secret")),
            ],
        ),
        (
            "slack",
            "timestamp swapped",
            vec![
                ("x-slack-request-timestamp", (t + 1).to_string()),
                ("x-slack-signature", slack(t, b"slack-signing-secret")),
            ],
        ),
        (
            "sw",
            "stale",
            vec![
                ("webhook-id", "msg_2".into()),
                ("webhook-timestamp", stale.to_string()),
                (
                    "webhook-signature",
                    reference_sign(&sw_secret, "msg_2", stale, body_str),
                ),
            ],
        ),
        (
            "sw",
            "other id",
            vec![
                ("webhook-id", "msg_3".into()),
                ("webhook-timestamp", t.to_string()),
                ("webhook-signature", sw_sig.clone()),
            ],
        ),
        (
            "github",
            "sha1 form",
            vec![(
                "x-hub-signature-256",
                format!("sha1={}", hex::encode(mac(b"gh-secret", &[body]))),
            )],
        ),
        (
            "github",
            "shopify's signature",
            vec![(
                "x-hub-signature-256",
                STANDARD.encode(mac(b"shpss_shopify_secret", &[body])),
            )],
        ),
        (
            "shopify",
            "github's signature",
            vec![(
                "x-shopify-hmac-sha256",
                format!("sha256={}", hex::encode(mac(b"gh-secret", &[body]))),
            )],
        ),
        (
            "b64",
            "no prefix",
            vec![("x-signature", b64.trim_start_matches("sha256=").to_owned())],
        ),
        (
            "stripe",
            "malformed",
            vec![("stripe-signature", "v1=zz".into())],
        ),
    ];
    for (provider, name, headers) in &bad {
        let (status, err) = app.inbound(provider, headers, body).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{provider} {name}: {err}");
    }
    // A replay of a valid request (same delivery) is named a duplicate, not reprocessed.
    let (status, dup) = app.inbound("github", &good[1].1, body).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(dup["duplicate"], true);
    assert_eq!(event_count(&app).await, good.len());
}

async fn duplicates_are_named_even_when_fifty_arrive_at_once(backend: Backend) {
    let prefix = RedisPrefix::new();
    let app = TestApp::with(
        backend,
        Options {
            redis: prefix.options(),
            ..Default::default()
        },
    )
    .await;
    let target = Receiver::start().await;
    app.integration(json!({"name": "acme", "scheme": "hmac-sha256", "secret": "s3", "signatureHeader": "x-acme-signature",
        "idempotencyHeader": "x-acme-delivery", "targetUrl": target.url("/acme")}))
        .await;
    let body = br#"{"n":1}"#;
    let sig = hex::encode(mac(b"s3", &[body]));
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let (http, url, sig) = (
            app.http.clone(),
            app.url("/api/v1/webhooks/acme"),
            sig.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let resp = http
                .post(url)
                .header("x-acme-signature", sig)
                .header("x-acme-delivery", "D-50")
                .body(&body[..])
                .send()
                .await
                .expect("send");
            (
                resp.status().as_u16(),
                resp.json::<Value>().await.expect("json"),
            )
        }));
    }
    let mut created = 0;
    let mut ids = std::collections::HashSet::new();
    for t in tasks {
        let (status, body) = t.await.expect("join");
        match status {
            202 => created += 1,
            200 => assert_eq!(body["duplicate"], true),
            other => panic!("unexpected {other}: {body}"),
        }
        ids.insert(body["eventId"].as_str().expect("id").to_owned());
    }
    assert_eq!(created, 1, "exactly one new event");
    assert_eq!(ids.len(), 1, "every answer names the same event");
    // Without a delivery id, the raw body's hash identifies the delivery.
    let other = br#"{"n":2}"#;
    let sig2 = hex::encode(mac(b"s3", &[other]));
    let (s1, a) = app
        .inbound("acme", &[("x-acme-signature", sig2.clone())], other)
        .await;
    let (s2, b) = app
        .inbound("acme", &[("x-acme-signature", sig2.clone())], other)
        .await;
    assert_eq!((s1, s2), (StatusCode::ACCEPTED, StatusCode::OK));
    assert_eq!(a["eventId"], b["eventId"]);
    assert_eq!(event_count(&app).await, 2);
    app.forward_until(WAIT, || target.count() == 2).await;
    assert_eq!(app.forwarder.run_once().await.expect("step"), 0);
    assert_eq!(target.count(), 2, "one forward per event");
}

async fn limits_on_size_shape_rate_and_source(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let target = Receiver::start().await;
    app.integration(
        json!({"name": "tight", "scheme": "token", "secret": "tok", "signatureHeader": "x-token",
        "rateLimitPerMinute": 5, "targetUrl": target.url("/t")}),
    )
    .await;
    app.integration(
        json!({"name": "pinned", "scheme": "token", "secret": "tok", "signatureHeader": "x-token",
        "allowedCidrs": ["10.0.0.0/8"], "targetUrl": target.url("/p")}),
    )
    .await;
    app.integration(json!({"name": "open", "scheme": "token", "secret": "tok", "signatureHeader": "x-token", "targetUrl": target.url("/o")}))
        .await;
    let tok = [("x-token", "tok".to_owned())];
    let (status, err) = app.inbound("nobody", &tok, b"{}").await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("NOT_FOUND"))
    );
    let big = format!("{{\"x\":\"{}\"}}", "a".repeat(1024 * 1024));
    let (status, err) = app
        .post_oversize("/api/v1/webhooks/open", &tok, big.as_bytes())
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{err}");
    for not_object in [
        &b"[1,2]"[..],
        b"\"text\"",
        b"42",
        b"not json",
        b"{\"a\":\"nul\0\"}",
    ] {
        let (status, err) = app.inbound("open", &tok, not_object).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{err}");
        assert_eq!(err["error"]["code"], "VALIDATION_ERROR");
    }
    // serde_json's reserved raw-value key: a full parse (the forwarder's)
    // would read these objects as other JSON (an array, an id) than the one
    // checked. Refused, escaped or nested, and nothing is stored.
    for reserved in [
        &br#"{"$serde_json::private::RawValue":"[1,2]"}"#[..],
        br#"{"$serde_json::private::RawValu\u0065":"{\"id\":\"evt_1\"}"}"#,
        br#"{"data":{"object":{"$serde_json::private::RawValue":"{}"}}}"#,
    ] {
        let (status, err) = app.inbound("open", &tok, reserved).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{err}");
        assert_eq!(err["error"]["code"], "VALIDATION_ERROR");
        let message = err["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("$serde_json::private::RawValue"), "{err}");
    }
    assert_eq!(event_count(&app).await, 0, "no refused body was stored");
    let (status, err) = app.inbound("pinned", &tok, b"{}").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{err}");
    for i in 0..5 {
        let (status, _) = app
            .inbound("tight", &tok, format!("{{\"i\":{i}}}").as_bytes())
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "request {i}");
    }
    let resp = app
        .http
        .post(app.url("/api/v1/webhooks/tight"))
        .header("x-token", "tok")
        .body("{\"i\":6}")
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 429);
    assert!(resp.headers().contains_key("retry-after"));
    let (status, _) = app.inbound("open", &tok, b"{\"ok\":true}").await;
    assert_eq!(status, StatusCode::ACCEPTED, "limits are per provider");
}

async fn forwarding_retries_then_dead_letters_and_replay_delivers_again(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let target = Receiver::start().await;
    target.set_default(Reply::Status(500));
    app.integration(json!({"name": "acme", "scheme": "token", "secret": "tok", "signatureHeader": "x-token", "targetUrl": target.url("/a")})).await;
    let (_, accepted) = app
        .inbound("acme", &[("x-token", "tok".into())], br#"{"n":1}"#)
        .await;
    let id = accepted["eventId"].as_str().expect("id").to_owned();
    app.forward_until(WAIT, || target.count() == 3).await;
    let mut status = Value::Null;
    for _ in 0..100 {
        status = app
            .operator(Method::GET, &format!("/api/v1/events/{id}"), None)
            .await
            .1;
        if status["status"] == "dead" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(status["status"], "dead", "{status}");
    let (_, dead, _) = app
        .operator(Method::GET, "/api/v1/deliveries?status=dead", None)
        .await;
    assert_eq!(dead["items"].as_array().expect("items").len(), 1);
    let (_, ps, _) = app
        .operator(Method::GET, "/api/v1/processing-status", None)
        .await;
    assert_eq!(ps["jobs"]["dead"], 1);
    assert_eq!(ps["jobs"]["failed"], 2);

    // Replay, with its fields validated.
    let path = format!("/api/v1/events/{id}/replay");
    for bad in [
        json!({"requestedBy": "", "reason": "x"}),
        json!({"requestedBy": "a".repeat(101), "reason": "x"}),
        json!({"requestedBy": "ops", "reason": ""}),
        json!({"requestedBy": "ops", "reason": "r".repeat(501)}),
        json!({"requestedBy": "ops"}),
        json!({"requestedBy": "ops", "reason": "x", "force": true}),
    ] {
        let (status, err, _) = app.operator(Method::POST, &path, Some(bad.clone())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {err}");
    }
    let (status, _, _) = app
        .operator(
            Method::POST,
            "/api/v1/events/ie_missing/replay",
            Some(json!({"requestedBy": "ops", "reason": "x"})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    target.set_default(Reply::Status(200));
    let (status, replay, _) = app
        .operator(
            Method::POST,
            &path,
            Some(json!({"requestedBy": "ops@example.com", "reason": "target fixed"})),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{replay}");
    assert_eq!(replay["job"]["trigger"], "replay");
    app.forward_until(WAIT, || target.count() == 4).await;
    let (_, audit, _) = app
        .operator(Method::GET, "/api/v1/audit-entries?limit=100", None)
        .await;
    let replayed = audit["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|a| a["action"] == "event.replay_requested")
        .expect("audited");
    assert_eq!(replayed["details"]["requestedBy"], "ops@example.com");
}

async fn forwarded_requests_carry_a_verifiable_identity_token(backend: Backend) {
    use jsonwebtoken::{decode, decode_header, jwk::JwkSet, Algorithm, DecodingKey, Validation};
    let app = TestApp::spawn(backend).await;
    let target = Receiver::start().await;
    app.integration(json!({"name": "billing", "scheme": "token", "secret": "t", "signatureHeader": "x-t", "targetUrl": target.url("/b")})).await;
    let (status, _) = app
        .inbound(
            "billing",
            &[("x-t", "t".into()), ("x-correlation-id", "corr-42".into())],
            b"{\"n\":1}",
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    app.forward_until(WAIT, || target.count() == 1).await;
    let got = &target.received()[0];
    let auth = got.headers["authorization"].to_str().expect("ascii");
    let token = auth.strip_prefix("Bearer ").expect("bearer token");
    // What a downstream service does: fetch the JWKS from the ops listener, verify.
    let jwks: JwkSet = app
        .http
        .get(format!("http://{}/.well-known/jwks.json", app.ops))
        .send()
        .await
        .expect("jwks")
        .json()
        .await
        .expect("json");
    let kid = decode_header(token).expect("header").kid.expect("kid");
    let key = DecodingKey::from_jwk(jwks.find(&kid).expect("published key")).expect("key");
    let verify_for = |aud: &str| {
        let mut v = Validation::new(Algorithm::EdDSA);
        v.set_audience(&[aud]);
        v.set_issuer(&["hookwarden"]);
        decode::<Value>(token, &key, &v)
    };
    let claims = verify_for("billing")
        .expect("valid for its audience")
        .claims;
    assert_eq!(claims["sub"], "provider:billing");
    assert_eq!(claims["tenant"], "billing");
    assert_eq!(claims["cid"], "corr-42");
    assert_eq!(got.headers["x-correlation-id"], "corr-42");
    assert_eq!(
        claims["exp"].as_i64().expect("exp") - claims["iat"].as_i64().expect("iat"),
        60,
        "short-lived"
    );
    assert!(
        verify_for("another-service").is_err(),
        "a token for billing is refused by any other service"
    );
    // A forged token (signed by another key) does not verify with the published keys.
    let forged = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(b"guess"),
    )
    .expect("forge");
    let mut v = Validation::new(Algorithm::EdDSA);
    v.set_audience(&["billing"]);
    assert!(decode::<Value>(&forged, &key, &v).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn integration_cache_is_fresh_within_seconds_across_replicas() {
    let a = TestApp::spawn(Backend::Postgres).await;
    let b = a.replica(Backend::Postgres).await;
    let (status, _) = a.inbound("late", &[("x-t", "t".into())], b"{}").await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "unknown provider (now cached as absent on replica a)"
    );
    b.integration(json!({"name": "late", "scheme": "token", "secret": "t", "signatureHeader": "x-t", "targetUrl": "http://127.0.0.1:9/"})).await;
    let (status, _) = b
        .inbound("late", &[("x-t", "t".into())], b"{\"n\":1}")
        .await;
    assert_eq!(
        status,
        StatusCode::ACCEPTED,
        "the replica that made the change sees it at once"
    );
    let started = std::time::Instant::now();
    loop {
        let (status, _) = a
            .inbound("late", &[("x-t", "t".into())], b"{\"n\":2}")
            .await;
        if status == StatusCode::ACCEPTED {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(7),
            "replica a still refuses after {:?}",
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

on_both!(a_revoked_provider_secret_is_refused_at_once);

async fn a_revoked_provider_secret_is_refused_at_once(backend: Backend) {
    // A leaked provider secret is rotated out: from the moment the operator's
    // update returns, this replica refuses it (the integration cache is
    // invalidated with the change, not left to expire).
    let app = TestApp::spawn(backend).await;
    let body = br#"{"n":1}"#;
    let sig = |secret: &[u8], body: &[u8]| hex::encode(mac(secret, &[body]));
    app.integration(json!({"name": "acme", "scheme": "hmac-sha256", "secrets": ["leaked-secret"], "signatureHeader": "x-sig",
        "targetUrl": "http://127.0.0.1:9/"}))
        .await;
    let (status, _) = app
        .inbound("acme", &[("x-sig", sig(b"leaked-secret", body))], body)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (status, updated, _) = app
        .operator(
            Method::PATCH,
            "/api/v1/integrations/acme",
            Some(json!({"scheme": "hmac-sha256", "secrets": ["fresh-secret"], "signatureHeader": "x-sig", "targetUrl": "http://127.0.0.1:9/"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    let other = br#"{"n":2}"#;
    let (status, err) = app
        .inbound("acme", &[("x-sig", sig(b"leaked-secret", other))], other)
        .await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "the revoked secret is refused at once: {err}"
    );
    let (status, _) = app
        .inbound("acme", &[("x-sig", sig(b"fresh-secret", other))], other)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    // Deleting the integration stops its intake at once too.
    let (status, _, _) = app
        .operator(Method::DELETE, "/api/v1/integrations/acme", None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let third = br#"{"n":3}"#;
    let (status, _) = app
        .inbound("acme", &[("x-sig", sig(b"fresh-secret", third))], third)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

on_both!(overfull_signature_headers_are_refused_cheaply);

/// Thousands of candidate signatures with a body near 1 MiB used to cost one
/// MAC of the body each (seconds of CPU per request): now a 401 before any
/// hashing, and nothing stored.
async fn overfull_signature_headers_are_refused_cheaply(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let target = Receiver::start().await;
    let sw_secret = hookwarden_core::secret::WebhookSecret::generate()
        .expose()
        .to_string();
    for (name, scheme, secret) in [
        ("stripe", "stripe", "whsec_stripe_endpoint_secret"),
        ("sw", "standard-webhooks", sw_secret.as_str()),
    ] {
        app.integration(json!({"name": name, "scheme": scheme, "secret": secret, "targetUrl": target.url("/t")}))
            .await;
    }
    let mut body = br#"{"pad":""#.to_vec();
    body.resize(1024 * 1024 - 64, b'a');
    body.extend_from_slice(br#""}"#);
    let t = now();
    let fake = "ab".repeat(32);
    let stripe = format!("t={t},{}", vec![format!("v1={fake}"); 5_900].join(","));
    let sw: Sent = vec![
        ("webhook-id", "msg_1".into()),
        ("webhook-timestamp", t.to_string()),
        ("webhook-signature", vec!["v1,AAAA"; 8_500].join(" ")),
    ];
    for (provider, headers) in [("stripe", vec![("stripe-signature", stripe)]), ("sw", sw)] {
        let started = std::time::Instant::now();
        let (status, err) = app.inbound(provider, &headers, &body).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{provider}: {err}");
        assert_eq!(err["error"]["code"], "INVALID_SIGNATURE", "{provider}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{provider}: refused in {:?}",
            started.elapsed()
        );
    }
    assert_eq!(
        event_count(&app).await,
        0,
        "refused requests stored nothing"
    );
}
