//! The public ingress under attack (issue 13, items 2–5, 13 and 15): refusals
//! that cost no durable write, limits that a client cannot dodge by choosing
//! its address, replays that stay duplicates whatever their unsigned headers
//! say, revocations that reach every replica within a second, and forwarding
//! of the exact verified bytes.

use crate::helpers::*;
use axum::http::StatusCode;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use futures_util::StreamExt;
use hmac::{Hmac, Mac};
use hookwarden_store::on_both;
use reqwest::Method;
use serde_json::{json, Value};
use sha2::Sha256;
use std::time::{Duration, Instant};

on_both!(
    a_flood_of_forgeries_from_many_addresses_writes_nothing_and_valid_traffic_goes_on,
    a_replay_with_a_fresh_unsigned_delivery_id_is_still_a_duplicate,
    a_revocation_on_one_replica_applies_on_the_other_within_a_second,
    the_exact_verified_bytes_are_forwarded_when_asked,
);

fn mac(key: &[u8], body: &[u8]) -> Vec<u8> {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("key");
    m.update(body);
    m.finalize().into_bytes().to_vec()
}

/// Posts to the ingress as if a proxy forwarded it for `client`.
async fn from(
    app: &TestApp,
    provider: &str,
    client: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> StatusCode {
    let mut h: Vec<(&str, String)> = headers.to_vec();
    h.push(("x-forwarded-for", client.to_owned()));
    app.inbound(provider, &h, body).await.0
}

async fn audit(app: &TestApp) -> Vec<Value> {
    let (_, list, _) = app
        .operator(Method::GET, "/api/v1/audit-entries?limit=100", None)
        .await;
    list["items"].as_array().expect("items").clone()
}

async fn a_flood_of_forgeries_from_many_addresses_writes_nothing_and_valid_traffic_goes_on(
    backend: Backend,
) {
    let app = TestApp::with(backend, behind_proxy(None)).await;
    let target = Receiver::start().await;
    app.integration(json!({"name": "acme", "scheme": "hmac-sha256", "secret": "acme-secret",
        "signatureHeader": "x-acme-signature", "rateLimitPerMinute": 100000, "targetUrl": target.url("/a")}))
        .await;
    app.integration(json!({"name": "pinned", "scheme": "hmac-sha256", "secret": "acme-secret",
        "signatureHeader": "x-acme-signature", "allowedCidrs": ["192.0.2.0/24"], "targetUrl": target.url("/p")}))
        .await;
    // Refusals are aggregated per minute, flushed as each minute ends: one
    // in the flood's middle would add entries (and split its counts).
    early_in_a_minute(20).await;
    let entries_before = audit(&app).await.len();
    // 1,200 forged or out-of-range requests from 600 addresses in two /24s
    // and a /48, 32 at a time, while a genuine provider sends 100 events.
    let flood = {
        let (http, base) = (app.http.clone(), app.url("/api/v1/webhooks/"));
        tokio::spawn(async move {
            let statuses = futures_util::stream::iter(0..1200u32)
                .map(|i| {
                    let (http, base) = (http.clone(), base.clone());
                    async move {
                        let client = match i % 3 {
                            0 => format!("198.51.100.{}", i % 200),
                            1 => format!("203.0.113.{}", i % 200),
                            _ => format!("2001:db8:77:{:x}::1", i % 200),
                        };
                        let provider = if i % 4 == 0 { "pinned" } else { "acme" };
                        http.post(format!("{base}{provider}"))
                            .header("x-forwarded-for", client)
                            .header("x-acme-signature", "00".repeat(32))
                            .body(format!("{{\"forged\":{i}}}"))
                            .send()
                            .await
                            .map(|r| r.status().as_u16())
                            .unwrap_or(0)
                    }
                })
                .buffer_unordered(32)
                .collect::<Vec<u16>>()
                .await;
            statuses
        })
    };
    let mut valid = Vec::new();
    for i in 0..100 {
        let body = format!("{{\"order\":{i}}}");
        let sig = hex::encode(mac(b"acme-secret", body.as_bytes()));
        valid.push(
            from(
                &app,
                "acme",
                "192.0.2.10",
                &[("x-acme-signature", sig)],
                body.as_bytes(),
            )
            .await,
        );
    }
    let statuses = flood.await.expect("flood");
    assert!(
        valid.iter().all(|s| *s == StatusCode::ACCEPTED),
        "every genuine event accepted during the flood: {valid:?}"
    );
    assert!(
        statuses.iter().all(|s| [401, 403].contains(s)),
        "the flood is refused, never a 5xx: {:?}",
        statuses
            .iter()
            .filter(|s| ![401, 403].contains(*s))
            .collect::<Vec<_>>()
    );
    // Nothing was written per refusal...
    assert_eq!(
        audit(&app).await.len(),
        entries_before,
        "no audit write per refused request"
    );
    // ...they reach the audit trail aggregated, with their counts.
    app.state.refusals.flush(&app.state, true).await;
    let refusals: Vec<Value> = audit(&app)
        .await
        .into_iter()
        .filter(|a| a["action"] == "inbound.verification_failed")
        .collect();
    let total: u64 = refusals
        .iter()
        .map(|a| a["details"]["count"].as_u64().expect("count"))
        .sum();
    assert_eq!(total, 1200);
    assert!(
        refusals.len() <= 12,
        "{} entries for 1,200 refusals",
        refusals.len()
    );
    for r in &refusals {
        let d = &r["details"];
        assert!(
            [
                "signature_malformed",
                "signature_mismatch",
                "source_not_allowed"
            ]
            .contains(&d["reason"].as_str().expect("reason")),
            "{d}"
        );
        assert!(
            ["198.51.100.0/24", "203.0.113.0/24", "2001:db8:77::/48"]
                .contains(&d["sourcePrefix"].as_str().expect("prefix")),
            "{d}"
        );
        assert!(d["minute"].as_str().is_some());
    }
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_forwarded_client_is_limited_and_pinned() {
    let app = TestApp::with(Backend::Sqlite, behind_proxy(None)).await;
    let target = Receiver::start().await;
    let tok = |t: &str| vec![("x-token", t.to_owned())];
    app.integration(
        json!({"name": "pinned", "scheme": "token", "secret": "tok", "signatureHeader": "x-token",
        "allowedCidrs": ["198.51.100.0/24", "2001:db8:1::/48"], "targetUrl": target.url("/p")}),
    )
    .await;
    app.integration(
        json!({"name": "tight", "scheme": "token", "secret": "tok", "signatureHeader": "x-token",
        "rateLimitPerMinute": 3, "targetUrl": target.url("/t")}),
    )
    .await;
    assert_eq!(
        from(&app, "pinned", "198.51.100.7", &tok("tok"), b"{\"a\":1}").await,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        from(&app, "pinned", "203.0.113.5", &tok("tok"), b"{\"a\":2}").await,
        StatusCode::FORBIDDEN
    );
    // The client wrote the left entry itself; our proxy appended the right one.
    assert_eq!(
        from(
            &app,
            "pinned",
            "198.51.100.7, 203.0.113.5",
            &tok("tok"),
            b"{\"a\":3}"
        )
        .await,
        StatusCode::FORBIDDEN
    );
    let forwarded = app
        .http
        .post(app.url("/api/v1/webhooks/pinned"))
        .header("x-token", "tok")
        .header("forwarded", "for=\"[2001:db8:1:2::9]:443\"")
        .body("{\"a\":4}")
        .send()
        .await
        .expect("send");
    assert_eq!(
        forwarded.status(),
        403,
        "a Forwarded header is not read when the proxies write X-Forwarded-For"
    );
    // Limits count the forwarded client; IPv6 clients by their /64.
    for i in 0..3 {
        let body = format!("{{\"t\":{i}}}");
        assert_eq!(
            from(
                &app,
                "tight",
                "2001:db8:5:6::1",
                &tok("tok"),
                body.as_bytes()
            )
            .await,
            StatusCode::ACCEPTED
        );
    }
    assert_eq!(
        from(
            &app,
            "tight",
            "2001:db8:5:6:ffff::2",
            &tok("tok"),
            b"{\"t\":9}"
        )
        .await,
        StatusCode::TOO_MANY_REQUESTS,
        "another address of the same /64 is the same client"
    );
    assert_eq!(
        from(&app, "tight", "2001:db8:5:7::1", &tok("tok"), b"{\"t\":10}").await,
        StatusCode::ACCEPTED
    );

    // Proxies that write RFC 7239 Forwarded: that header, and only it.
    let fwd = TestApp::with(
        Backend::Sqlite,
        Options {
            customize: Some(Box::new(|raw| {
                raw.set("trusted_proxies", "127.0.0.1/32,::1/128");
                raw.set("trusted_proxy_header", "forwarded");
            })),
            ..Default::default()
        },
    )
    .await;
    fwd.integration(
        json!({"name": "pinned", "scheme": "token", "secret": "tok", "signatureHeader": "x-token",
        "allowedCidrs": ["2001:db8:1::/48"], "targetUrl": target.url("/p")}),
    )
    .await;
    let via_forwarded = |value: &'static str, xff: &'static str, n: u32| {
        fwd.http
            .post(fwd.url("/api/v1/webhooks/pinned"))
            .header("x-token", "tok")
            .header("forwarded", value)
            .header("x-forwarded-for", xff)
            .body(format!("{{\"f\":{n}}}"))
            .send()
    };
    let ok = via_forwarded("for=\"[2001:db8:1:2::9]:443\"", "198.51.100.1", 1)
        .await
        .expect("send");
    assert_eq!(
        ok.status(),
        202,
        "Forwarded (RFC 7239) read when configured"
    );
    let spoofed = via_forwarded("for=198.51.100.1", "2001:db8:1:2::9", 2)
        .await
        .expect("send");
    assert_eq!(spoofed.status(), 403, "X-Forwarded-For is then never read");

    // Without trusted proxies (the default) the headers choose nothing.
    let plain = TestApp::spawn(Backend::Sqlite).await;
    plain
        .integration(json!({"name": "pinned", "scheme": "token", "secret": "tok", "signatureHeader": "x-token",
            "allowedCidrs": ["198.51.100.0/24"], "targetUrl": target.url("/p")}))
        .await;
    plain
        .integration(json!({"name": "tight", "scheme": "token", "secret": "tok", "signatureHeader": "x-token",
            "rateLimitPerMinute": 3, "targetUrl": target.url("/t")}))
        .await;
    assert_eq!(
        from(&plain, "pinned", "198.51.100.7", &tok("tok"), b"{\"a\":1}").await,
        StatusCode::FORBIDDEN
    );
    for i in 0..3 {
        let client = format!("198.51.100.{i}");
        let body = format!("{{\"t\":{i}}}");
        assert_eq!(
            from(&plain, "tight", &client, &tok("tok"), body.as_bytes()).await,
            StatusCode::ACCEPTED
        );
    }
    assert_eq!(
        from(&plain, "tight", "198.51.100.99", &tok("tok"), b"{\"t\":99}").await,
        StatusCode::TOO_MANY_REQUESTS,
        "a fresh X-Forwarded-For does not make a fresh client"
    );
}

#[tokio::test]
async fn a_client_that_keeps_failing_authentication_is_refused_before_any_work() {
    let app = TestApp::with(Backend::Sqlite, behind_proxy(Some(10))).await;
    let target = Receiver::start().await;
    app.integration(
        json!({"name": "acme", "scheme": "hmac-sha256", "secret": "acme-secret",
        "signatureHeader": "x-acme-signature", "targetUrl": target.url("/a")}),
    )
    .await;
    let body = b"{\"n\":1}";
    let good = vec![("x-acme-signature", hex::encode(mac(b"acme-secret", body)))];
    let bad = vec![("x-acme-signature", "00".repeat(32))];
    // Forgeries count against the client in this provider's scope.
    for _ in 0..10 {
        assert_eq!(
            from(&app, "acme", "198.51.100.1", &bad, body).await,
            StatusCode::UNAUTHORIZED
        );
    }
    // Over its limit the client is answered 429 even with a valid signature:
    // nothing is verified, looked up or stored for it.
    let (status, err) = app
        .inbound(
            "acme",
            &[good[0].clone(), ("x-forwarded-for", "198.51.100.1".into())],
            body,
        )
        .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{err}");
    assert_eq!(err["error"]["code"], "RATE_LIMITED");
    // Another client is not affected.
    assert_eq!(
        from(&app, "acme", "198.51.100.2", &good, body).await,
        StatusCode::ACCEPTED
    );
    // Bad tenant tokens count in the APIs' scope, apart from the ingress.
    let tenant = |client: &'static str| {
        app.http
            .get(app.url("/v1/webhooks"))
            .header("authorization", "Bearer not-a-token")
            .header("x-forwarded-for", client)
    };
    for _ in 0..10 {
        assert_eq!(
            tenant("198.51.100.4").send().await.expect("send").status(),
            401
        );
    }
    assert_eq!(
        tenant("198.51.100.4").send().await.expect("send").status(),
        429
    );
    let other = b"{\"n\":2}";
    let signed = vec![("x-acme-signature", hex::encode(mac(b"acme-secret", other)))];
    assert_eq!(
        from(&app, "acme", "198.51.100.4", &signed, other).await,
        StatusCode::ACCEPTED,
        "its provider traffic is a scope of its own"
    );
    // Requests naming no integration are limited per client on their own.
    for i in 0..10 {
        assert_eq!(
            from(&app, &format!("nobody{i}"), "198.51.100.3", &bad, body).await,
            StatusCode::NOT_FOUND
        );
    }
    assert_eq!(
        from(&app, "nobody-else", "198.51.100.3", &bad, body).await,
        StatusCode::TOO_MANY_REQUESTS
    );
}

async fn a_replay_with_a_fresh_unsigned_delivery_id_is_still_a_duplicate(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let target = Receiver::start().await;
    app.integration(json!({"name": "github", "scheme": "github", "secret": "gh-secret", "targetUrl": target.url("/g")}))
        .await;
    app.integration(json!({"name": "shopify", "scheme": "shopify", "secret": "shp-secret", "targetUrl": target.url("/s")}))
        .await;
    app.integration(json!({"name": "acme", "scheme": "hmac-sha256", "secret": "acme-secret",
        "signatureHeader": "x-acme-signature", "idempotencyHeader": "x-acme-delivery", "targetUrl": target.url("/a")}))
        .await;
    let body: &[u8] = br#"{"action":"opened","number":7}"#;
    let github = |delivery: &str| {
        vec![
            (
                "x-hub-signature-256",
                format!("sha256={}", hex::encode(mac(b"gh-secret", body))),
            ),
            ("x-github-event", "pull_request".to_owned()),
            ("x-github-delivery", delivery.to_owned()),
        ]
    };
    let shopify = |delivery: &str| {
        vec![
            (
                "x-shopify-hmac-sha256",
                STANDARD.encode(mac(b"shp-secret", body)),
            ),
            ("x-shopify-webhook-id", delivery.to_owned()),
        ]
    };
    let acme = |delivery: &str| {
        vec![
            ("x-acme-signature", hex::encode(mac(b"acme-secret", body))),
            ("x-acme-delivery", delivery.to_owned()),
        ]
    };
    for (provider, headers) in [
        (
            "github",
            &github as &dyn Fn(&str) -> Vec<(&'static str, String)>,
        ),
        ("shopify", &shopify),
        ("acme", &acme),
    ] {
        let (status, first) = app.inbound(provider, &headers("d-1"), body).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{provider}: {first}");
        // The captured request, re-sent with fresh delivery ids: duplicates.
        for fresh in ["d-2", "d-3", "d-future"] {
            let (status, again) = app.inbound(provider, &headers(fresh), body).await;
            assert_eq!(status, StatusCode::OK, "{provider} {fresh}: {again}");
            assert_eq!(again["duplicate"], true);
            assert_eq!(again["eventId"], first["eventId"]);
        }
    }
    // The captured body did not claim "d-future": a genuine new delivery
    // carrying that id is a new event.
    let other: &[u8] = br#"{"action":"closed","number":7}"#;
    let (status, _) = app
        .inbound(
            "github",
            &[
                (
                    "x-hub-signature-256",
                    format!("sha256={}", hex::encode(mac(b"gh-secret", other))),
                ),
                ("x-github-delivery", "d-future".to_owned()),
            ],
            other,
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    app.forward_until(Duration::from_secs(20), || target.count() == 4)
        .await;
    app.clock.advance(Duration::from_millis(300));
    let _ = app.forwarder.run_once().await;
    assert_eq!(
        target.count(),
        4,
        "each event forwarded once, replays never"
    );
    // The event still shows the provider's delivery id.
    let (_, events, _) = app
        .operator(
            Method::GET,
            "/api/v1/events?provider=github&sort=createdAt",
            None,
        )
        .await;
    assert_eq!(events["items"][0]["deliveryId"], "d-1");

    // An idempotency header cannot replace an id the scheme signs.
    for scheme in ["stripe", "standard-webhooks"] {
        let (status, err, _) = app
            .operator(
                Method::POST,
                "/api/v1/integrations",
                Some(json!({"name": format!("x-{}", &scheme[..6]), "scheme": scheme,
                    "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "idempotencyHeader": "x-request-id",
                    "targetUrl": target.url("/x")})),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{scheme}: {err}");
        assert!(err["error"]["message"]
            .as_str()
            .expect("message")
            .contains("idempotencyHeader"));
    }
}

async fn send(app: &TestApp, token: &str, n: u32) -> StatusCode {
    let body = format!("{{\"n\":{n}}}");
    app.inbound("globex", &[("x-token", token.to_owned())], body.as_bytes())
        .await
        .0
}

async fn a_revocation_on_one_replica_applies_on_the_other_within_a_second(backend: Backend) {
    let a = TestApp::spawn(backend).await;
    let b = TestApp::with(
        backend,
        Options {
            shared: Some((a.database_url.clone(), a.master_key.clone())),
            ..Default::default()
        },
    )
    .await;
    let target = Receiver::start().await;
    let spec = |secrets: &[&str]| json!({"scheme": "token", "secrets": secrets, "signatureHeader": "x-token", "targetUrl": target.url("/g")});
    let mut create = spec(&["old-token"]);
    create["name"] = json!("globex");
    a.integration(create).await;
    // Replica b learns the integration and accepts the old token.
    // Each deadline is judged by when a request was sent, not by when its
    // answer came: a loaded machine may answer late, but a request sent a
    // second after the change must see it.
    let started = Instant::now();
    loop {
        let sent = Instant::now();
        if send(&b, "old-token", 0).await == StatusCode::ACCEPTED {
            break;
        }
        assert!(
            sent - started < Duration::from_secs(1),
            "b sees a new integration within a second"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Rotated out on a: b refuses the old token within a second.
    let (status, body, _) = a
        .operator(
            Method::PATCH,
            "/api/v1/integrations/globex",
            Some(spec(&["new-token"])),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let revoked = Instant::now();
    let mut n = 1;
    loop {
        n += 1;
        let sent = Instant::now();
        if send(&b, "old-token", n).await == StatusCode::UNAUTHORIZED {
            break;
        }
        assert!(
            sent - revoked < Duration::from_secs(1),
            "the old token still verifies on b after a second"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(send(&b, "new-token", 100).await, StatusCode::ACCEPTED);
    // Deleted on a: b stops accepting within a second.
    let (status, _, _) = a
        .operator(Method::DELETE, "/api/v1/integrations/globex", None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let deleted = Instant::now();
    loop {
        n += 1;
        let sent = Instant::now();
        if send(&b, "new-token", n).await == StatusCode::NOT_FOUND {
            break;
        }
        assert!(
            sent - deleted < Duration::from_secs(1),
            "a deleted integration still verifies on b"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn the_exact_verified_bytes_are_forwarded_when_asked(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let target = Receiver::start().await;
    let raw_secret = app
        .integration(json!({"name": "raw", "scheme": "hmac-sha256", "secret": "s", "signatureHeader": "x-sig",
            "forwardRawBody": true, "targetUrl": target.url("/raw")}))
        .await;
    app.integration(json!({"name": "envelope", "scheme": "hmac-sha256", "secret": "s", "signatureHeader": "x-sig",
        "targetUrl": target.url("/envelope")}))
        .await;
    // Duplicate keys and a number no f64 holds: re-serializing would change both.
    let body: &[u8] = br#"{"amount": 123456789012345678901234567890, "a": 1, "a": 2}"#;
    let sig = vec![("x-sig", hex::encode(mac(b"s", body)))];
    assert_eq!(app.inbound("raw", &sig, body).await.0, StatusCode::ACCEPTED);
    assert_eq!(
        app.inbound("envelope", &sig, body).await.0,
        StatusCode::ACCEPTED
    );
    app.forward_until(Duration::from_secs(20), || target.count() == 2)
        .await;
    let got = target.received();
    let raw = got
        .iter()
        .find(|r| r.path == "/raw")
        .expect("raw forwarded");
    assert_eq!(&raw.body[..], body, "the exact bytes the provider signed");
    assert_eq!(
        reference_verify(&raw_secret, std::slice::from_ref(raw)),
        ["ok"]
    );
    assert!(raw.headers.contains_key("x-hookwarden-received-at"));
    let envelope = got
        .iter()
        .find(|r| r.path == "/envelope")
        .expect("envelope forwarded");
    let parsed: Value = serde_json::from_slice(&envelope.body).expect("json");
    assert_eq!(
        parsed["provider"], "envelope",
        "the default stays the normalized envelope"
    );
    let (_, view, _) = app
        .operator(Method::GET, "/api/v1/integrations/raw", None)
        .await;
    assert_eq!(view["forwardRawBody"], true);
}

#[tokio::test]
async fn two_account_headers_are_refused() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let resp = app
        .http
        .get(app.url("/v1/webhooks"))
        .header("authorization", format!("Bearer {}", app.tenant("acct_1")))
        .header("x-account-id", "acct_1")
        .header("x-account-id", "acct_2")
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["error"]["code"], "VALIDATION_ERROR");
}
