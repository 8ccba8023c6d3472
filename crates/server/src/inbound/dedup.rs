//! What identifies an inbound delivery, for deduplication: only material the
//! provider's signature covers, so that a captured request re-sent with a
//! fresh delivery-id header is still the same delivery, and a captured body
//! cannot claim a delivery id that a later genuine request will carry.
//!
//! | scheme | identity | why |
//! |---|---|---|
//! | `standard-webhooks` | `webhook-id` | signed with the timestamp and body |
//! | `stripe` | the event's `id` in the body (else the body's hash) | the body is signed |
//! | `github`, `shopify`, `slack`, `hmac-sha256`, `token` | the body's SHA-256 | no id is signed; the body is (except `token`, where the token proves the sender only) |
//!
//! Unsigned delivery-id headers (`X-GitHub-Delivery`, `X-Shopify-Webhook-Id`,
//! a configured `idempotencyHeader`) are kept as the event's `deliveryId`
//! for search and logs, and never decide whether a request is new.

use axum::http::HeaderMap;
use hookwarden_core::inbound::Scheme;

/// Longest delivery id taken from a header or body (in bytes), and so the
/// longest the operator's search by delivery id accepts.
pub(crate) const MAX_ID: usize = 200;

#[derive(Debug, PartialEq, Eq)]
pub struct Identity {
    /// Unique per provider in the database (`id:…` or `sha256:…`).
    pub dedup_key: String,
    /// The provider's own id for the delivery, if it sent one (informational
    /// unless the scheme signs it).
    pub delivery_id: Option<String>,
}

/// Does the scheme sign an id of its own? Then a configured
/// `idempotencyHeader` could only override it with something unsigned.
pub fn signs_own_id(scheme: &str) -> bool {
    matches!(scheme, "standard-webhooks" | "stripe")
}

/// A delivery id carried in a header (configured, or the scheme's own).
pub fn header_id(scheme: &Scheme, configured: Option<&str>, headers: &HeaderMap) -> Option<String> {
    let from = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty() && v.len() <= MAX_ID)
            .map(str::to_owned)
    };
    configured
        .filter(|_| !signs_own_id(scheme.name()))
        .and_then(from)
        .or_else(|| scheme.delivery_id_header().and_then(from))
}

/// The identity of a verified delivery; `body_id` is the body's top-level
/// `"id"` string, if any (`body::shape`).
pub fn identity(
    scheme: &Scheme,
    configured: Option<&str>,
    headers: &HeaderMap,
    body_id: Option<&str>,
    body_sha256: &str,
) -> Identity {
    let by_hash = format!("sha256:{body_sha256}");
    match scheme {
        Scheme::StandardWebhooks => {
            let id = header_id(scheme, None, headers);
            Identity {
                dedup_key: id.as_ref().map_or(by_hash, |id| format!("id:{id}")),
                delivery_id: id,
            }
        }
        Scheme::Stripe => {
            let id = body_id
                .filter(|id| !id.is_empty() && id.len() <= MAX_ID)
                .map(str::to_owned);
            Identity {
                dedup_key: id.as_ref().map_or(by_hash, |id| format!("id:{id}")),
                delivery_id: id,
            }
        }
        _ => Identity {
            dedup_key: by_hash,
            delivery_id: header_id(scheme, configured, headers),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().expect("value"));
        }
        h
    }

    #[test]
    fn unsigned_delivery_ids_never_decide() {
        let a = identity(
            &Scheme::Github,
            None,
            &headers(&[("x-github-delivery", "d-1")]),
            None,
            "abc",
        );
        let b = identity(
            &Scheme::Github,
            None,
            &headers(&[("x-github-delivery", "d-2")]),
            None,
            "abc",
        );
        assert_eq!(a.dedup_key, "sha256:abc");
        assert_eq!(
            a.dedup_key, b.dedup_key,
            "a fresh header does not make a replay new"
        );
        assert_eq!(a.delivery_id.as_deref(), Some("d-1"));
        let hmac = Scheme::HmacSha256 {
            header: "x-sig".into(),
            encoding: hookwarden_core::inbound::Encoding::Hex,
            prefix: String::new(),
        };
        let c = identity(
            &hmac,
            Some("x-request-id"),
            &headers(&[("x-request-id", "r-9")]),
            None,
            "abc",
        );
        assert_eq!(c.dedup_key, "sha256:abc");
        assert_eq!(c.delivery_id.as_deref(), Some("r-9"));
    }

    #[test]
    fn signed_ids_decide_and_a_configured_header_cannot_override_them() {
        let body = Some("evt_1");
        let h = headers(&[("idem", "other"), ("webhook-id", "msg_1")]);
        let s = identity(&Scheme::Stripe, Some("idem"), &h, body, "abc");
        assert_eq!(s.dedup_key, "id:evt_1");
        let w = identity(&Scheme::StandardWebhooks, Some("idem"), &h, body, "abc");
        assert_eq!(w.dedup_key, "id:msg_1");
        let no_id = identity(&Scheme::Stripe, None, &h, None, "abc");
        assert_eq!(no_id.dedup_key, "sha256:abc");
        assert!(
            signs_own_id("stripe") && signs_own_id("standard-webhooks") && !signs_own_id("github")
        );
    }
}
