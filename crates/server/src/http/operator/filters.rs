//! Query values the operator routes share: statuses, times, and the
//! `{requestedBy, reason}` every operator action carries into the audit trail.

use crate::shared::error::{ApiError, ApiResult};
use chrono::{DateTime, Utc};
use hookwarden_store::model::AttemptStatus;
use serde::Deserialize;
use utoipa::ToSchema;

pub fn parse_status(s: Option<&str>) -> ApiResult<Option<AttemptStatus>> {
    s.map(|s| {
        AttemptStatus::parse(s).ok_or_else(|| {
            ApiError::Validation("status must be pending, succeeded, failed or dead".into())
        })
    })
    .transpose()
}

pub fn parse_time(name: &str, s: Option<&str>) -> ApiResult<Option<DateTime<Utc>>> {
    s.map(|s| {
        DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|_| ApiError::Validation(format!("{name} must be an RFC 3339 time")))
    })
    .transpose()
}

/// A text filter matched exactly: 1 to `max` characters, else a 400 naming
/// the parameter.
pub fn parse_text(name: &str, s: Option<String>, max: usize) -> ApiResult<Option<String>> {
    s.map(|s| {
        if (1..=max).contains(&s.chars().count()) {
            Ok(s)
        } else {
            Err(ApiError::Validation(format!(
                "{name} must be 1 to {max} characters"
            )))
        }
    })
    .transpose()
}

/// Who asked for an operator action and why, kept in the audit trail.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Justification {
    /// Who asked (1–100 characters).
    pub requested_by: String,
    /// Why (1–500 characters).
    pub reason: String,
}

impl Justification {
    /// The two values trimmed, or a 400 naming the one out of bounds.
    pub fn checked(&self) -> ApiResult<(String, String)> {
        checked(&self.requested_by, &self.reason)
    }
}

pub fn checked(requested_by: &str, reason: &str) -> ApiResult<(String, String)> {
    let requested_by = requested_by.trim();
    let reason = reason.trim();
    if !(1..=100).contains(&requested_by.chars().count()) {
        return Err(ApiError::Validation(
            "requestedBy must be 1 to 100 characters".into(),
        ));
    }
    if !(1..=500).contains(&reason.chars().count()) {
        return Err(ApiError::Validation(
            "reason must be 1 to 500 characters".into(),
        ));
    }
    Ok((requested_by.to_owned(), reason.to_owned()))
}

/// Runs an operator action on its own task and waits for it: if the caller
/// disconnects (dropping this future), the action still finishes and writes
/// its audit entry, so nothing changes unaudited halfway through.
pub async fn finish<T: Send + 'static>(
    action: impl std::future::Future<Output = ApiResult<T>> + Send + 'static,
) -> ApiResult<T> {
    tokio::spawn(action)
        .await
        .map_err(|e| ApiError::internal("operator action", e))?
}

/// A tenant's endpoint URL as operator views show it: without userinfo and
/// query, which may carry the customer's credentials (`?token=…`), marked
/// `?…` where a query was.
pub fn shown_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut u) => {
            let had_query = u.query().is_some();
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.set_query(None);
            u.set_fragment(None);
            let mut shown = u.to_string();
            if had_query {
                shown.push_str("?…");
            }
            shown
        }
        Err(_) => "(not a URL)".into(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn shown_urls_keep_no_credentials() {
        assert_eq!(
            super::shown_url("https://u:p@hooks.example.com/in?token=s3cret#x"),
            "https://hooks.example.com/in?…"
        );
        assert_eq!(
            super::shown_url("https://hooks.example.com/in"),
            "https://hooks.example.com/in"
        );
    }
}
