//! Requests to a running server: a client that never goes through a proxy,
//! a JSON post, and the setup most tests start from (a webhook, integrations).

use serde_json::{json, Value};

use super::{Env, Server};

pub async fn post(client: &reqwest::Client, url: String, token: &str, body: Value) -> (u16, Value) {
    let resp = client
        .post(url)
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .expect("request");
    (
        resp.status().as_u16(),
        resp.json().await.unwrap_or(Value::Null),
    )
}

/// Starts the server, waits until it answers, and registers one webhook of
/// `account` pointing at the receiver on `rport`.
pub async fn start_with_webhook(env: &Env, account: &str, url: &str) -> (Server, reqwest::Client) {
    let mut server = env.start();
    server.wait_ready().await;
    let client = http_client();
    let (status, body) = post(
        &client,
        server.url("/v1/webhooks"),
        &env.token(Some(account), "webhooks:write webhooks:read"),
        json!({"url": url, "eventTypes": ["*"]}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    (server, client)
}

/// A client for the server under test (never through an environment proxy).
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client")
}

/// Creates token-scheme integrations through the operator API.
pub async fn create_integrations(server: &Server, key: &str, names: &[&str]) {
    for name in names {
        let resp = http_client()
            .post(server.url("/api/v1/integrations"))
            .header("x-internal-api-key", key)
            .json(&json!({"name": name, "scheme": "token", "secret": "t", "signatureHeader": "x-t", "targetUrl": "http://127.0.0.1:9/"}))
            .send()
            .await
            .expect("create integration");
        assert_eq!(resp.status(), 201);
    }
}
