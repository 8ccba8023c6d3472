//! Request ids: taken from `x-request-id` when well-formed, else generated;
//! echoed in the response, attached to the request's log span, and written
//! into JSON error bodies.

use crate::error::ErrorBody;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use hookwarden_core::ids;
use tracing::Instrument;

pub const HEADER: &str = "x-request-id";

#[derive(Debug, Clone)]
pub struct RequestId(pub String);

pub async fn layer(mut req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get(HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| ids::is_well_formed_request_id(v))
        .map(str::to_owned)
        .unwrap_or_else(ids::request_id);
    req.extensions_mut().insert(RequestId(id.clone()));
    let span = tracing::info_span!("request", request.id = %id, http.method = %req.method(), http.route = %req.uri().path(), client.ip = tracing::field::Empty);
    let start = std::time::Instant::now();
    let mut resp = next.run(req).instrument(span.clone()).await;
    if let Some(err) = resp.extensions_mut().remove::<ErrorBody>() {
        let body = serde_json::json!({"error": {"code": err.code, "message": err.message, "requestId": id}});
        *resp.body_mut() = Body::from(body.to_string());
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        resp.headers_mut().remove(header::CONTENT_LENGTH);
    }
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert(HEADER, v);
    }
    span.in_scope(|| {
        tracing::info!(
            http.status = resp.status().as_u16(),
            duration_ms = start.elapsed().as_millis() as u64,
            "request finished"
        )
    });
    resp
}
