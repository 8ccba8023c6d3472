//! A webhook's own controls in the tenant API: custom headers, the payload
//! filter and the rate limit. Their request and view shapes and checks,
//! shared by create, `PUT` and `PATCH` (`http/webhooks.rs`).

use crate::shared::error::{ApiError, ApiResult};
use crate::shared::secrets::{open_headers, seal_headers};
use hookwarden_core::crypto::{Keyring, Sealed};
use hookwarden_core::custom_headers;
use hookwarden_core::payload_filter::PayloadFilter;
use hookwarden_store::model::Controls;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// Most deliveries per second a webhook may ask for.
pub const MAX_RATE: u32 = 1000;

/// A header every request to the endpoint carries.
#[derive(Deserialize, ToSchema, Clone)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HeaderInput {
    /// An HTTP header name (at most 64 characters). Never the signature's
    /// (`webhook-*`, `svix-*`), `host`, the body's framing
    /// (`content-length`, `content-type`, `content-encoding`,
    /// `transfer-encoding`), the hop-by-hop headers or the trace context
    /// (`traceparent`, `tracestate`).
    name: String,
    /// Printable ASCII, at most 1,024 characters, no line breaks. A secret
    /// header already stored may leave it out (or `null`) to keep its value.
    #[serde(default)]
    value: Option<String>,
    /// Stored encrypted and never shown again (an API key the receiver
    /// wants, say).
    #[serde(default)]
    secret: bool,
}

/// A custom header as the API shows it: a secret one without its value.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HeaderView {
    name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    value: Option<String>,
    #[serde(default)]
    secret: bool,
}

/// Only events whose payload holds this value at this place are sent to the
/// endpoint (checked at publish: the others create no try for it).
#[derive(Deserialize, Serialize, ToSchema, Clone)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FilterBody {
    /// A JSON pointer (RFC 6901) into the event's payload: `/customer/tier`;
    /// `""` for the whole payload.
    #[schema(max_length = 256)]
    pointer: String,
    /// The value there must equal this (numbers compare by value). To match
    /// `null`, use `oneOf: [null]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    equals: Option<Value>,
    /// The value there must equal one of these (1 to 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    one_of: Option<Vec<Value>>,
}

/// The filter as stored, checked.
pub fn filter(f: &FilterBody) -> ApiResult<Value> {
    let v = serde_json::to_value(f).map_err(|e| ApiError::Validation(format!("filter: {e}")))?;
    PayloadFilter::parse(&v).map_err(ApiError::Validation)?;
    Ok(v)
}

/// The rate limit, checked.
pub fn rate(n: u32) -> ApiResult<u32> {
    if (1..=MAX_RATE).contains(&n) {
        Ok(n)
    } else {
        Err(ApiError::Validation(format!(
            "rateLimitPerSecond must be between 1 and {MAX_RATE}"
        )))
    }
}

/// A secret header given without its value: it keeps the stored one.
pub fn keeps_stored_value(h: &HeaderInput) -> bool {
    h.secret && h.value.is_none()
}

