//! The operator API: key authentication (several keys for rotation),
//! integration management, strict query validation, search by delivery id,
//! the public routes.

use crate::helpers::*;
use axum::http::StatusCode;
use hookwarden_store::on_both;
use reqwest::Method;
use serde_json::{json, Value};

on_both!(
    operator_keys_are_required_and_compared_exactly,
    integrations_are_validated_and_never_show_secrets,
    event_queries_are_strict,
    events_are_found_by_delivery_id
);

async fn operator_keys_are_required_and_compared_exactly(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for path in [
        "/api/v1/integrations",
        "/api/v1/events",
        "/api/v1/deliveries",
        "/api/v1/audit-entries",
        "/api/v1/processing-status",
    ] {
        let resp = app.http.get(app.url(path)).send().await.expect("send");
        assert_eq!(resp.status(), 401, "{path} without a key");
        for wrong in [
            "",
            "op-key-current-012345678",
            "op-key-current-01234567890",
            "OP-KEY-CURRENT-0123456789",
        ] {
            let resp = app
                .http
                .get(app.url(path))
                .header("x-internal-api-key", wrong)
                .send()
                .await
                .expect("send");
            assert_eq!(resp.status(), 401, "{path} with {wrong:?}");
        }
        for key in [OPERATOR_KEY, OPERATOR_KEY_OLD] {
            let resp = app
                .http
                .get(app.url(path))
                .header("x-internal-api-key", key)
                .send()
                .await
                .expect("send");
            assert_eq!(resp.status(), 200, "{path}: both active keys work");
        }
        // A tenant token is not an operator credential.
        let resp = app
            .http
            .get(app.url(path))
            .bearer_auth(app.tenant("acct_a"))
            .send()
            .await
            .expect("send");
        assert_eq!(resp.status(), 401);
    }
    // Public routes need nothing.
    assert_eq!(
        app.http
            .get(app.url("/api/v1/health"))
            .send()
            .await
            .expect("health")
            .status(),
        200
    );
    let resp = app
        .http
        .post(app.url("/api/v1/internal/delivery-sink/acme"))
        .header("authorization", "Bearer forwarder-token-not-for-anyone")
        .header("x-acme-api-key", "a-key-not-for-anyone")
        .header("x-long", "v".repeat(4000))
        .body("{\"x\":1}")
        .send()
        .await
        .expect("sink");
    assert_eq!(resp.status(), 200);
    let (_, list, _) = app
        .call(
            Method::GET,
            "/api/v1/internal/delivery-sink/acme",
            None,
            None,
        )
        .await;
    assert_eq!(list["items"].as_array().expect("items").len(), 1);
    // Anyone may list the sink: a credential that came is shown as having
    // come, never its value, and a long header is kept cut short.
    let headers = &list["items"][0]["headers"];
    assert_eq!(headers["authorization"], "[redacted]");
    assert_eq!(headers["x-acme-api-key"], "[redacted]");
    assert!(!list.to_string().contains("forwarder-token-not-for-anyone"));
    assert!(!list.to_string().contains("a-key-not-for-anyone"));
    assert_eq!(headers["x-long"].as_str().map(str::len), Some(256));
}

