//! Every answer is the error JSON of SPEC §3: path parameters that do not
//! decode, cursors that are not ours, and rejections by the framework itself.

use crate::helpers::*;
use axum::http::StatusCode;
use hookwarden_store::on_both;
use reqwest::Method;
use serde_json::{json, Value};

on_both!(
    undecodable_path_parameters_answer_400_naming_them,
    malformed_cursors_answer_400_on_every_list_route,
);

/// The error body of SPEC §3 with this code, and its message.
fn assert_error(status: StatusCode, body: &Value, want: StatusCode, code: &str, what: &str) {
    assert_eq!(status, want, "{what}: {body}");
    assert_eq!(body["error"]["code"], code, "{what}: {body}");
    assert!(body["error"]["message"].is_string(), "{what}: {body}");
    assert!(
        body["error"]["requestId"]
            .as_str()
            .is_some_and(|r| !r.is_empty()),
        "{what}: {body}"
    );
}

async fn undecodable_path_parameters_answer_400_naming_them(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let tenant = app.tenant("acct_p");
    let producer = app.producer();
    // `%FF` decodes to no UTF-8: axum's own rejection was a bare 400.
    let bad = "%FF";
    let webhook = json!({"url": "https://example.com/h", "eventTypes": ["*"]});
    let tenant_routes = [
        (Method::GET, format!("/v1/webhooks/{bad}"), None, "id"),
        (
            Method::PUT,
            format!("/v1/webhooks/{bad}"),
            Some(webhook.clone()),
            "id",
        ),
        (Method::DELETE, format!("/v1/webhooks/{bad}"), None, "id"),
        (
            Method::GET,
            format!("/v1/webhooks/{bad}/deliveries"),
            None,
            "id",
        ),
        (
            Method::POST,
            format!("/v1/deliveries/{bad}/retry"),
            None,
            "id",
        ),
    ];
    for (method, path, body, param) in tenant_routes {
        let (status, err, _) = app.call(method, &path, Some(&tenant), body).await;
        assert_error(
            status,
            &err,
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
            &path,
        );
        assert!(
            err["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains(&format!("`{param}`"))),
            "{path}: {err}"
        );
    }
    let schema = json!({"schema": {"type": "object"}});
    for (method, body) in [
        (Method::GET, None),
        (Method::PUT, Some(schema)),
        (Method::DELETE, None),
    ] {
        let path = format!("/v1/event-types/{bad}");
        let (status, err, _) = app.call(method, &path, Some(&producer), body).await;
        assert_error(
            status,
            &err,
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
            &path,
        );
        assert!(err["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("`name`")));
    }
    let replay = json!({"requestedBy": "ops", "reason": "test"});
    let integration = json!({"name": "x", "scheme": "token", "secret": "t", "signatureHeader": "x-t", "targetUrl": "https://example.com/a"});
    for (method, path, body) in [
        (Method::GET, format!("/api/v1/events/{bad}"), None),
        (
            Method::POST,
            format!("/api/v1/events/{bad}/replay"),
            Some(replay),
        ),
        (Method::GET, format!("/api/v1/integrations/{bad}"), None),
        (
            Method::PUT,
            format!("/api/v1/integrations/{bad}"),
            Some(integration),
        ),
        (Method::DELETE, format!("/api/v1/integrations/{bad}"), None),
    ] {
        let (status, err, _) = app.operator(method, &path, body).await;
        assert_error(
            status,
            &err,
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
            &path,
        );
    }
    // Unauthenticated routes: the receiver and the development sink.
    for (method, path) in [
        (Method::POST, format!("/api/v1/webhooks/{bad}")),
        (
            Method::POST,
            format!("/api/v1/internal/delivery-sink/{bad}"),
        ),
        (Method::GET, format!("/api/v1/internal/delivery-sink/{bad}")),
    ] {
        let (status, err, _) = app.call(method, &path, None, None).await;
        assert_error(
            status,
            &err,
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
            &path,
        );
        assert!(err["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("`provider`")));
    }
    // A well-formed id that names nothing is still a 404 in the same shape.
    let (status, err, _) = app.get("/v1/webhooks/wh_nothing", &tenant).await;
    assert_error(
        status,
        &err,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        "unknown id",
    );
    // A rejection by the framework itself (a body over the limit, refused
    // before any handler) gets the error body too.
    let resp = app
        .http
        .post(app.url("/api/v1/internal/delivery-sink/big"))
        .body(vec![b'x'; 2 * 1024 * 1024])
        .send()
        .await
        .expect("request");
    let status = StatusCode::from_u16(resp.status().as_u16()).expect("status");
    let body: Value = resp.json().await.expect("a JSON error body");
    assert_error(
        status,
        &body,
        StatusCode::PAYLOAD_TOO_LARGE,
        "PAYLOAD_TOO_LARGE",
        "oversized body",
    );
}

/// `cursor=…` values that no answer gave, for every list route.
const BAD_CURSORS: [&str; 5] = [
    "garbage",
    "wh_123",
    "att_ZZ",
    "-1",
    "job_0190f0a0b0c0d0e0f00000000000000%20",
];

async fn malformed_cursors_answer_400_on_every_list_route(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let tenant = app.tenant("acct_c");
    let rx = Receiver::start().await;
    let mut webhook = String::new();
    for i in 0..3 {
        let url = rx.url(&format!("/h{i}"));
        webhook = app.create_webhook("acct_c", &url, &["*"]).await.0;
    }
    // Three events for three webhooks: three tries on the last one.
    for n in 0..3 {
        app.publish("acct_c", "t", json!({"n": n})).await;
    }
    app.integration(json!({"name": "acme", "scheme": "token", "secret": "t", "signatureHeader": "x-t", "targetUrl": rx.url("/a")})).await;
    for n in 0..3 {
        let (status, body) = app
            .inbound(
                "acme",
                &[("x-t", "t".into())],
                format!("{{\"n\":{n}}}").as_bytes(),
            )
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    }

    let tenant_lists = [
        "/v1/webhooks".to_owned(),
        format!("/v1/webhooks/{webhook}/deliveries"),
    ];
    let operator_lists = [
        "/api/v1/events",
        "/api/v1/deliveries",
        "/api/v1/audit-entries",
    ];
    for bad in BAD_CURSORS {
        for list in &tenant_lists {
            let path = format!("{list}?cursor={bad}");
            let (status, err, _) = app.get(&path, &tenant).await;
            assert_error(
                status,
                &err,
                StatusCode::BAD_REQUEST,
                "VALIDATION_ERROR",
                &path,
            );
            assert!(
                err["error"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("cursor")),
                "{path}: {err}"
            );
        }
        for list in operator_lists {
            let path = format!("{list}?cursor={bad}");
            let (status, err, _) = app.operator(Method::GET, &path, None).await;
            assert_error(
                status,
                &err,
                StatusCode::BAD_REQUEST,
                "VALIDATION_ERROR",
                &path,
            );
            assert!(
                err["error"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("cursor")),
                "{path}: {err}"
            );
        }
    }

    // The cursors the answers give still page through everything, once.
    for list in &tenant_lists {
        let ids = page_through(list, |path| {
            let tenant = tenant.clone();
            let app = &app;
            async move { app.get(&path, &tenant).await }
        })
        .await;
        assert_eq!(ids.len(), 3, "{list}: {ids:?}");
    }
    for list in ["/api/v1/events", "/api/v1/deliveries"] {
        let ids = page_through(list, |path| {
            let app = &app;
            async move { app.operator(Method::GET, &path, None).await }
        })
        .await;
        assert_eq!(ids.len(), 3, "{list}: {ids:?}");
    }
    let audit = page_through("/api/v1/audit-entries", |path| {
        let app = &app;
        async move { app.operator(Method::GET, &path, None).await }
    })
    .await;
    assert!(audit.len() >= 4, "{audit:?}");
}

/// Every item of a list, two per page, following `nextCursor`; no item twice.
async fn page_through<F, Fut>(list: &str, get: F) -> Vec<String>
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = (StatusCode, Value, axum::http::HeaderMap)>,
{
    let mut seen = Vec::new();
    let mut path = format!("{list}?limit=2");
    loop {
        let (status, page, _) = get(path.clone()).await;
        assert_eq!(status, StatusCode::OK, "{path}: {page}");
        for item in page["items"].as_array().expect("items") {
            let id = item["id"]
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| item["seq"].to_string());
            assert!(!seen.contains(&id), "{id} twice in {list}");
            seen.push(id);
        }
        match page["nextCursor"].as_str() {
            Some(c) => path = format!("{list}?limit=2&cursor={c}"),
            None => return seen,
        }
    }
}
