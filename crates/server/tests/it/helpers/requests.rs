//! Typed requests to the test app: the tenant and producer API, the
//! operator API with the operator key, and raw inbound webhooks.

use super::{TestApp, OPERATOR_KEY};
use axum::http::{HeaderMap, StatusCode};
use serde_json::Value;

impl TestApp {
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value, HeaderMap) {
        let mut req = self.http.request(method, self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request");
        let status = StatusCode::from_u16(resp.status().as_u16()).expect("status");
        let headers = resp.headers().clone();
        let text = resp.text().await.expect("body");
        let json = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, json, headers)
    }

    pub async fn get(&self, path: &str, token: &str) -> (StatusCode, Value, HeaderMap) {
        self.call(reqwest::Method::GET, path, Some(token), None)
            .await
    }

    pub async fn post(
        &self,
        path: &str,
        token: &str,
        body: Value,
    ) -> (StatusCode, Value, HeaderMap) {
        self.call(reqwest::Method::POST, path, Some(token), Some(body))
            .await
    }

    pub async fn put(
        &self,
        path: &str,
        token: &str,
        body: Value,
    ) -> (StatusCode, Value, HeaderMap) {
        self.call(reqwest::Method::PUT, path, Some(token), Some(body))
            .await
    }

    pub async fn delete(&self, path: &str, token: &str) -> (StatusCode, Value, HeaderMap) {
        self.call(reqwest::Method::DELETE, path, Some(token), None)
            .await
    }

    /// Creates a webhook and returns (id, secret).
    pub async fn create_webhook(
        &self,
        account: &str,
        url: &str,
        types: &[&str],
    ) -> (String, String) {
        let (status, body, _) = self
            .post(
                "/v1/webhooks",
                &self.tenant(account),
                serde_json::json!({"url": url, "eventTypes": types}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        (
            body["id"].as_str().expect("id").to_owned(),
            body["secret"].as_str().expect("secret").to_owned(),
        )
    }

    pub async fn publish(&self, account: &str, event_type: &str, payload: Value) -> String {
        let (status, body, _) = self
            .post("/v1/events", &self.producer(), serde_json::json!({"accountId": account, "eventType": event_type, "payload": payload}))
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        body["eventId"].as_str().expect("eventId").to_owned()
    }

    pub async fn deliveries(&self, account: &str, webhook_id: &str) -> Vec<Value> {
        let (status, body, _) = self
            .get(
                &format!("/v1/webhooks/{webhook_id}/deliveries?limit=100"),
                &self.tenant(account),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["items"].as_array().expect("items").clone()
    }

    /// A request to the operator API with the operator key.
    pub async fn operator(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value, HeaderMap) {
        let mut req = self
            .http
            .request(method, self.url(path))
            .header("x-internal-api-key", OPERATOR_KEY);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request");
        let status = StatusCode::from_u16(resp.status().as_u16()).expect("status");
        let headers = resp.headers().clone();
        let text = resp.text().await.expect("body");
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
            headers,
        )
    }

    /// Creates an integration; returns its forwarding secret.
    pub async fn integration(&self, body: Value) -> String {
        let (status, created, _) = self
            .operator(reqwest::Method::POST, "/api/v1/integrations", Some(body))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        created["forwardingSecret"]
            .as_str()
            .expect("forwardingSecret")
            .to_owned()
    }

    /// Sends a raw inbound webhook with the given headers.
    pub async fn inbound(
        &self,
        provider: &str,
        headers: &[(&str, String)],
        body: &[u8],
    ) -> (StatusCode, Value) {
        let mut req = self
            .http
            .post(self.url(&format!("/api/v1/webhooks/{provider}")))
            .body(body.to_vec());
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        let resp = req.send().await.expect("request");
        let status = StatusCode::from_u16(resp.status().as_u16()).expect("status");
        let text = resp.text().await.expect("body");
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// Posts a body over a limit and returns the status. The server answers
    /// 413 from the declared length without reading the body, and may close
    /// the connection while the client is still sending it; then the client
    /// can lose the answer, so a connection-level failure is tried again.
    pub async fn post_oversize(
        &self,
        path: &str,
        headers: &[(&str, String)],
        body: &[u8],
    ) -> (StatusCode, Value) {
        let mut last = None;
        for _ in 0..5 {
            let mut req = self
                .http
                .post(self.url(path))
                .header("content-type", "application/json")
                .body(body.to_vec());
            for (k, v) in headers {
                req = req.header(*k, v);
            }
            match req.send().await {
                Ok(resp) => {
                    let status = StatusCode::from_u16(resp.status().as_u16()).expect("status");
                    if status == StatusCode::PAYLOAD_TOO_LARGE {
                        // The refused body was never read: the connection must not be reused.
                        assert_eq!(
                            resp.headers()
                                .get("connection")
                                .and_then(|v| v.to_str().ok()),
                            Some("close")
                        );
                    }
                    let text = resp.text().await.unwrap_or_default();
                    return (
                        status,
                        serde_json::from_str(&text).unwrap_or(Value::String(text)),
                    );
                }
                Err(e) => last = Some(e),
            }
        }
        panic!("every oversize request lost its answer: {last:?}");
    }
}
