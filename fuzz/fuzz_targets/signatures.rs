//! Every signature scheme's header parser and verifier, and the trace
//! context's parser, over arbitrary headers and bodies: never a panic, never
//! a hang, never a pass without the secret (the input cannot know the fixed
//! secret below).
#![no_main]

use hookwarden_core::inbound::{verify, Scheme};
use hookwarden_core::secret::WebhookSecret;
use hookwarden_core::standard_webhooks;
use hookwarden_core::trace_context::TraceParent;
use libfuzzer_sys::fuzz_target;

const NOW: i64 = 1_700_000_000;

fuzz_target!(|data: &[u8]| {
    // Layout: header value \n second header value \n body.
    let mut parts = data.splitn(3, |b| *b == b'\n');
    let first = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let second = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let body = parts.next().unwrap_or_default();
    let secret: &[u8] = b"fuzzing-secret-never-in-the-input";

    let schemes = [
        Scheme::from_config("hmac-sha256", Some("x-sig"), Some("hex"), Some("sha256=")),
        Scheme::from_config("hmac-sha256", Some("x-sig"), Some("base64"), None),
        Scheme::from_config("token", Some("x-sig"), None, None),
        Scheme::from_config("standard-webhooks", None, None, None),
        Scheme::from_config("stripe", None, None, None),
        Scheme::from_config("github", None, None, None),
        Scheme::from_config("slack", None, None, None),
        Scheme::from_config("shopify", None, None, None),
    ];
    // Every header any scheme reads gets the fuzzed values.
    let headers: Vec<(&str, &str)> = vec![
        ("x-sig", &first),
        ("webhook-id", &second),
        ("webhook-timestamp", &second),
        ("webhook-signature", &first),
        ("stripe-signature", &first),
        ("x-hub-signature-256", &first),
        ("x-slack-signature", &first),
        ("x-slack-request-timestamp", &second),
        ("x-shopify-hmac-sha256", &first),
    ];
    for scheme in schemes.into_iter().flatten() {
        let result = verify(&scheme, &[secret], headers.as_slice(), body, NOW, 300);
        assert!(result.is_err(), "{} verified without the secret", scheme.name());
    }

    let key = WebhookSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").expect("secret");
    let outcome = standard_webhooks::verify(&[&key], &second, &second, &first, body, NOW, 300);
    assert!(outcome.is_err(), "standard webhooks verified without the secret");
    // Secrets themselves come from operators and tenants: parsing never panics.
    let _ = WebhookSecret::parse(&first);
    // A `traceparent` from anyone: what is read writes back as itself
    // (version 00), so nothing else a caller sent is ever stored or sent on.
    if let Some(tp) = TraceParent::parse(&first) {
        let written = tp.to_string();
        assert_eq!(TraceParent::parse(&written), Some(tp));
        assert!(written.len() == 55 && written.is_ascii());
    }
});
