//! Conformance with the published Standard Webhooks test vectors, kept in
//! the repository at `tests/vectors/standard-webhooks.json`.

use hookwarden_core::{secret::WebhookSecret, standard_webhooks};
use serde_json::Value;

fn vectors() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/vectors/standard-webhooks.json"
    );
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("the test vectors at {path}: {e}"));
    serde_json::from_str(&text).expect("vectors are JSON")
}

fn field<'a>(v: &'a Value, k: &str) -> &'a str {
    v[k].as_str().unwrap_or_else(|| panic!("vector field {k}"))
}

#[test]
fn symmetric_vectors_sign_and_verify() {
    let all = vectors();
    let list = all["symmetric"].as_array().expect("symmetric list");
    assert!(!list.is_empty());
    for v in list {
        let secret = WebhookSecret::parse(field(v, "secret")).expect("secret");
        let ts = v["timestamp"].as_i64().expect("timestamp");
        let body = field(v, "payload").as_bytes();
        assert_eq!(
            standard_webhooks::sign(&secret, field(v, "id"), ts, body),
            field(v, "signature")
        );
        standard_webhooks::verify(
            &[&secret],
            field(v, "id"),
            &ts.to_string(),
            field(v, "signature"),
            body,
            ts,
            300,
        )
        .expect("vector verifies");
    }
}

#[test]
fn negative_vectors_do_not_verify() {
    let all = vectors();
    for v in all["must_not_verify"].as_array().expect("list") {
        let secret = WebhookSecret::parse(field(v, "secret")).expect("secret");
        let ts = v["timestamp"].as_i64().expect("timestamp");
        let res = standard_webhooks::verify(
            &[&secret],
            field(v, "id"),
            &ts.to_string(),
            field(v, "signature"),
            field(v, "payload").as_bytes(),
            ts,
            300,
        );
        assert!(res.is_err(), "{}", field(v, "why"));
    }
}

/// `v1a`: the published Ed25519 vector signs to the published signature,
/// and the key's public half is the published `whpk_`.
#[test]
fn asymmetric_vectors_sign_alike_and_show_their_public_key() {
    use base64::{engine::general_purpose::STANDARD, Engine};
    let all = vectors();
    let list = all["asymmetric_v1a"].as_array().expect("asymmetric list");
    assert!(!list.is_empty());
    for v in list {
        let pair = STANDARD
            .decode(field(v, "keypair_base64_seed_then_public"))
            .expect("base64");
        let key = WebhookSecret::parse_key(&format!("whsk_{}", STANDARD.encode(&pair)))
            .expect("seed and public key");
        let seed_only = WebhookSecret::parse_key(&format!("whsk_{}", STANDARD.encode(&pair[..32])))
            .expect("seed");
        assert_eq!(key, seed_only);
        assert_eq!(key.public_key().as_deref(), Some(field(v, "public")));
        let ts = v["timestamp"].as_i64().expect("timestamp");
        assert_eq!(
            standard_webhooks::sign(&key, field(v, "id"), ts, field(v, "payload").as_bytes()),
            field(v, "signature")
        );
    }
}
