//! Headers a webhook's owner adds to every request sent to it (an API key
//! the receiver wants, a routing tag). Only names that cannot change how
//! the request is framed, signed or routed are accepted: never the
//! signature's (`webhook-*`, and `svix-*` which receivers read as the
//! same), `host`, the body's framing (`content-length`, `content-type`,
//! `content-encoding`, `transfer-encoding`), the hop-by-hop headers or the
//! trace context (`traceparent`, `tracestate`).

/// Most headers per webhook.
pub const MAX_HEADERS: usize = 20;
/// Longest name.
pub const MAX_NAME: usize = 64;
/// Longest value.
pub const MAX_VALUE: usize = 1024;

/// Names refused whatever their case.
const REFUSED: &[&str] = &[
    "host",
    "content-length",
    "content-type",
    "content-encoding",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "trailers",
    "upgrade",
    "expect",
    // The trace context is hookwarden's to carry (`trace_context.rs`).
    "traceparent",
    "tracestate",
];

/// Prefixes refused whatever their case.
const REFUSED_PREFIXES: &[&str] = &["webhook-", "svix-"];

/// Checks a header name: an HTTP token (RFC 9110), not one hookwarden owns.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_NAME {
        return Err(format!("headers: a name has 1 to {MAX_NAME} characters"));
    }
    let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if !name.bytes().all(token) {
        return Err("headers: a name is letters, digits and !#$%&'*+-.^_`|~ only".into());
    }
    // `_` as `-`: CGI-style receivers (PHP, WSGI) read `Webhook_Signature`
    // as `webhook-signature`.
    let lower = name.to_ascii_lowercase().replace('_', "-");
    if REFUSED.contains(&lower.as_str()) || REFUSED_PREFIXES.iter().any(|p| lower.starts_with(p)) {
        return Err(format!(
            "headers: {lower} is set by hookwarden (the signature, host, framing, hop-by-hop and trace context headers cannot be set)"
        ));
    }
    Ok(())
}

/// Checks a header value: visible ASCII and inner spaces or tabs, never a
/// line break (a header cannot smuggle another).
pub fn check_value(name: &str, value: &str) -> Result<(), String> {
    if value.len() > MAX_VALUE {
        return Err(format!(
            "headers: the value of {name} is longer than {MAX_VALUE} characters"
        ));
    }
    let ok = |b: u8| (0x21..=0x7e).contains(&b) || b == b' ' || b == b'\t';
    if !value.bytes().all(ok) || value.starts_with([' ', '\t']) || value.ends_with([' ', '\t']) {
        return Err(format!(
            "headers: the value of {name} must be printable ASCII without line breaks or surrounding spaces"
        ));
    }
    Ok(())
}

/// Checks a whole list of names: each valid, none twice (whatever case).
pub fn check_names<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<(), String> {
    let mut seen = std::collections::HashSet::new();
    let mut n = 0;
    for name in names {
        n += 1;
        check_name(name)?;
        if !seen.insert(name.to_ascii_lowercase().replace('_', "-")) {
            return Err(format!("headers: {name} is given twice"));
        }
    }
    if n > MAX_HEADERS {
        return Err(format!("headers: at most {MAX_HEADERS}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_headers_pass() {
        check_names(["X-Api-Key", "authorization", "X-Tenant.Tag~1"]).expect("ok");
        check_value("X-Api-Key", "abc def\t123").expect("ok");
        check_value("X-Empty", "").expect("ok");
    }

    #[test]
    fn owned_framing_and_hop_by_hop_names_are_refused() {
        for name in [
            "Host",
            "content-length",
            "Content-Type",
            "Transfer-Encoding",
            "Connection",
            "TE",
            "Upgrade",
            "Webhook-Signature",
            "Webhook_Signature",
            "content_length",
            "webhook-id",
            "WEBHOOK-TIMESTAMP",
            "svix-signature",
            "",
            "X Space",
            "X:Colon",
            "X\r\nInjected",
            "ü",
        ] {
            assert!(check_name(name).is_err(), "{name:?}");
        }
        assert!(check_name(&"x".repeat(65)).is_err());
        assert!(check_names(["X-A", "x-a"])
            .expect_err("refused")
            .contains("twice"));
        let many: Vec<String> = (0..21).map(|i| format!("X-{i}")).collect();
        assert!(check_names(many.iter().map(String::as_str)).is_err());
    }

    #[test]
    fn values_cannot_break_lines_or_carry_control_bytes() {
        for value in ["a\r\nX-Evil: 1", "a\nb", "nul\0", " lead", "trail ", "é"] {
            assert!(check_value("X", value).is_err(), "{value:?}");
        }
        assert!(check_value("X", &"v".repeat(1025)).is_err());
    }
}
