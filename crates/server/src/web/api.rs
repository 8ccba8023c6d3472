//! The pages' API client: a request built here, marked with the session it
//! is made for (`OnBehalf`), answered by the API router in process. The
//! network never reaches the API this way: the marker is an extension only
//! this code puts on a request it creates.

use crate::auth::on_behalf::OnBehalf;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use serde_json::Value;
use std::net::SocketAddr;
use tower::ServiceExt;

/// Largest API answer a page reads (a page of 100 items with bodies).
const MAX_ANSWER: usize = 64 * 1024 * 1024;

/// An API refusal, as the page shows it.
#[derive(Debug, Clone)]
pub struct Failure {
    pub status: StatusCode,
    pub message: String,
}

impl Failure {
    pub fn not_found(&self) -> bool {
        self.status == StatusCode::NOT_FOUND
    }
}

pub type Answer = Result<Value, Failure>;

pub struct Api {
    router: Router,
    on_behalf: OnBehalf,
    peer: Option<ConnectInfo<SocketAddr>>,
}

impl Api {
    pub fn new(router: Router, on_behalf: OnBehalf, peer: Option<ConnectInfo<SocketAddr>>) -> Self {
        Self {
            router,
            on_behalf,
            peer,
        }
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.call(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Answer {
        self.call(Method::POST, path, Some(body)).await
    }

    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Answer {
        let mut req = Request::builder().method(method).uri(path);
        if body.is_some() {
            req = req.header(header::CONTENT_TYPE, "application/json");
        }
        let body = body.map(|b| Body::from(b.to_string())).unwrap_or_default();
        let mut req = req.body(body).map_err(|e| Failure {
            status: StatusCode::BAD_REQUEST,
            message: format!("the page built a bad request: {e}"),
        })?;
        req.extensions_mut().insert(self.on_behalf.clone());
        if let Some(peer) = self.peer {
            req.extensions_mut().insert(peer);
        }
        let resp = match self.router.clone().oneshot(req).await {
            Ok(resp) => resp,
            Err(never) => match never {},
        };
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), MAX_ANSWER)
            .await
            .unwrap_or_default();
        let value: Value = if bytes.is_empty() {
            Value::Null
        } else {
            // Our own answers carry stored values as stored (`plain_json`).
            hookwarden_core::plain_json::from_slice(&bytes).unwrap_or(Value::Null)
        };
        if status.is_success() {
            return Ok(value);
        }
        let error = &value["error"];
        Err(Failure {
            status,
            message: error["message"]
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| status.to_string()),
        })
    }
}

/// A page of a list the API answered: its items, the cursor of the next
/// page, and the API's refusal of the filters (shown above an empty list).
pub struct Listing {
    pub items: Vec<Value>,
    pub next: Value,
    pub error: Option<String>,
}

impl Api {
    /// A list page; a refused filter (4xx) is a `Listing` that says why,
    /// anything else the failure.
    pub async fn list(&self, path: &str) -> Result<Listing, Failure> {
        match self.get(path).await {
            Ok(p) => Ok(Listing {
                items: p["items"].as_array().cloned().unwrap_or_default(),
                next: p["nextCursor"].clone(),
                error: None,
            }),
            Err(e) if e.status.is_client_error() && !e.not_found() => Ok(Listing {
                items: Vec::new(),
                next: Value::Null,
                error: Some(e.message),
            }),
            Err(e) => Err(e),
        }
    }
}

/// One path segment, percent-encoded (ids and names typed by people).
pub fn seg(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A query string from the pairs whose value is not empty (`?` included).
pub fn query(pairs: &[(&str, &str)]) -> String {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    let mut any = false;
    for (k, v) in pairs.iter().filter(|(_, v)| !v.is_empty()) {
        q.append_pair(k, v);
        any = true;
    }
    if any {
        format!("?{}", q.finish())
    } else {
        String::new()
    }
}
