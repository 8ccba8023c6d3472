//! Request ids: taken from `x-request-id` when well-formed, else generated;
//! echoed in the response, attached to the request's log span, and written
//! into JSON error bodies. An error answer that did not come through
//! `ApiError` (a rejection by a layer or extractor of the framework) gets
//! the same JSON body, by its status, so that every answer keeps SPEC §3.

use crate::shared::error::{ApiError, ErrorBody};
use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
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
    let span = tracing::info_span!("request", request.id = %id, http.method = %req.method(), http.route = %logged_path(req.uri().path()), client.ip = tracing::field::Empty);
    let start = std::time::Instant::now();
    let mut resp = next.run(req).instrument(span.clone()).await;
    let err = resp
        .extensions_mut()
        .remove::<ErrorBody>()
        .or_else(|| unrendered_error(&resp));
    if let Some(err) = err {
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
    let (status, duration_ms) = (resp.status(), start.elapsed().as_millis() as u64);
    span.in_scope(|| {
        // A client over its limit is answered 429 as often as it asks,
        // before any work: a line each would let it fill the log (and the
        // log's queue, whose overflow drops other lines).
        if status == StatusCode::TOO_MANY_REQUESTS {
            tracing::debug!(
                http.status = status.as_u16(),
                duration_ms,
                "request finished"
            );
        } else {
            tracing::info!(
                http.status = status.as_u16(),
                duration_ms,
                "request finished"
            );
        }
    });
    resp
}

/// The longest request path a log line carries, in bytes: a path may be
/// as long as a request's head (tens of KiB), and each request logs it.
const LOGGED_PATH: usize = 256;

/// `path` as logged: whole up to `LOGGED_PATH` bytes, else its start
/// (cut at a character's boundary) and an ellipsis.
fn logged_path(path: &str) -> std::borrow::Cow<'_, str> {
    if path.len() <= LOGGED_PATH {
        return path.into();
    }
    let mut end = LOGGED_PATH;
    while !path.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &path[..end]).into()
}

/// The error body for an error answer without one of ours (and without a
/// JSON body of its own, as `/ready` has when unready, nor a page of the
/// console's).
fn unrendered_error(resp: &Response) -> Option<ErrorBody> {
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return None;
    }
    let json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json") || v.starts_with("text/html"));
    if json {
        return None;
    }
    tracing::debug!(
        http.status = status.as_u16(),
        "an error answer outside ApiError was given the error body"
    );
    let error = match status {
        StatusCode::UNAUTHORIZED => ApiError::Unauthorized("unauthorized".into()),
        StatusCode::FORBIDDEN => ApiError::Forbidden("forbidden".into()),
        StatusCode::NOT_FOUND => ApiError::NotFound,
        StatusCode::CONFLICT => ApiError::Conflict("conflict".into()),
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge,
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::UnsupportedMediaType,
        StatusCode::UNPROCESSABLE_ENTITY => ApiError::LimitExceeded("limit exceeded".into()),
        StatusCode::TOO_MANY_REQUESTS => ApiError::RateLimited(std::time::Duration::ZERO),
        s if s.is_server_error() => ApiError::Internal,
        _ => ApiError::Validation("the request is not valid".into()),
    };
    Some(ErrorBody {
        code: error.code(),
        message: error.message(),
    })
}

#[cfg(test)]
mod tests {
    use super::{logged_path, LOGGED_PATH};

    #[test]
    fn a_long_path_is_logged_cut_short() {
        assert_eq!(logged_path("/v1/webhooks"), "/v1/webhooks");
        let long = format!("/{}", "é".repeat(40_000));
        let logged = logged_path(&long);
        assert!(
            logged.len() <= LOGGED_PATH + '…'.len_utf8(),
            "{}",
            logged.len()
        );
        assert!(logged.ends_with('…') && long.starts_with(logged.trim_end_matches('…')));
    }
}
