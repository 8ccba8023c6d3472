//! The API error contract (SPEC §3): every error is
//! `{"error":{"code","message","requestId"}}`; 5xx bodies say nothing internal
//! and their cause is logged once.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use std::time::Duration;

#[derive(Debug, Clone)]
pub enum ApiError {
    Validation(String),
    Unauthorized(String),
    InvalidSignature,
    Forbidden(String),
    NotFound,
    Conflict(String),
    PayloadTooLarge,
    /// The body did not arrive within its deadline (`http::body_deadline`).
    BodyTooSlow,
    UnsupportedMediaType,
    LimitExceeded(String),
    RateLimited(Duration),
    /// The cause is logged here and never sent.
    Internal,
}

/// Carried in the response's extensions so the request-id middleware can
/// render the body with the request id it assigned.
#[derive(Debug, Clone)]
pub struct ErrorBody {
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    /// Logs an internal failure once (without request data) and hides it.
    pub fn internal(context: &str, err: impl std::fmt::Display) -> Self {
        tracing::error!(error.context = context, error.message = %err, "internal error");
        Self::Internal
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::Validation(_) | Self::BodyTooSlow => StatusCode::BAD_REQUEST,
            Self::Unauthorized(_) | Self::InvalidSignature => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::LimitExceeded(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Self::Validation(_) | Self::BodyTooSlow => "VALIDATION_ERROR",
            Self::Unauthorized(_) => "UNAUTHORIZED",
            Self::InvalidSignature => "INVALID_SIGNATURE",
            Self::Forbidden(_) => "FORBIDDEN",
            Self::NotFound => "NOT_FOUND",
            Self::Conflict(_) => "CONFLICT",
            Self::PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            Self::UnsupportedMediaType => "UNSUPPORTED_MEDIA_TYPE",
            Self::LimitExceeded(_) => "LIMIT_EXCEEDED",
            Self::RateLimited(_) => "RATE_LIMITED",
            Self::Internal => "INTERNAL",
        }
    }

    pub fn message(&self) -> String {
        match self {
            Self::Validation(m)
            | Self::Unauthorized(m)
            | Self::Forbidden(m)
            | Self::Conflict(m)
            | Self::LimitExceeded(m) => m.clone(),
            Self::InvalidSignature => "signature verification failed".into(),
            Self::NotFound => "not found".into(),
            Self::PayloadTooLarge => "request body is too large".into(),
            Self::BodyTooSlow => "the request body did not arrive within 30 s".into(),
            Self::UnsupportedMediaType => "content-type must be application/json".into(),
            Self::RateLimited(_) => "rate limit exceeded".into(),
            Self::Internal => "internal error".into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = self.status().into_response();
        if let Self::RateLimited(wait) = &self {
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            if let Ok(v) = HeaderValue::from_str(&secs.max(1).to_string()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        if let Self::PayloadTooLarge | Self::BodyTooSlow = &self {
            // The body was refused unread: the connection cannot carry
            // another request, so no client may keep it for the next one.
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if let Self::Unauthorized(_) = &self {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp.extensions_mut().insert(ErrorBody {
            code: self.code(),
            message: self.message(),
        });
        resp
    }
}

impl From<hookwarden_core::validate::ValidationError> for ApiError {
    fn from(e: hookwarden_core::validate::ValidationError) -> Self {
        Self::Validation(e.to_string())
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

impl From<crate::shared::ratelimit::Limited> for ApiError {
    fn from(l: crate::shared::ratelimit::Limited) -> Self {
        Self::RateLimited(l.0)
    }
}
