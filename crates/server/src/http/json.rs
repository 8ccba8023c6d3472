//! Request-body, query and path extractors that answer in the error
//! contract: 415 without `application/json`, 413 over the limit, 400 for
//! malformed JSON, serde_json's reserved raw-value key, unknown fields or a
//! path parameter that does not decode.

use crate::inbound::body;
use crate::shared::error::ApiError;
use axum::body::Bytes;
use axum::extract::path::ErrorKind;
use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use serde::de::DeserializeOwned;

pub struct StrictJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for StrictJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                v.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .eq_ignore_ascii_case("application/json")
            })
            .unwrap_or(false);
        if !is_json {
            return Err(ApiError::UnsupportedMediaType);
        }
        let bytes = read_body(req, state).await?;
        // serde_json (with the `raw_value` feature axum and sqlx turn on)
        // would read an object led by this key as the JSON text its string
        // holds, parsed afresh with a fresh depth limit: a body would mean
        // something it does not show, and could nest past every limit.
        if body::holds_reserved_key(&bytes) {
            return Err(ApiError::Validation(body::reserved_key_refusal()));
        }
        serde_json::from_slice(&bytes)
            .map(StrictJson)
            .map_err(|e| ApiError::Validation(describe(&e)))
    }
}

/// A body that may be left out: no body and no `Content-Type`, or the JSON
/// `null` (as the document, `Option<T>`, allows), is `None`; anything else
/// is read as `StrictJson` reads it (a body without `application/json` is 415).
pub struct OptionalJson<T>(pub Option<T>);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for OptionalJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if req.headers().contains_key(header::CONTENT_TYPE) {
            let StrictJson(body) = StrictJson::from_request(req, state).await?;
            return Ok(OptionalJson(body));
        }
        if read_body(req, state).await?.is_empty() {
            Ok(OptionalJson(None))
        } else {
            Err(ApiError::UnsupportedMediaType)
        }
    }
}

/// The whole body, within `MAX_BODY` (413 past it).
async fn read_body<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    reject_declared_oversize(req.headers(), crate::shared::limits::MAX_BODY)?;
    Bytes::from_request(req, state).await.map_err(|e| {
        if let ApiError::BodyTooSlow = crate::http::body_deadline::refusal(&e) {
            ApiError::BodyTooSlow
        } else if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge
        } else {
            ApiError::Validation("request body could not be read".into())
        }
    })
}

/// Refuses a body whose declared length is over `limit` before reading any of
/// it (a body without a declared length is still cut at the limit while read).
pub fn reject_declared_oversize(
    headers: &axum::http::HeaderMap,
    limit: usize,
) -> Result<(), ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match declared {
        Some(n) if n > limit as u64 => Err(ApiError::PayloadTooLarge),
        _ => Ok(()),
    }
}

/// serde's messages name the field and the problem; we drop the position
/// details and never include the input itself beyond what serde quotes.
fn describe(e: &serde_json::Error) -> String {
    let text = e.to_string();
    let text = text.split(" at line ").next().unwrap_or(&text);
    format!("invalid request body: {text}")
}

/// Query strings parsed strictly: unknown parameters are a 400.
pub struct StrictQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for StrictQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or("");
        serde_urlencoded_parse(query).map(StrictQuery)
    }
}

fn serde_urlencoded_parse<T: DeserializeOwned>(query: &str) -> Result<T, ApiError> {
    axum::extract::Query::<T>::try_from_uri(
        &format!("/?{query}")
            .parse()
            .map_err(|_| ApiError::Validation("invalid query string".into()))?,
    )
    .map(|q| q.0)
    .map_err(|e| ApiError::Validation(format!("invalid query: {}", e.body_text())))
}

/// Path parameters; one that does not decode (say `%FF`, not UTF-8) is a
/// 400 naming the parameter, never echoing it.
pub struct StrictPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for StrictPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(value)) => Ok(StrictPath(value)),
            Err(rejection) => Err(path_rejection(rejection)),
        }
    }
}

fn path_rejection(rejection: PathRejection) -> ApiError {
    // A 5xx here is a route declared with the wrong parameters: our bug.
    if rejection.status().is_server_error() {
        return ApiError::internal("path parameters", rejection.body_text());
    }
    let key = match &rejection {
        PathRejection::FailedToDeserializePathParams(e) => match e.kind() {
            ErrorKind::InvalidUtf8InPathParam { key }
            | ErrorKind::ParseErrorAtKey { key, .. }
            | ErrorKind::DeserializeError { key, .. } => Some(key.clone()),
            _ => None,
        },
        _ => None,
    };
    ApiError::Validation(match key {
        Some(key) => format!("path parameter `{key}` is not valid"),
        None => "a path parameter is not valid".into(),
    })
}

/// `limit` for list endpoints: 1–100, default 50.
pub fn page_limit(limit: Option<u32>) -> Result<u32, ApiError> {
    match limit {
        None => Ok(50),
        Some(n @ 1..=100) => Ok(n),
        Some(_) => Err(ApiError::Validation(
            "limit must be between 1 and 100".into(),
        )),
    }
}
