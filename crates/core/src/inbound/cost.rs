//! An unsigned request stays cheap under every scheme: headers are bounded
//! before any parsing, and the body's MAC is computed once per secret,
//! never once per candidate signature the sender chose to send.

use super::matrix::schemes;
use super::*;
use std::time::{Duration, Instant};

const NOW: i64 = 1_700_000_000;
const SECRET: &[u8] = b"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const OTHER: &[u8] = b"whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

/// Verifies and says how many MACs this took (counted on this thread).
fn verify_counting(
    scheme: &Scheme,
    secrets: &[&[u8]],
    headers: &[(String, String)],
    body: &[u8],
) -> (Result<Verified, InboundError>, usize) {
    let pairs: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    MACS_STARTED.with(|n| n.set(0));
    let result = verify(
        scheme,
        secrets,
        &pairs[..],
        body,
        NOW,
        DEFAULT_TOLERANCE_SECS,
    );
    (result, MACS_STARTED.with(|n| n.get()))
}

fn big_body() -> Vec<u8> {
    let mut body = br#"{"pad":""#.to_vec();
    body.resize(1024 * 1024 - 2, b'a');
    body.extend_from_slice(br#""}"#);
    body
}

/// The header that carries several signatures, for the schemes that allow it.
fn multi_header(scheme: &Scheme) -> Option<&'static str> {
    match scheme {
        Scheme::Stripe => Some("stripe-signature"),
        Scheme::StandardWebhooks => Some("webhook-signature"),
        _ => None,
    }
}

/// `n` well-formed signatures that match nothing, in the scheme's syntax.
fn decoys(scheme: &Scheme, n: usize) -> String {
    let fake_hex = "ab".repeat(32);
    let fake_b64 = "q83vq83vq83vq83vq83vq83vq83vq83vq83vq83vq80=";
    match scheme {
        Scheme::Stripe => vec![format!("v1={fake_hex}"); n].join(","),
        _ => vec![format!("v1,{fake_b64}"); n].join(" "),
    }
}

