//! Page cursors as they come back: each list route checks that `cursor` is
//! one its own answers give as `nextCursor`. One that does not decode is a
//! 400 naming `cursor`, never a silent first page.

use crate::shared::error::ApiError;
use chrono::{DateTime, TimeZone, Utc};

fn invalid() -> ApiError {
    ApiError::Validation("cursor is not valid: pass the nextCursor of the previous page".into())
}

/// An id cursor: `{prefix}_` and the 32 hex digits of a time-ordered id
/// (`hookwarden_core::ids`), as webhook, delivery and job listings page on.
pub fn id<'a>(prefix: &str, cursor: Option<&'a str>) -> Result<Option<&'a str>, ApiError> {
    let Some(c) = cursor else { return Ok(None) };
    let hex = c
        .strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('_'))
        .ok_or_else(invalid)?;
    if hex.len() == 32 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        Ok(Some(c))
    } else {
        Err(invalid())
    }
}

/// The audit trail's cursor: the sequence number of the last entry seen.
pub fn seq(cursor: Option<&str>) -> Result<Option<i64>, ApiError> {
    let Some(c) = cursor else { return Ok(None) };
    match c.parse::<i64>() {
        Ok(n) if n >= 0 && c.bytes().all(|b| b.is_ascii_digit()) => Ok(Some(n)),
        _ => Err(invalid()),
    }
}

/// Inbound events' cursor: `{microseconds since the epoch}:{event id}`.
pub fn time_id(cursor: Option<&str>) -> Result<Option<(DateTime<Utc>, String)>, ApiError> {
    let Some(c) = cursor else { return Ok(None) };
    let (micros, id) = c.split_once(':').ok_or_else(invalid)?;
    let micros: i64 = micros.parse().map_err(|_| invalid())?;
    let t = Utc.timestamp_micros(micros).single().ok_or_else(invalid)?;
    if !hookwarden_core::ids::is_well_formed_request_id(id) {
        return Err(invalid());
    }
    Ok(Some((t, id.to_owned())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_cursors_our_answers_give_are_accepted() {
        let wh = hookwarden_core::ids::webhook_id();
        assert_eq!(id("wh", Some(&wh)).expect("valid"), Some(wh.as_str()));
        assert_eq!(id("wh", None).expect("absent"), None);
        for bad in [
            "",
            "garbage",
            "wh_",
            "wh_123",
            "att_0190f0a0b0c0d0e0f000000000000000",
            "wh_0190F0A0B0C0D0E0F000000000000000",
            "wh_0190f0a0b0c0d0e0f00000000000000z",
        ] {
            let e = id("wh", Some(bad)).expect_err(bad);
            assert_eq!(e.code(), "VALIDATION_ERROR");
            assert!(e.message().contains("cursor"), "{}", e.message());
        }
        assert_eq!(seq(Some("42")).expect("valid"), Some(42));
        for bad in ["-1", "+1", "x", "", "1.5"] {
            assert!(seq(Some(bad)).is_err(), "{bad}");
        }
        assert!(time_id(Some("1700000000000000:ie_abc")).is_ok());
        for bad in ["1700000000000000", "x:ie_abc", "1:a b"] {
            assert!(time_id(Some(bad)).is_err(), "{bad}");
        }
    }
}
