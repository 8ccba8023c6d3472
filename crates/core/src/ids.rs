//! Identifiers: prefixed, time-ordered (UUIDv7) so that ids sort by creation
//! and cursors can page on them.

use uuid::Uuid;

pub fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", Uuid::now_v7().simple())
}

pub fn webhook_id() -> String {
    new_id("wh")
}
pub fn event_id() -> String {
    new_id("evt")
}
pub fn attempt_id() -> String {
    new_id("att")
}
pub fn request_id() -> String {
    new_id("req")
}

/// A request id accepted from a client: short, printable, no separators that
/// could forge log lines.
pub fn is_well_formed_request_id(s: &str) -> bool {
    (1..=128).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_sort_by_creation() {
        let a = event_id();
        let b = event_id();
        assert!(a < b);
        assert!(a.starts_with("evt_"));
    }

    #[test]
    fn request_id_rules() {
        assert!(is_well_formed_request_id("abc-123"));
        assert!(!is_well_formed_request_id(""));
        assert!(!is_well_formed_request_id("a\nb"));
        assert!(!is_well_formed_request_id(&"a".repeat(129)));
    }
}
