//! Token verification: each forged, expired or under-scoped token fails.

use crate::helpers::*;
use axum::http::StatusCode;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hookwarden_store::on_both;
use serde_json::json;

on_both!(
    attacks_on_tokens_fail,
    scopes_are_enforced,
    refusals_name_the_claim_and_never_echo_the_token
);

async fn attacks_on_tokens_fail(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let good = app.tenant("acct_a");
    assert_eq!(app.get("/v1/webhooks", &good).await.0, StatusCode::OK);

    let now = chrono::Utc::now().timestamp();
    let expired = app.sign(&hookwarden_server::shared::jwt::Claims {
        exp: now - 3600,
        ..app.claims(Some("acct_a"), "webhooks:read")
    });
    let future = app.sign(&hookwarden_server::shared::jwt::Claims {
        nbf: Some(now + 3600),
        ..app.claims(Some("acct_a"), "webhooks:read")
    });
    let other_key = hookwarden_server::shared::jwt::mint_hs256(
        &secrecy::SecretString::from("not-the-server-secret".to_owned()),
        &app.claims(Some("acct_a"), "webhooks:read"),
    )
    .expect("token");
    // alg:none with a valid-looking body, and the body of a good token re-signed as none.
    let claims = URL_SAFE_NO_PAD.encode(
        serde_json::to_vec(&app.claims(Some("acct_a"), "webhooks:read webhooks:write"))
            .expect("json"),
    );
    let none = format!(
        "{}.{claims}.",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#)
    );
    // A good token's payload swapped for another account's: the signature no longer matches.
    let parts: Vec<&str> = good.split('.').collect();
    let swapped_claims = URL_SAFE_NO_PAD
        .encode(serde_json::to_vec(&app.claims(Some("acct_b"), "webhooks:read")).expect("json"));
    let tampered = format!("{}.{swapped_claims}.{}", parts[0], parts[2]);
    // HS256 header over an RS256-style key confusion attempt: unknown alg for our keys.
    let rs_header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","typ":"JWT"}"#);
    let rs = format!("{rs_header}.{claims}.{}", parts[2]);

    for (name, token) in [
        ("expired", expired),
        ("not yet valid", future),
        ("wrong key", other_key),
        ("alg none", none),
        ("tampered", tampered),
        ("alg switched", rs),
        ("garbage", "abc.def.ghi".to_owned()),
    ] {
        let (status, body, headers) = app.get("/v1/webhooks", &token).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{name}: {body}");
        assert_eq!(body["error"]["code"], "UNAUTHORIZED", "{name}");
        assert_eq!(headers["www-authenticate"], "Bearer");
    }
    let (status, _, _) = app
        .call(reqwest::Method::GET, "/v1/webhooks", None, None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let resp = app
        .http
        .get(app.url("/v1/webhooks"))
        .header("authorization", format!("Basic {good}"))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 401);
    // X-Account-Id from an unauthenticated caller is never identity.
    let resp = app
        .http
        .get(app.url("/v1/webhooks"))
        .header("x-account-id", "acct_a")
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 401);
    let (id, _) = app
        .create_webhook("acct_a", "https://example.com/h", &["*"])
        .await;
    let resp = app
        .http
        .get(app.url(&format!("/v1/webhooks/{id}")))
        .bearer_auth(app.tenant("acct_b"))
        .header("x-account-id", "acct_a")
        .send()
        .await
        .expect("send");
    assert_eq!(
        resp.status(),
        404,
        "the header does not override the token's account"
    );
}

