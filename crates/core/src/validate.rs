//! Validation of tenant input that is not a URL: event types, subscriptions,
//! producer-supplied event ids, descriptions and payloads.

use serde_json::Value;

pub const MAX_EVENT_TYPES: usize = 100;
pub const MAX_DESCRIPTION: usize = 500;
/// Largest payload accepted at publish (serialized JSON bytes).
pub const MAX_PAYLOAD_BYTES: usize = 256 * 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ValidationError {
    #[error("{field}: {reason}")]
    Field { field: &'static str, reason: String },
}

fn field(field: &'static str, reason: impl Into<String>) -> ValidationError {
    ValidationError::Field {
        field,
        reason: reason.into(),
    }
}

/// Event type names: `a-z0-9._-`, 1–100 chars, e.g. `invoice.paid`.
pub fn event_type(name: &str) -> Result<(), ValidationError> {
    let ok = (1..=100).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
    ok.then_some(()).ok_or_else(|| {
        field(
            "eventType",
            "must be 1-100 characters of a-z, 0-9, '.', '_' or '-'",
        )
    })
}

/// A subscription list: event type names or patterns (see [`type_matches`]),
/// non-empty, no repeats.
pub fn subscriptions(list: &[String]) -> Result<(), ValidationError> {
    if list.is_empty() || list.len() > MAX_EVENT_TYPES {
        return Err(field(
            "eventTypes",
            format!("must list 1 to {MAX_EVENT_TYPES} event types"),
        ));
    }
    for (i, t) in list.iter().enumerate() {
        type_pattern(t).map_err(|_| {
            field(
                "eventTypes",
                format!("{t:?} is not a valid event type, \"prefix.*\" or \"*\""),
            )
        })?;
        if list[..i].contains(t) {
            return Err(field("eventTypes", format!("{t:?} is listed twice")));
        }
    }
    Ok(())
}

/// An event type pattern: `*` (every type), `prefix.*` (the types under
/// `prefix.`, at any depth) or an exact event type name. The one rule for
/// webhook subscriptions and producer grants alike.
pub fn type_pattern(pattern: &str) -> Result<(), ValidationError> {
    if pattern == "*" {
        return Ok(());
    }
    let name = pattern.strip_suffix(".*").unwrap_or(pattern);
    event_type(name).map_err(|_| {
        field(
            "eventTypes",
            format!("{pattern:?} is not a valid event type, \"prefix.*\" or \"*\""),
        )
    })
}

/// Does a pattern (see [`type_pattern`]) match an event type? `*` matches
/// every type; `invoice.*` matches `invoice.paid` and `invoice.refund.created`
/// but neither `invoice` nor `invoicex.paid`; anything else only itself.
pub fn type_matches(pattern: &str, event_type: &str) -> bool {
    pattern == "*"
        || pattern == event_type
        || pattern.strip_suffix(".*").is_some_and(|prefix| {
            event_type
                .strip_prefix(prefix)
                .is_some_and(|rest| rest.starts_with('.'))
        })
}

/// Does a subscription list match an event type?
pub fn subscribed(list: &[String], event_type: &str) -> bool {
    list.iter().any(|t| type_matches(t, event_type))
}

/// Producer-supplied event ids and account ids: 1–128 chars of `A-Za-z0-9_-.:`.
pub fn identifier(name: &'static str, value: &str) -> Result<(), ValidationError> {
    let ok = (1..=128).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.:".contains(&b));
    ok.then_some(()).ok_or_else(|| {
        field(
            name,
            "must be 1-128 characters of A-Z, a-z, 0-9, '_', '-', '.' or ':'",
        )
    })
}

pub fn description(text: &str) -> Result<(), ValidationError> {
    if text.chars().count() > MAX_DESCRIPTION {
        return Err(field(
            "description",
            format!("must be at most {MAX_DESCRIPTION} characters"),
        ));
    }
    if text
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(field("description", "must not contain control characters"));
    }
    Ok(())
}

/// Payloads are JSON objects of bounded size.
pub fn payload(value: &Value) -> Result<(), ValidationError> {
    if !value.is_object() {
        return Err(field("payload", "must be a JSON object"));
    }
    let size = serde_json::to_vec(value)
        .map(|v| v.len())
        .unwrap_or(usize::MAX);
    if size > MAX_PAYLOAD_BYTES {
        return Err(field(
            "payload",
            format!("must be at most {MAX_PAYLOAD_BYTES} bytes"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn event_types_and_subscriptions() {
        assert!(event_type("invoice.paid").is_ok());
        assert!(event_type("Invoice").is_err());
        assert!(event_type("").is_err());
        assert!(subscriptions(&["*".into()]).is_ok());
        assert!(subscriptions(&[]).is_err());
        assert!(subscriptions(&["a".into(), "a".into()]).is_err());
        assert!(subscribed(&["*".into()], "x"));
        assert!(subscribed(&["a".into(), "b".into()], "b"));
        assert!(!subscribed(&["a".into()], "b"));
    }

    #[test]
    fn prefix_patterns_are_one_rule() {
        for ok in ["*", "invoice.*", "invoice.refund.*", "invoice.paid"] {
            assert!(subscriptions(&[ok.into()]).is_ok(), "{ok}");
        }
        for bad in [
            "invoice*",
            "*.paid",
            "invoice.*.paid",
            ".*",
            "Invoice.*",
            "**",
        ] {
            assert!(subscriptions(&[bad.into()]).is_err(), "{bad}");
        }
        let list = ["invoice.*".to_string()];
        assert!(subscribed(&list, "invoice.paid"));
        assert!(subscribed(&list, "invoice.refund.created"));
        assert!(!subscribed(&list, "invoice"));
        assert!(!subscribed(&list, "invoicex.paid"));
        assert!(!subscribed(&list, "payment.settled"));
    }

    #[test]
    fn payloads_must_be_objects() {
        assert!(payload(&json!({"to": "+15551234567"})).is_ok());
        assert!(payload(&json!([1])).is_err());
        assert!(payload(&json!("x")).is_err());
        let big = json!({"x": "a".repeat(MAX_PAYLOAD_BYTES)});
        assert!(payload(&big).is_err());
    }

    #[test]
    fn identifiers_and_descriptions() {
        assert!(identifier("id", "evt_123").is_ok());
        assert!(identifier("id", "a b").is_err());
        assert!(description("ok\nline").is_ok());
        assert!(description("bad\u{1b}[31m").is_err());
    }
}
