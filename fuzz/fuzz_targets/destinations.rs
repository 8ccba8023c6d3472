//! URL and IP normalization for delivery destinations: arbitrary URLs,
//! host names and CIDR lists never panic, and whatever the strict policy
//! accepts is an http(s) URL to a public address or a name.
#![no_main]

use hookwarden_core::destination::{canonical, check_name, parse_cidrs, AddressPolicy};
use libfuzzer_sys::fuzz_target;
use std::net::IpAddr;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let strict = AddressPolicy::strict();
    if let Ok(url) = strict.check_url(&text) {
        assert_eq!(url.scheme(), "https", "strict policy allows https only");
        assert!(url.username().is_empty() && url.password().is_none());
        if let Some(url::Host::Ipv4(ip)) = url.host() {
            assert!(strict.check_ip(IpAddr::V4(ip)).is_ok());
        }
        if let Some(url::Host::Ipv6(ip)) = url.host() {
            assert!(strict.check_ip(IpAddr::V6(ip)).is_ok());
        }
    }
    let _ = check_name(&text);
    if let Ok(nets) = parse_cidrs(&text) {
        let lenient = AddressPolicy::new(nets, true);
        let _ = lenient.check_url(&text);
    }
    // Any 16 bytes as an IPv6 address (mapped, NAT64, 6to4, Teredo forms).
    if data.len() >= 16 {
        let mut octets = [0u8; 16];
        octets.copy_from_slice(&data[..16]);
        let ip = IpAddr::from(octets);
        let c = canonical(ip);
        // Canonical form is stable, and the policy agrees with itself on it.
        assert_eq!(canonical(c), c);
        if strict.check_ip(ip).is_ok() {
            assert!(strict.check_ip(c).is_ok(), "{ip} allowed but {c} refused");
        }
    }
});