#[test]
fn a_stripe_header_with_thousands_of_candidates_is_refused_before_any_mac() {
    let body = big_body();
    let header = format!("t={NOW},{}", decoys(&Scheme::Stripe, 5_900));
    assert!(header.len() > 390_000);
    let started = Instant::now();
    let (result, macs) = verify_counting(
        &Scheme::Stripe,
        &[OTHER, SECRET],
        &[("stripe-signature".into(), header)],
        &body,
    );
    assert_eq!(result, Err(InboundError::Malformed));
    assert_eq!(macs, 0, "refused before hashing the body");
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[test]
fn a_webhook_signature_with_thousands_of_tokens_is_refused_before_any_mac() {
    let body = big_body();
    let headers = vec![
        ("webhook-id".into(), "msg_1".into()),
        ("webhook-timestamp".into(), NOW.to_string()),
        (
            "webhook-signature".into(),
            decoys(&Scheme::StandardWebhooks, 8_500),
        ),
    ];
    let started = Instant::now();
    let (result, macs) =
        verify_counting(&Scheme::StandardWebhooks, &[OTHER, SECRET], &headers, &body);
    assert_eq!(result, Err(InboundError::Malformed));
    assert_eq!(macs, 0, "refused before hashing the body");
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[test]
fn more_candidates_than_the_cap_are_malformed_even_in_a_short_header() {
    for scheme in [Scheme::Stripe, Scheme::StandardWebhooks] {
        let name = multi_header(&scheme).expect("multi-signature scheme");
        let mut headers = vec![
            ("webhook-id".to_owned(), "msg_1".to_owned()),
            ("webhook-timestamp".to_owned(), NOW.to_string()),
        ];
        // Short signatures, so the count trips before the length does.
        let short = |n: usize| match scheme {
            Scheme::Stripe => format!("t={NOW},{}", vec!["v1=00"; n].join(",")),
            _ => vec!["v1,AA=="; n].join(" "),
        };
        headers.push((name.into(), short(MAX_SIGNATURE_CANDIDATES + 1)));
        assert!(headers[2].1.len() < MAX_SIGNATURE_HEADER_BYTES);
        let (result, macs) = verify_counting(&scheme, &[SECRET], &headers, b"{}");
        assert_eq!(result, Err(InboundError::Malformed), "{}", scheme.name());
        assert_eq!(macs, 0);
        // At the cap the header is read, and simply does not match.
        headers[2].1 = short(MAX_SIGNATURE_CANDIDATES);
        let (result, macs) = verify_counting(&scheme, &[SECRET], &headers, b"{}");
        assert_eq!(result, Err(InboundError::Mismatch), "{}", scheme.name());
        assert_eq!(macs, 1);
    }
    // Stripe counts ignored schemes (v0 and future ones) towards the cap as well.
    let v0s = format!("t={NOW},v1=00,{}", vec!["v0=00"; 16].join(","));
    let (result, _) = verify_counting(
        &Scheme::Stripe,
        &[SECRET],
        &[("stripe-signature".into(), v0s)],
        b"{}",
    );
    assert_eq!(result, Err(InboundError::Malformed));
}

#[test]
fn each_secret_is_hashed_once_however_many_candidates() {
    let body = big_body();
    for (scheme, sign, _) in schemes() {
        let name = scheme.name();
        let mut good = sign(SECRET, &body, NOW);
        if let Some(header) = multi_header(&scheme) {
            // The valid signature last, behind decoys up to the cap.
            let slot = good
                .iter_mut()
                .find(|(k, _)| k == header)
                .expect("signature header");
            slot.1 = match scheme {
                Scheme::Stripe => slot.1.replacen(
                    ",v1=",
                    &format!(",{},v1=", decoys(&scheme, MAX_SIGNATURE_CANDIDATES - 1)),
                    1,
                ),
                _ => format!(
                    "{} {}",
                    decoys(&scheme, MAX_SIGNATURE_CANDIDATES - 1),
                    slot.1
                ),
            };
        }
        let expected = if name == "token" { 0 } else { 2 };
        let (result, macs) = verify_counting(&scheme, &[OTHER, SECRET], &good, &body);
        assert!(result.is_ok(), "{name}: {result:?}");
        assert_eq!(macs, expected, "{name}: one MAC per secret");
        let (result, macs) = verify_counting(&scheme, &[OTHER], &good, &body);
        assert_eq!(result, Err(InboundError::Mismatch), "{name}");
        assert_eq!(macs, expected / 2, "{name}: one MAC per secret");
    }
}

#[test]
fn secrets_beyond_the_cap_are_not_hashed() {
    let many = [OTHER; MAX_ACTIVE_SECRETS + 3];
    assert_eq!(macs_once(&many, &[b"body"]).len(), MAX_ACTIVE_SECRETS);
}

#[test]
fn every_oversized_header_is_malformed_before_any_mac() {
    let long_hex = "ab".repeat(MAX_SIGNATURE_HEADER_BYTES / 2 + 1);
    for (scheme, sign, _) in schemes() {
        let name = scheme.name();
        let good = sign(SECRET, b"{}", NOW);
        for i in 0..good.len() {
            let mut headers = good.clone();
            headers[i].1 = match headers[i].0.as_str() {
                "stripe-signature" => format!("t={NOW},v1={long_hex}"),
                "x-hub-signature-256" => format!("sha256={long_hex}"),
                "x-slack-signature" => format!("v0={long_hex}"),
                "x-slack-request-timestamp" | "webhook-timestamp" => {
                    format!("{}{NOW}", "0".repeat(MAX_SIGNATURE_HEADER_BYTES))
                }
                "webhook-id" => "m".repeat(MAX_WEBHOOK_ID_BYTES + 1),
                _ => long_hex.clone(),
            };
            let (result, macs) = verify_counting(&scheme, &[SECRET], &headers, b"{}");
            assert_eq!(
                result,
                Err(InboundError::Malformed),
                "{name}: {} too long",
                headers[i].0
            );
            assert_eq!(macs, 0, "{name}: {}", headers[i].0);
        }
    }
}

#[test]
fn candidates_are_compared_with_every_mac() {
    let macs = macs_once(&[OTHER, SECRET], &[b"body"]);
    assert_eq!(macs.len(), 2);
    let right = hmac_sha256(SECRET, &[b"body"]).finalize().into_bytes();
    let wrong = [0u8; 32];
    assert!(any_candidate_matches(&macs, &[&wrong[..], &right[..]]));
    assert!(any_candidate_matches(&macs, &[&right[..], &wrong[..]]));
    assert!(!any_candidate_matches(&macs, &[&wrong[..]]));
    // A prefix of the MAC is not the MAC.
    assert!(!any_candidate_matches(&macs, &[&right[..16]]));
    assert!(!any_candidate_matches::<&[u8]>(&macs, &[]));
}
