//! Verification of inbound provider webhooks over the raw request bytes, one
//! file per scheme, each built the way the provider documents it. Pure: the
//! caller passes headers, body, secrets and the current time.

mod github;
mod hmac_body;
mod shopify;
mod slack;
mod standard;
mod stripe;
mod token;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// Default tolerance for schemes that sign a timestamp.
pub const DEFAULT_TOLERANCE_SECS: i64 = 300;

/// Read access to request headers (names compared case-insensitively).
pub trait Headers {
    fn header(&self, name: &str) -> Option<&str>;
}

impl Headers for [(&str, &str)] {
    fn header(&self, name: &str) -> Option<&str> {
        self.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Hex,
    Base64,
}

/// A verification scheme with its parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scheme {
    /// HMAC-SHA256 of the raw body in `header`, hex or base64, after an optional prefix.
    HmacSha256 {
        header: String,
        encoding: Encoding,
        prefix: String,
    },
    /// A shared token compared with the header's value.
    Token {
        header: String,
    },
    StandardWebhooks,
    Stripe,
    Github,
    Slack,
    Shopify,
}

impl Scheme {
    pub fn name(&self) -> &'static str {
        match self {
            Self::HmacSha256 { .. } => "hmac-sha256",
            Self::Token { .. } => "token",
            Self::StandardWebhooks => "standard-webhooks",
            Self::Stripe => "stripe",
            Self::Github => "github",
            Self::Slack => "slack",
            Self::Shopify => "shopify",
        }
    }

    /// Builds a scheme from its configured name and options.
    pub fn from_config(
        name: &str,
        header: Option<&str>,
        encoding: Option<&str>,
        prefix: Option<&str>,
    ) -> Result<Self, String> {
        let header = header
            .map(|h| h.trim().to_ascii_lowercase())
            .filter(|h| !h.is_empty());
        let valid_header = |h: &str| h.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if let Some(h) = &header {
            if !valid_header(h) || h.len() > 100 {
                return Err("signatureHeader must be a header name".into());
            }
        }
        let encoding = match encoding.unwrap_or("hex") {
            "hex" => Encoding::Hex,
            "base64" => Encoding::Base64,
            other => return Err(format!("encoding {other:?} must be hex or base64")),
        };
        Ok(match name {
            "hmac-sha256" => Self::HmacSha256 {
                header: header.ok_or("signatureHeader is required for hmac-sha256")?,
                encoding,
                prefix: prefix.unwrap_or("").to_owned(),
            },
            "token" => Self::Token { header: header.ok_or("signatureHeader is required for token")? },
            "standard-webhooks" => Self::StandardWebhooks,
            "stripe" => Self::Stripe,
            "github" => Self::Github,
            "slack" => Self::Slack,
            "shopify" => Self::Shopify,
            other => {
                return Err(format!(
                    "scheme {other:?} must be one of hmac-sha256, token, standard-webhooks, stripe, github, slack, shopify"
                ))
            }
        })
    }

    /// The header that carries the provider's own delivery id, if the scheme has one.
    pub fn delivery_id_header(&self) -> Option<&'static str> {
        match self {
            Self::StandardWebhooks => Some("webhook-id"),
            Self::Github => Some("x-github-delivery"),
            Self::Shopify => Some("x-shopify-webhook-id"),
            _ => None,
        }
    }
}

/// Why a request was refused. Messages are safe to return and log: they never
/// contain a secret, a signature or the body.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum InboundError {
    #[error("signature header {0} is missing")]
    MissingHeader(&'static str),
    #[error("signature header is malformed")]
    Malformed,
    #[error("timestamp is outside the tolerance window")]
    Stale,
    #[error("signature does not match")]
    Mismatch,
}

/// What verification established.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Verified {
    /// The signed timestamp, for schemes that have one.
    pub timestamp: Option<i64>,
    /// Which of the active secrets matched (0 = the first, the newest), so
    /// an operator can tell when an older one stops being used.
    pub secret_index: Option<usize>,
}

/// Verifies a request against any of the integration's active `secrets`.
pub fn verify(
    scheme: &Scheme,
    secrets: &[&[u8]],
    headers: &(impl Headers + ?Sized),
    body: &[u8],
    now: i64,
    tolerance_secs: i64,
) -> Result<Verified, InboundError> {
    match scheme {
        Scheme::HmacSha256 {
            header,
            encoding,
            prefix,
        } => hmac_body::verify(header, *encoding, prefix, secrets, headers, body),
        Scheme::Token { header } => token::verify(header, secrets, headers),
        Scheme::StandardWebhooks => standard::verify(secrets, headers, body, now, tolerance_secs),
        Scheme::Stripe => stripe::verify(secrets, headers, body, now, tolerance_secs),
        Scheme::Github => github::verify(secrets, headers, body),
        Scheme::Slack => slack::verify(secrets, headers, body, now, tolerance_secs),
        Scheme::Shopify => shopify::verify(secrets, headers, body),
    }
}

