//! Configuration parsing: any TOML document either gives settings or a
//! clear error, never a panic; durations and retry schedules likewise.
#![no_main]

use hookwarden_core::duration::{parse_duration, parse_schedule};
use hookwarden_server::config::Settings;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = Settings::from_toml(&text);
    let _ = parse_duration(&text);
    let _ = parse_schedule(&text);
    let _ = hookwarden_core::backoff::parse_retry_after(&text);
});
