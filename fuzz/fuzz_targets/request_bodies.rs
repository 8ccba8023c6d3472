//! Every request body the APIs accept, and what the server then checks in
//! them: any bytes give a value or an error, never a panic.
#![no_main]

use hookwarden_core::crypto::{Keyring, MasterKey};
use hookwarden_core::validate;
use hookwarden_server::inbound::body::NotAnObject;
use hookwarden_server::inbound::integrations::{build, IntegrationInput};
use hookwarden_server::outbound::intake::PublishRequest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = serde_json::from_slice::<hookwarden_server::http::webhooks::CreateWebhook>(data);
    let _ = serde_json::from_slice::<hookwarden_server::http::webhooks::UpdateWebhook>(data);
    let _ = serde_json::from_slice::<hookwarden_server::http::event_types::PutEventType>(data);
    let _ = serde_json::from_slice::<hookwarden_server::http::operator::inbound::events::ReplayBody>(data);
    if let Ok(p) = serde_json::from_slice::<PublishRequest>(data) {
        let _ = validate::identifier("accountId", &p.account_id);
        let _ = validate::event_type(&p.event_type);
        let _ = validate::payload(&p.payload);
        let _ = validate::subscriptions(std::slice::from_ref(&p.event_type));
        let _ = validate::description(&p.event_type);
    }
    if let Ok(input) = serde_json::from_slice::<IntegrationInput>(data) {
        let keyring = Keyring::new(MasterKey::from_bytes([7; 32]), vec![]);
        let name = input.name.clone().unwrap_or_else(|| "fuzz".into());
        let _ = build(&keyring, &name, &input, None);
    }
    // An inbound body is any JSON object, checked without building it
    // (`inbound/body.rs`): never a panic, and exactly the verdict (and the
    // top-level "id") a full parse gives.
    let shape = hookwarden_server::inbound::body::shape(data);
    let full = match serde_json::from_slice::<serde_json::Value>(data) {
        Err(_) => Err(NotAnObject::Invalid),
        Ok(v) if !v.is_object() => Err(NotAnObject::OtherValue),
        Ok(v) => Ok(v["id"].as_str().map(str::to_owned)),
    };
    // Every other JSON body the API reads is refused for the key by a check
    // that skips a body spelling neither it nor a `\u` escape: the skip never
    // hides one, and the check agrees with the body check's verdict.
    assert_eq!(
        hookwarden_server::inbound::body::holds_reserved_key(data),
        shape == Err(NotAnObject::ReservedKey),
        "the reserved-key check disagrees with the body check"
    );
    if shape == Err(NotAnObject::ReservedKey) {
        // Refused on purpose where a full parse would read the body as
        // other JSON; only a body naming the key (perhaps escaped) is.
        assert!(
            data.windows(11).any(|w| w == b"$serde_json") || data.contains(&b'\\'),
            "reserved key reported for a body without it"
        );
    } else {
        assert_eq!(shape.map(|s| s.id), full, "body check disagrees with a full parse");
    }
});