async fn scopes_are_enforced(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let read_only = app.sign(&app.claims(Some("acct_a"), "webhooks:read"));
    let (status, body, _) = app
        .post(
            "/v1/webhooks",
            &read_only,
            json!({"url": "https://example.com", "eventTypes": ["*"]}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"]["code"], "FORBIDDEN");
    let write_only = app.sign(&app.claims(Some("acct_a"), "webhooks:write"));
    assert_eq!(
        app.get("/v1/webhooks", &write_only).await.0,
        StatusCode::FORBIDDEN
    );
    // A tenant token cannot publish; a producer token cannot manage webhooks.
    let event = json!({"accountId": "acct_a", "eventType": "t", "payload": {}});
    assert_eq!(
        app.post("/v1/events", &app.tenant("acct_a"), event.clone())
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.get("/v1/webhooks", &app.producer()).await.0,
        StatusCode::FORBIDDEN
    );
    // A producer token bound to an account may publish for that account only.
    let bound = app.sign(&app.claims(Some("acct_a"), "events:publish"));
    assert_eq!(
        app.post("/v1/events", &bound, event.clone()).await.0,
        StatusCode::ACCEPTED
    );
    let other = json!({"accountId": "acct_b", "eventType": "t", "payload": {}});
    assert_eq!(
        app.post("/v1/events", &bound, other).await.0,
        StatusCode::FORBIDDEN
    );
}

/// Each refusal names the claim at fault (`exp`, `nbf`, `iss`, `aud`, `sub`,
/// `account_id`, `scope`) and never repeats any of the token.
async fn refusals_name_the_claim_and_never_echo_the_token(backend: Backend) {
    use secrecy::ExposeSecret;
    let app = TestApp::with(
        backend,
        Options {
            issuer: Some("https://auth.example"),
            audience: Some("hookwarden"),
            ..Default::default()
        },
    )
    .await;
    let now = chrono::Utc::now().timestamp();
    let raw = |claims: serde_json::Value| {
        jsonwebtoken::encode(
            &jsonwebtoken::Header::default(),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(app.jwt_secret.expose_secret().as_bytes()),
        )
        .expect("token")
    };
    let good = json!({"sub": "svc-42", "account_id": "acct_a", "scope": "webhooks:read",
        "exp": now + 600, "iss": "https://auth.example", "aud": "hookwarden"});
    let with = |patch: serde_json::Value| {
        let mut c = good.clone();
        for (k, v) in patch.as_object().expect("object") {
            if v.is_null() {
                c.as_object_mut().expect("object").remove(k);
            } else {
                c[k] = v.clone();
            }
        }
        raw(c)
    };
    assert_eq!(
        app.get("/v1/webhooks", &raw(good.clone())).await.0,
        StatusCode::OK
    );
    // An audience list holding ours is accepted too (RFC 7519).
    assert_eq!(
        app.get(
            "/v1/webhooks",
            &with(json!({"aud": ["other", "hookwarden"]}))
        )
        .await
        .0,
        StatusCode::OK
    );
    let cases = [
        (
            with(json!({"exp": now - 3600})),
            StatusCode::UNAUTHORIZED,
            "token has expired (`exp`)",
        ),
        (
            with(json!({"exp": null})),
            StatusCode::UNAUTHORIZED,
            "token has no `exp` claim",
        ),
        (
            with(json!({"nbf": now + 3600})),
            StatusCode::UNAUTHORIZED,
            "token is not valid yet (`nbf`)",
        ),
        (
            with(json!({"sub": null})),
            StatusCode::UNAUTHORIZED,
            "token has no `sub` claim",
        ),
        (
            with(json!({"iss": null})),
            StatusCode::UNAUTHORIZED,
            "token has no `iss` claim",
        ),
        (
            with(json!({"iss": "https://evil.example"})),
            StatusCode::UNAUTHORIZED,
            "token issuer (`iss`) is not \"https://auth.example\"",
        ),
        (
            with(json!({"aud": "another-service"})),
            StatusCode::UNAUTHORIZED,
            "token audience (`aud`) is not \"hookwarden\"",
        ),
        (
            with(json!({"aud": null})),
            StatusCode::UNAUTHORIZED,
            "token has no `aud` claim",
        ),
        (
            with(json!({"account_id": 42})),
            StatusCode::UNAUTHORIZED,
            "token claim `account_id` must be a string",
        ),
        (
            with(json!({"scope": ["webhooks:read"]})),
            StatusCode::UNAUTHORIZED,
            "token claim `scope` must be a string of space-separated scopes",
        ),
        (
            with(json!({"account_id": null})),
            StatusCode::FORBIDDEN,
            "token has no `account_id` claim",
        ),
        (
            with(json!({"scope": "webhooks:write"})),
            StatusCode::FORBIDDEN,
            "token lacks scope webhooks:read (the `scope` claim, space-separated)",
        ),
    ];
    for (token, status, message) in cases {
        let (got, body, _) = app.get("/v1/webhooks", &token).await;
        assert_eq!(got, status, "{message}: {body}");
        assert_eq!(body["error"]["message"], message, "{body}");
        let text = body.to_string();
        for part in token.split('.') {
            assert!(!text.contains(part), "the answer echoes the token: {text}");
        }
        for value in ["svc-42", "evil.example", "another-service"] {
            assert!(!text.contains(value), "the answer echoes a claim: {text}");
        }
    }
}