/// The headers as stored: the list (secret ones without their value) and
/// the secret values sealed. A secret header given without a value keeps
/// the value stored for it in `current`. An empty list stores nothing.
pub fn headers(
    keyring: &Keyring,
    account_id: &str,
    webhook_id: &str,
    given: &[HeaderInput],
    current: Option<&Controls>,
) -> ApiResult<(Option<Value>, Option<Sealed>)> {
    custom_headers::check_names(given.iter().map(|h| h.name.as_str()))
        .map_err(ApiError::Validation)?;
    if given.is_empty() {
        return Ok((None, None));
    }
    let kept = match current.and_then(|c| c.secret_headers.as_ref()) {
        Some(sealed) if given.iter().any(|h| h.secret && h.value.is_none()) => {
            open_headers(keyring, account_id, webhook_id, sealed)
                .map_err(|e| ApiError::internal("open the webhook's secret headers", e))?
        }
        _ => Vec::new(),
    };
    let mut list = Vec::with_capacity(given.len());
    let mut secrets = BTreeMap::new();
    for h in given {
        let value = match (&h.value, h.secret) {
            (Some(v), _) => v.clone(),
            (None, true) => kept
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(&h.name))
                .map(|(_, v)| v.to_string())
                .ok_or_else(|| {
                    ApiError::Validation(format!(
                        "headers: {} has no stored value to keep: give its value",
                        h.name
                    ))
                })?,
            (None, false) => {
                return Err(ApiError::Validation(format!(
                    "headers: {} needs a value",
                    h.name
                )))
            }
        };
        custom_headers::check_value(&h.name, &value).map_err(ApiError::Validation)?;
        if h.secret {
            list.push(json!({"name": h.name, "secret": true}));
            secrets.insert(h.name.clone(), value);
        } else {
            list.push(json!({"name": h.name, "value": value}));
        }
    }
    let sealed =
        (!secrets.is_empty()).then(|| seal_headers(keyring, account_id, webhook_id, &secrets));
    Ok((Some(Value::Array(list)), sealed))
}

/// The headers as the API shows them.
pub fn view_headers(c: &Controls) -> Option<Vec<HeaderView>> {
    c.headers
        .as_ref()
        .and_then(|v| serde_json::from_value(v.clone()).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keyring() -> Keyring {
        Keyring::new(
            hookwarden_core::crypto::MasterKey::from_bytes([7u8; 32]),
            vec![],
        )
    }

    fn input(v: Value) -> Vec<HeaderInput> {
        serde_json::from_value(v).expect("headers")
    }

    #[test]
    fn a_secret_header_is_sealed_and_kept_when_its_value_is_left_out() {
        let k = keyring();
        let given = input(json!([
            {"name": "X-Api-Key", "value": "k-123", "secret": true},
            {"name": "X-Team", "value": "blue"}
        ]));
        let (list, sealed) = headers(&k, "acct", "wh_1", &given, None).expect("headers");
        let list = list.expect("list");
        assert!(!list.to_string().contains("k-123"), "{list}");
        let controls = Controls {
            headers: Some(list),
            secret_headers: sealed,
            ..Controls::default()
        };
        let shown = serde_json::to_value(view_headers(&controls)).expect("json");
        assert_eq!(
            shown,
            json!([{"name": "X-Api-Key", "secret": true}, {"name": "X-Team", "value": "blue", "secret": false}])
        );
        // An update that leaves the secret's value out keeps it.
        let again = input(json!([{"name": "x-api-key", "secret": true}]));
        let (_, resealed) = headers(&k, "acct", "wh_1", &again, Some(&controls)).expect("kept");
        let opened = open_headers(&k, "acct", "wh_1", &resealed.expect("sealed")).expect("open");
        assert_eq!(opened[0].1.as_str(), "k-123");
        // Another webhook's row cannot open it.
        assert!(open_headers(
            &k,
            "acct",
            "wh_2",
            controls.secret_headers.as_ref().expect("present")
        )
        .is_err());
    }

    #[test]
    fn headers_without_values_or_with_owned_names_are_refused() {
        let k = keyring();
        for bad in [
            json!([{"name": "X-A"}]),
            json!([{"name": "X-A", "secret": true}]),
            json!([{"name": "Webhook-Signature", "value": "v1,forged"}]),
            json!([{"name": "X-A", "value": "a\r\nX-B: c"}]),
            json!([{"name": "X-A", "value": "1"}, {"name": "x-a", "value": "2"}]),
        ] {
            assert!(
                headers(&k, "acct", "wh_1", &input(bad.clone()), None).is_err(),
                "{bad}"
            );
        }
        assert_eq!(
            headers(&k, "acct", "wh_1", &[], None).expect("empty"),
            (None, None)
        );
    }
}