async fn integrations_are_validated_and_never_show_secrets(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let good = json!({"name": "acme", "scheme": "hmac-sha256", "secret": "SUPERSECRETVALUE", "signatureHeader": "x-acme-signature",
        "targetUrl": "http://10.1.2.3:8080/internal"});
    let bad = [
        json!({"name": "Bad Name", "scheme": "token", "secret": "s", "signatureHeader": "x-t", "targetUrl": "http://svc/"}),
        json!({"name": "x", "scheme": "md5", "secret": "s", "targetUrl": "http://svc/"}),
        json!({"name": "x", "scheme": "hmac-sha256", "secret": "s", "targetUrl": "http://svc/"}),
        json!({"name": "x", "scheme": "token", "signatureHeader": "x-t", "targetUrl": "http://svc/"}),
        json!({"name": "x", "scheme": "token", "secret": "s", "signatureHeader": "x-t", "targetUrl": "ftp://svc/"}),
        json!({"name": "x", "scheme": "token", "secret": "s", "signatureHeader": "x-t", "targetUrl": "http://u:p@svc/"}),
        json!({"name": "x", "scheme": "token", "secret": "s", "signatureHeader": "x-t", "targetUrl": "http://svc/", "toleranceSeconds": 0}),
        json!({"name": "x", "scheme": "token", "secret": "s", "signatureHeader": "x-t", "targetUrl": "http://svc/", "allowedCidrs": ["nope"]}),
        json!({"name": "x", "scheme": "standard-webhooks", "secret": "not-whsec", "targetUrl": "http://svc/"}),
        json!({"name": "x", "scheme": "token", "secret": "s", "signatureHeader": "x-t", "targetUrl": "http://svc/", "extra": 1}),
    ];
    for body in bad {
        let (status, err, _) = app
            .operator(Method::POST, "/api/v1/integrations", Some(body.clone()))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {err}");
        assert!(!err.to_string().contains("SUPERSECRET"));
    }
    let (status, created, _) = app
        .operator(Method::POST, "/api/v1/integrations", Some(good.clone()))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert!(created["forwardingSecret"]
        .as_str()
        .expect("shown once")
        .starts_with("whsec_"));
    let (status, _, _) = app
        .operator(Method::POST, "/api/v1/integrations", Some(good.clone()))
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let mut rotated = good.clone();
    rotated.as_object_mut().expect("object").remove("name");
    rotated.as_object_mut().expect("object").remove("secret");
    rotated["secrets"] = json!(["NEWSECRETVALUE", "SUPERSECRETVALUE"]);
    let (status, updated, _) = app
        .operator(Method::PATCH, "/api/v1/integrations/acme", Some(rotated))
        .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    for (_, body, _) in [
        app.operator(Method::GET, "/api/v1/integrations", None)
            .await,
        app.operator(Method::GET, "/api/v1/integrations/acme", None)
            .await,
        (StatusCode::OK, updated.clone(), Default::default()),
    ] {
        let text = body.to_string();
        assert!(
            !text.contains("SUPERSECRET")
                && !text.contains("NEWSECRET")
                && !text.contains("whsec_"),
            "{text}"
        );
    }
    // Both secrets verify during the rotation.
    for secret in [&b"SUPERSECRETVALUE"[..], b"NEWSECRETVALUE"] {
        let body = format!("{{\"s\":{}}}", secret.len());
        let sig = hex::encode(hmac_sha256(secret, body.as_bytes()));
        let (status, _) = app
            .inbound("acme", &[("x-acme-signature", sig)], body.as_bytes())
            .await;
        assert_eq!(status, StatusCode::ACCEPTED);
    }
    let (_, audit, _) = app
        .operator(Method::GET, "/api/v1/audit-entries", None)
        .await;
    let actions: Vec<&str> = audit["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|a| a["action"].as_str().expect("action"))
        .collect();
    assert_eq!(
        actions,
        [
            "integration.created",
            "integration.updated",
            "integration.secret_rotated"
        ]
    );
    let (status, _, _) = app
        .operator(Method::DELETE, "/api/v1/integrations/acme", None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(
        app.operator(Method::GET, "/api/v1/integrations/acme", None)
            .await
            .0,
        StatusCode::NOT_FOUND
    );
}

fn hmac_sha256(key: &[u8], body: &[u8]) -> Vec<u8> {
    use hmac::{Hmac, Mac};
    let mut m = <Hmac<sha2::Sha256> as Mac>::new_from_slice(key).expect("key");
    m.update(body);
    m.finalize().into_bytes().to_vec()
}

async fn event_queries_are_strict(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let target = Receiver::start().await;
    app.integration(json!({"name": "acme", "scheme": "token", "secret": "t", "signatureHeader": "x-t", "targetUrl": target.url("/a")})).await;
    for i in 0..5 {
        app.inbound(
            "acme",
            &[("x-t", "t".into())],
            format!("{{\"i\":{i}}}").as_bytes(),
        )
        .await;
    }
    for bad in [
        "limit=101",
        "limit=0",
        "limit=x",
        "sort=name",
        "sort=createdAt,id",
        "status=done",
        "from=yesterday",
        "to=2026-13-01T00:00:00Z",
        "cursor=garbage",
        "provider=Bad%20Name",
        "colour=red",
    ] {
        let (status, err, _) = app
            .operator(Method::GET, &format!("/api/v1/events?{bad}"), None)
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {err}");
        assert_eq!(err["error"]["code"], "VALIDATION_ERROR");
    }
    let (_, first, _) = app
        .operator(Method::GET, "/api/v1/events?limit=2&sort=-createdAt", None)
        .await;
    let items = first["items"].as_array().expect("items");
    assert_eq!(items.len(), 2);
    assert!(items[0]["createdAt"].as_str() >= items[1]["createdAt"].as_str());
    let mut seen = 2;
    let mut cursor = first["nextCursor"].as_str().map(str::to_owned);
    while let Some(c) = cursor {
        let (_, page, _) = app
            .operator(
                Method::GET,
                &format!("/api/v1/events?limit=2&sort=-createdAt&cursor={c}"),
                None,
            )
            .await;
        seen += page["items"].as_array().expect("items").len();
        cursor = page["nextCursor"].as_str().map(str::to_owned);
    }
    assert_eq!(seen, 5);
    let (_, filtered, _) = app
        .operator(
            Method::GET,
            "/api/v1/events?provider=acme&status=pending&from=2000-01-01T00:00:00Z",
            None,
        )
        .await;
    assert_eq!(filtered["items"].as_array().expect("items").len(), 5);
    let (_, none, _) = app
        .operator(Method::GET, "/api/v1/events?provider=other", None)
        .await;
    assert_eq!(none["items"], Value::Array(vec![]));
    assert_eq!(
        app.operator(Method::GET, "/api/v1/events/ie_missing", None)
            .await
            .0,
        StatusCode::NOT_FOUND
    );
}

async fn events_are_found_by_delivery_id(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let target = Receiver::start().await;
    for name in ["acme", "globex"] {
        app.integration(
            json!({"name": name, "scheme": "token", "secret": "t", "signatureHeader": "x-t",
            "idempotencyHeader": "x-delivery", "targetUrl": target.url("/a")}),
        )
        .await;
    }
    // The token scheme deduplicates by the body: each body is a new event,
    // whatever delivery id it carries; two providers may send the same id.
    let mut sent = Vec::new();
    for (i, (provider, delivery)) in [
        ("acme", "d-1"),
        ("globex", "d-1"),
        ("acme", "d-2"),
        ("acme", "d-1"),
    ]
    .into_iter()
    .enumerate()
    {
        let (status, body) = app
            .inbound(
                provider,
                &[("x-t", "t".into()), ("x-delivery", delivery.into())],
                format!("{{\"i\":{i}}}").as_bytes(),
            )
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        sent.push(body["eventId"].as_str().expect("eventId").to_owned());
    }
    let list = |query: String| {
        let app = &app;
        async move {
            let (status, page, _) = app
                .operator(Method::GET, &format!("/api/v1/events?{query}"), None)
                .await;
            assert_eq!(status, StatusCode::OK, "{query}: {page}");
            page
        }
    };
    let ids = |page: &Value| -> Vec<String> {
        page["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|e| e["id"].as_str().expect("id").to_owned())
            .collect()
    };
    let pick = |at: &[usize]| at.iter().map(|&i| sent[i].clone()).collect::<Vec<_>>();

    let any = list("deliveryId=d-1".into()).await;
    assert_eq!(ids(&any), pick(&[0, 1, 3]));
    assert!(any["items"]
        .as_array()
        .expect("items")
        .iter()
        .all(|e| e["deliveryId"] == "d-1"));
    let acme = list("deliveryId=d-1&provider=acme&status=pending".into()).await;
    assert_eq!(ids(&acme), pick(&[0, 3]));
    // Pages of one, newest first, with the cursor of each.
    let mut walked = Vec::new();
    let mut query = "deliveryId=d-1&limit=1&sort=-createdAt".to_owned();
    loop {
        let page = list(query.clone()).await;
        walked.extend(ids(&page));
        let Some(c) = page["nextCursor"].as_str() else {
            break;
        };
        query = format!("deliveryId=d-1&limit=1&sort=-createdAt&cursor={c}");
    }
    assert_eq!(walked, pick(&[3, 1, 0]));
    for none in [
        "deliveryId=d-3",
        "deliveryId=D-1",
        "deliveryId=d-2&provider=globex",
        "deliveryId=d-1&status=dead",
    ] {
        let page = list(none.into()).await;
        assert_eq!(page["items"], Value::Array(vec![]), "{none}");
        assert_eq!(page["nextCursor"], Value::Null, "{none}");
    }
    // The longest id a delivery can carry is a valid search.
    let longest = "x".repeat(200);
    assert_eq!(
        ids(&list(format!("deliveryId={longest}")).await),
        Vec::<String>::new()
    );
    for bad in [
        "deliveryId=".to_owned(),
        format!("deliveryId={longest}y"),
        "deliveryid=d-1".to_owned(),
        "delivery_id=d-1".to_owned(),
    ] {
        let (status, err, _) = app
            .operator(Method::GET, &format!("/api/v1/events?{bad}"), None)
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {err}");
        assert_eq!(err["error"]["code"], "VALIDATION_ERROR");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn production_hides_the_delivery_sink() {
    let app = TestApp::with(
        Backend::Sqlite,
        Options {
            allow_loopback: false,
            production: true,
            issuer: Some("https://auth.example"),
            audience: Some("hookwarden"),
            ..Default::default()
        },
    )
    .await;
    let resp = app
        .http
        .post(app.url("/api/v1/internal/delivery-sink/acme"))
        .body("{}")
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 404);
    assert_eq!(
        app.http
            .get(app.url("/api/v1/health"))
            .send()
            .await
            .expect("health")
            .status(),
        200
    );
}