/// Most signatures read from one header (Stripe's `v1=`/`v0=` entries,
/// Standard Webhooks' space-separated tokens). A provider sends one, or two
/// during a secret rotation; more is refused as malformed.
pub const MAX_SIGNATURE_CANDIDATES: usize = 16;
/// Longest signature, token or timestamp header read, in bytes; longer is malformed.
pub const MAX_SIGNATURE_HEADER_BYTES: usize = 4096;
/// Most secrets tried per request: the MAC of the body is computed once per
/// secret, so this bounds the work an unsigned request can cause. The API
/// refuses to configure more.
pub const MAX_ACTIVE_SECRETS: usize = 5;
/// Longest Standard Webhooks `webhook-id`, in bytes.
pub const MAX_WEBHOOK_ID_BYTES: usize = 256;

/// HMAC-SHA256 over the concatenation of `parts`.
pub(crate) fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> Hmac<Sha256> {
    #[cfg(test)]
    MACS_STARTED.with(|n| n.set(n.get() + 1));
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    for p in parts {
        mac.update(p);
    }
    mac
}

#[cfg(test)]
thread_local! {
    /// How many MACs this thread started: tests prove one per secret per request.
    pub(crate) static MACS_STARTED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// The MAC of `parts` under each secret (at most [`MAX_ACTIVE_SECRETS`]),
/// computed once per request whatever the number of candidates: the body is
/// the expensive part, and candidates come from the unauthenticated sender.
pub(crate) fn macs_once(secrets: &[&[u8]], parts: &[&[u8]]) -> Vec<[u8; 32]> {
    secrets
        .iter()
        .take(MAX_ACTIVE_SECRETS)
        .map(|key| hmac_sha256(key, parts).finalize().into_bytes().into())
        .collect()
}

/// Does any candidate equal any computed MAC? Every pair is compared in
/// constant time, with no early exit, so timing tells nothing about which.
#[cfg(test)]
pub(crate) fn any_candidate_matches<C: AsRef<[u8]>>(macs: &[[u8; 32]], candidates: &[C]) -> bool {
    matching_secret(macs, candidates).is_some()
}

/// The index of the first MAC (the first secret) that any candidate equals.
/// Every pair is still compared, and the index chosen without a branch.
pub(crate) fn matching_secret<C: AsRef<[u8]>>(
    macs: &[[u8; 32]],
    candidates: &[C],
) -> Option<usize> {
    use subtle::ConditionallySelectable;
    let mut found = subtle::Choice::from(0);
    let mut index = 0u64;
    for (i, mac) in macs.iter().enumerate() {
        let mut this = subtle::Choice::from(0);
        for candidate in candidates {
            this |= mac[..].ct_eq(candidate.as_ref());
        }
        index = u64::conditional_select(&index, &(i as u64), this & !found);
        found |= this;
    }
    bool::from(found).then_some(index as usize)
}

/// Refuses more than [`MAX_SIGNATURE_CANDIDATES`] signatures in one header.
pub(crate) fn bounded_candidates(count: usize) -> Result<(), InboundError> {
    if count > MAX_SIGNATURE_CANDIDATES {
        Err(InboundError::Malformed)
    } else {
        Ok(())
    }
}

/// A header the verifier reads, trimmed and non-empty, at most
/// [`MAX_SIGNATURE_HEADER_BYTES`] long (checked before any parsing).
pub(crate) fn bounded_header<'a, H: Headers + ?Sized>(
    headers: &'a H,
    name: &str,
    missing: &'static str,
) -> Result<&'a str, InboundError> {
    let value = headers
        .header(name)
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .ok_or(InboundError::MissingHeader(missing))?;
    if value.len() > MAX_SIGNATURE_HEADER_BYTES {
        return Err(InboundError::Malformed);
    }
    Ok(value)
}

pub(crate) fn required<'a, H: Headers + ?Sized>(
    headers: &'a H,
    name: &'static str,
) -> Result<&'a str, InboundError> {
    bounded_header(headers, name, name)
}

pub(crate) fn fresh(timestamp: i64, now: i64, tolerance_secs: i64) -> Result<(), InboundError> {
    if !crate::standard_webhooks::within(timestamp, now, tolerance_secs) {
        Err(InboundError::Stale)
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod cost;

#[cfg(test)]
mod matrix {
    //! Every scheme against the same attacks: each must fail.

    use super::*;
    use base64::{engine::general_purpose::STANDARD, Engine};

    pub(super) type Signer = fn(&[u8], &[u8], i64) -> Vec<(String, String)>;

    fn hexmac(key: &[u8], parts: &[&[u8]]) -> String {
        hex::encode(hmac_sha256(key, parts).finalize().into_bytes())
    }

    /// Each scheme, a signer of valid requests, and whether it signs a timestamp.
    pub(super) fn schemes() -> Vec<(Scheme, Signer, bool)> {
        vec![
            (
                Scheme::HmacSha256 {
                    header: "x-acme-signature".into(),
                    encoding: Encoding::Hex,
                    prefix: String::new(),
                },
                |k, b, _| vec![("x-acme-signature".into(), hexmac(k, &[b]))],
                false,
            ),
            (
                Scheme::Token {
                    header: "x-globex-token".into(),
                },
                |k, _, _| {
                    vec![(
                        "x-globex-token".into(),
                        String::from_utf8_lossy(k).into_owned(),
                    )]
                },
                false,
            ),
            (
                Scheme::StandardWebhooks,
                |k, b, t| {
                    let s = crate::secret::WebhookSecret::from_stored(k).expect("whsec");
                    vec![
                        ("webhook-id".into(), "msg_1".into()),
                        ("webhook-timestamp".into(), t.to_string()),
                        (
                            "webhook-signature".into(),
                            crate::standard_webhooks::sign(&s, "msg_1", t, b),
                        ),
                    ]
                },
                true,
            ),
            (
                Scheme::Stripe,
                |k, b, t| {
                    vec![(
                        "stripe-signature".into(),
                        format!(
                            "t={t},v1={}",
                            hexmac(k, &[t.to_string().as_bytes(), b".", b])
                        ),
                    )]
                },
                true,
            ),
            (
                Scheme::Github,
                |k, b, _| {
                    vec![(
                        "x-hub-signature-256".into(),
                        format!("sha256={}", hexmac(k, &[b])),
                    )]
                },
                false,
            ),
            (
                Scheme::Slack,
                |k, b, t| {
                    vec![
                        ("x-slack-request-timestamp".into(), t.to_string()),
                        (
                            "x-slack-signature".into(),
                            format!(
                                "v0={}",
                                hexmac(k, &[b"v0:", t.to_string().as_bytes(), b":", b])
                            ),
                        ),
                    ]
                },
                true,
            ),
            (
                Scheme::Shopify,
                |k, b, _| {
                    vec![(
                        "x-shopify-hmac-sha256".into(),
                        STANDARD.encode(hmac_sha256(k, &[b]).finalize().into_bytes()),
                    )]
                },
                false,
            ),
        ]
    }

    fn check(
        scheme: &Scheme,
        secret: &[u8],
        headers: &[(String, String)],
        body: &[u8],
        now: i64,
    ) -> Result<Verified, InboundError> {
        let pairs: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        verify(
            scheme,
            &[secret],
            &pairs[..],
            body,
            now,
            DEFAULT_TOLERANCE_SECS,
        )
    }

    #[test]
    fn every_scheme_says_which_secret_matched() {
        let newest = b"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let older = b"whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
        let body = br#"{"id":"evt_1"}"#;
        let now = 1_700_000_000;
        for (scheme, sign, _) in schemes() {
            for (signer, expected) in [(&newest[..], 0), (&older[..], 1)] {
                let headers = sign(signer, body, now);
                let pairs: Vec<(&str, &str)> = headers
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                let v = verify(&scheme, &[newest, older], &pairs[..], body, now, 300);
                assert_eq!(
                    v.map(|v| v.secret_index),
                    Ok(Some(expected)),
                    "{}",
                    scheme.name()
                );
            }
        }
    }

    #[test]
    fn every_scheme_refuses_every_forgery() {
        let secret = b"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let other = b"whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
        let body = br#"{"id":"evt_1","amount":42}"#;
        let reserialized = br#"{"id": "evt_1", "amount": 42}"#;
        let now = 1_700_000_000;
        for (scheme, sign, timed) in schemes() {
            let name = scheme.name();
            let good = sign(secret, body, now);
            assert!(
                check(&scheme, secret, &good, body, now).is_ok(),
                "{name}: valid request"
            );
            if name != "token" {
                let mut flipped = body.to_vec();
                flipped[7] ^= 1;
                assert!(
                    check(&scheme, secret, &good, &flipped, now).is_err(),
                    "{name}: one byte changed"
                );
                assert!(
                    check(&scheme, secret, &good, reserialized, now).is_err(),
                    "{name}: re-serialized JSON"
                );
            }
            assert!(
                check(&scheme, secret, &sign(other, body, now), body, now).is_err(),
                "{name}: wrong secret"
            );
            for i in 0..good.len() {
                let mut missing = good.clone();
                missing.remove(i);
                assert!(
                    check(&scheme, secret, &missing, body, now).is_err(),
                    "{name}: header {} missing",
                    good[i].0
                );
                let mut garbled = good.clone();
                garbled[i].1 = "%%garbage%%".into();
                if garbled[i].0 != "webhook-id" {
                    assert!(
                        check(&scheme, secret, &garbled, body, now).is_err(),
                        "{name}: header {} malformed",
                        good[i].0
                    );
                }
            }
            if timed {
                for skew in [-301, 301, -86_400] {
                    let replayed = sign(secret, body, now + skew);
                    assert_eq!(
                        check(&scheme, secret, &replayed, body, now),
                        Err(InboundError::Stale),
                        "{name}: timestamp {skew:+}s"
                    );
                }
            }
            // A valid signature made for another scheme never verifies here.
            for (other_scheme, other_sign, _) in schemes() {
                if other_scheme.name() != name {
                    let foreign = other_sign(secret, body, now);
                    let accepted = check(&scheme, secret, &foreign, body, now).is_ok();
                    assert!(
                        !accepted,
                        "{name} accepted a {} signature",
                        other_scheme.name()
                    );
                }
            }
        }
    }
}
