//! What the receive path needs from a verified body: that it is one JSON
//! object, and its top-level `"id"` if that is a string (Stripe's event id).
//! The body is checked exactly as strictly as parsing it into a
//! `serde_json::Value` would (UTF-8, escapes and surrogates, control
//! characters, number range, nesting depth, trailing bytes), but nothing is
//! built: a provider's 30 KB payload of hundreds of keys cost as many
//! allocations per request, for a tree that was thrown away. The raw bytes
//! are what is stored and forwarded.

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use std::fmt;

/// The scalar visits (booleans, numbers, null) of a visitor that answers
/// every scalar alike.
macro_rules! scalars_are {
    ($t:ty, $v:expr) => {
        fn visit_bool<E>(self, _: bool) -> Result<$t, E> {
            Ok($v)
        }
        fn visit_i64<E>(self, _: i64) -> Result<$t, E> {
            Ok($v)
        }
        fn visit_u64<E>(self, _: u64) -> Result<$t, E> {
            Ok($v)
        }
        fn visit_f64<E>(self, _: f64) -> Result<$t, E> {
            Ok($v)
        }
        fn visit_unit<E>(self) -> Result<$t, E> {
            Ok($v)
        }
    };
}

/// A verified body's shape.
#[derive(Debug, PartialEq, Eq)]
pub struct Shape {
    /// The last top-level `"id"` member, if it is a string (as indexing a
    /// parsed `Value` would give it: duplicate keys, the last wins).
    pub id: Option<String>,
}

/// Why a body is refused (the caller answers 400 with a fixed message; the
/// body is never quoted).
#[derive(Debug, PartialEq, Eq)]
pub enum NotAnObject {
    /// Not JSON at all, or JSON that `serde_json::Value` would refuse.
    Invalid,
    /// Well-formed JSON whose top level is not an object.
    OtherValue,
    /// An object holds the key serde_json reserves for its raw values
    /// (`RESERVED_KEY`). Parsed into a `Value` (as forwarding parses the
    /// stored body), an object whose first key it is becomes whatever JSON
    /// text its string value holds, parsed afresh with a fresh depth limit:
    /// a body could then forward as something other than what was signed
    /// and checked, or nest past every limit. No provider sends it.
    ReservedKey,
}

/// The key serde_json (with its `raw_value` feature, which axum and sqlx
/// turn on) reads as "the value is raw JSON text" when it comes first.
pub const RESERVED_KEY: &str = "$serde_json::private::RawValue";

/// What a refused body is told (never quoting it).
pub fn reserved_key_refusal() -> String {
    format!("body {}", reserved_key_rule())
}

/// The rule, for whatever holds the key (a body, a payload, a schema).
pub fn reserved_key_rule() -> String {
    format!("must not hold the key {RESERVED_KEY}")
}

/// Whether an object anywhere in this JSON text holds the reserved key, so
/// that no request body is read as raw JSON text it does not show: every
/// JSON body the API reads (`http/json.rs`), where a `Value` field (a
/// published event's payload, say) would otherwise become whatever its
/// string holds. Malformed JSON answers `false` (its own parse refuses it)
/// unless the key comes before what is malformed: a 400 either way.
pub fn holds_reserved_key(raw: &[u8]) -> bool {
    // The key's characters can only be spelled otherwise by a `\u` escape
    // (none is one of the short escapes' `"`, `\`, `/` or controls), so a
    // body without either costs no second pass.
    let has = |needle: &[u8]| raw.windows(needle.len()).any(|w| w == needle);
    if !has(RESERVED_KEY.as_bytes()) && !has(b"\\u") {
        return false;
    }
    // `Checked` raises one data error of its own (the key); every
    // malformation is a syntax or end-of-input error.
    matches!(serde_json::from_slice::<Checked>(raw), Err(e) if e.is_data())
}

/// Checks the whole body; `Ok` only for a well-formed JSON object.
pub fn shape(raw: &[u8]) -> Result<Shape, NotAnObject> {
    match serde_json::from_slice::<Top>(raw) {
        Ok(Top(Some(shape))) => Ok(shape),
        Ok(Top(None)) => Err(NotAnObject::OtherValue),
        // The visitors raise one error of their own (a data error, where
        // every malformation is a syntax or end-of-input one): the key.
        Err(e) if e.is_data() => Err(NotAnObject::ReservedKey),
        Err(_) => Err(NotAnObject::Invalid),
    }
}

/// The reserved key's refusal, raised wherever the key stands.
fn reserved<E: de::Error>(key: &str) -> Result<(), E> {
    if key == RESERVED_KEY {
        return Err(E::custom("reserved key"));
    }
    Ok(())
}

/// The top level: an object's shape, or `None` for any other JSON value.
struct Top(Option<Shape>);

impl<'de> Deserialize<'de> for Top {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Top;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Top, A::Error> {
                let mut id = None;
                while let Some(IsId(is_id)) = map.next_key()? {
                    if is_id {
                        id = map.next_value::<MaybeString>()?.0;
                    } else {
                        map.next_value::<Checked>()?;
                    }
                }
                Ok(Top(Some(Shape { id })))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Top, A::Error> {
                Checked::visit_all(seq).map(|()| Top(None))
            }
            scalars_are!(Top, Top(None));
            fn visit_str<E>(self, _: &str) -> Result<Top, E> {
                Ok(Top(None))
            }
        }
        d.deserialize_any(V)
    }
}

/// An object key, at any depth: refused if it is the reserved one; is it
/// `"id"` (after unescaping, as `Value` would see it)? Only the top
/// level's answer is read.
struct IsId(bool);

impl<'de> Deserialize<'de> for IsId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = IsId;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_str<E: de::Error>(self, key: &str) -> Result<IsId, E> {
                reserved(key)?;
                Ok(IsId(key == "id"))
            }
        }
        d.deserialize_str(V)
    }
}

/// A value kept only if it is a string; any other is checked and dropped.
struct MaybeString(Option<String>);

impl<'de> Deserialize<'de> for MaybeString {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = MaybeString;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_str<E>(self, s: &str) -> Result<MaybeString, E> {
                Ok(MaybeString(Some(s.to_owned())))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<MaybeString, A::Error> {
                Checked::visit_members(map).map(|()| MaybeString(None))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<MaybeString, A::Error> {
                Checked::visit_all(seq).map(|()| MaybeString(None))
            }
            scalars_are!(MaybeString, MaybeString(None));
        }
        d.deserialize_any(V)
    }
}

/// Any JSON value, checked as `Value` would check it and not kept. Strings
/// go through `deserialize_any`, so the parser decodes their escapes (and
/// refuses a lone surrogate) where `IgnoredAny` would only skip them.
struct Checked;

impl Checked {
    fn visit_all<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<(), A::Error> {
        while seq.next_element::<Checked>()?.is_some() {}
        Ok(())
    }

    fn visit_members<'de, A: MapAccess<'de>>(mut map: A) -> Result<(), A::Error> {
        // Keys as the top level's: checked, the reserved one refused.
        while map.next_entry::<IsId, Checked>()?.is_some() {}
        Ok(())
    }
}

impl<'de> Deserialize<'de> for Checked {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Checked;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Checked, A::Error> {
                Checked::visit_members(map).map(|()| Checked)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Checked, A::Error> {
                Checked::visit_all(seq).map(|()| Checked)
            }
            scalars_are!(Checked, Checked);
            fn visit_str<E>(self, _: &str) -> Result<Checked, E> {
                Ok(Checked)
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    /// What the receive path did before: a full parse, then `is_object` and
    /// `body["id"].as_str()`.
    fn by_value(raw: &[u8]) -> Result<Shape, NotAnObject> {
        let v: Value = serde_json::from_slice(raw).map_err(|_| NotAnObject::Invalid)?;
        if !v.is_object() {
            return Err(NotAnObject::OtherValue);
        }
        Ok(Shape {
            id: v["id"].as_str().map(str::to_owned),
        })
    }

    #[test]
    fn agrees_with_a_full_parse_on_hostile_and_odd_bodies() {
        let deep_ok = format!("{}1{}", "[".repeat(120), "]".repeat(120));
        let too_deep = format!("{{\"a\":{}1{}}}", "[".repeat(200), "]".repeat(200));
        let cases: Vec<Vec<u8>> = [
            r#"{"id":"evt_1","type":"x"}"#,
            r#"{"type":"x","id":"evt_1"}"#,
            r#"{"id":"a","id":"b"}"#,
            r#"{"id":"a","id":7}"#,
            r#"{"id":7,"id":"b"}"#,
            r#"{"i\u0064":"escaped key"}"#,
            r#"{"id":"esc\"aped\u00e9"}"#,
            r#"{"id":{"id":"nested"}}"#,
            r#"{"a":{"id":"nested only"}}"#,
            r#"{"id":null}"#,
            r#"{"id":["x"]}"#,
            r#"{}"#,
            r#"  {"a":1}  "#,
            r#"[]"#,
            r#"[{"id":"x"}]"#,
            r#""id""#,
            r#"42"#,
            r#"null"#,
            r#"true"#,
            r#"{"a":"\ud800"}"#,
            r#"{"a":"\udc00\ud800"}"#,
            r#"{"a":"\ud83d\ude00"}"#,
            r#"{"a":"\x"}"#,
            r#"{"a":"\u12"}"#,
            r#"{"a":1e400}"#,
            r#"{"a":-1e400}"#,
            r#"{"a":123456789012345678901234567890}"#,
            r#"{"a":01}"#,
            r#"{"a":1.}"#,
            r#"{"a":NaN}"#,
            r#"{"a":1,}"#,
            r#"{"a":[1,]}"#,
            r#"{"a":1} x"#,
            r#"{"a":1}{"b":2}"#,
            r#"{a:1}"#,
            r#"{'a':1}"#,
            r#"{"a":1"#,
            r#""#,
            "{\"a\":\"tab\tinside\"}",
            "{\"a\":\"nul\0inside\"}",
            "{\"a\":\"new\nline\"}",
            "\u{feff}{\"a\":1}",
            &deep_ok,
            &too_deep,
        ]
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .chain([
            b"{\"a\":\"\xff\"}".to_vec(),
            b"{\"\xc3\x28\":1}".to_vec(),
            b"{\"id\":\"\xed\xa0\x80\"}".to_vec(),
            b"{\"a\":1}\0".to_vec(),
        ])
        .collect();
        for raw in &cases {
            assert_eq!(
                shape(raw),
                by_value(raw),
                "{:?}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    #[test]
    fn the_reserved_raw_value_key_is_refused_wherever_it_stands() {
        // A full parse would read these as other bodies (`Value` turns the
        // first into `"evt_1"`'s object, the second into an array, and
        // refuses the third); all are refused here, escaped or not.
        for raw in [
            r#"{"$serde_json::private::RawValu\u0065":"{\"id\":\"evt_1\"}"}"#,
            r#"{"$serde_json::private::RawValue":"[1,2]"}"#,
            r#"{"a":{"$serde_json::private::RawValue":"zz"}}"#,
            r#"{"a":1,"$serde_json::private::RawValue":"{}"}"#,
            r#"{"a":[{"b":{"$serde_json::private::RawValue":1}}]}"#,
            r#"{"id":{"$serde_json::private::RawValue":"x"}}"#,
        ] {
            assert_eq!(
                shape(raw.as_bytes()),
                Err(NotAnObject::ReservedKey),
                "{raw}"
            );
        }
        // A value that merely says it is fine.
        assert!(shape(br#"{"a":"$serde_json::private::RawValue"}"#).is_ok());
    }

    /// The key is serde_json's private one, copied here: if serde_json ever
    /// spells it otherwise, this fails and `RESERVED_KEY` must follow.
    #[test]
    fn serde_json_still_reads_the_reserved_key_as_raw_json_text() {
        let read: Value =
            serde_json::from_str(r#"{"$serde_json::private::RawValue":"[1]"}"#).expect("parses");
        assert_eq!(read, serde_json::json!([1]));
    }

    /// Any JSON body the API reads: the key refused wherever it stands,
    /// however it is spelt; bodies without it, and malformed ones (their
    /// own parse refuses them), pass.
    #[test]
    fn a_body_holding_the_reserved_key_is_found_at_any_depth() {
        for raw in [
            r#"{"payload":{"$serde_json::private::RawValue":"[1,2]"}}"#,
            r#"{"payload":{"\u0024serde_json::private::RawValue":"[1,2]"}}"#,
            r#"{"a":1,"payload":{"x":[{"$serde_json::private::Raw\u0056alue":"{}"}]}}"#,
            r#"[{"$serde_json::private::RawValue":"1"}]"#,
            // Malformed after the key: refused for the key.
            r#"{"payload":{"$serde_json::private::RawValue":"x""#,
            // Not first (harmless in this parse, but first once stored with
            // its keys sorted).
            r#"{"payload":{"zzzz":1,"$serde_json::private::RawValue":"0"}}"#,
        ] {
            assert!(holds_reserved_key(raw.as_bytes()), "{raw}");
        }
        // At the deepest a parse reaches (serde_json stops at 128 levels).
        let deep = format!(
            "{}{{\"$serde_json::private::RawValue\":1}}{}",
            "[".repeat(126),
            "]".repeat(126)
        );
        assert!(holds_reserved_key(deep.as_bytes()));
        for raw in [
            r#"{"payload":{"note":"$serde_json::private::RawValue"}}"#,
            r#"{"payload":{"caf\u00e9":"\u00e9"}}"#,
            r#"{"payload":{"a":"\\u0024"}}"#,
            r#"{"payload":{"a":"\u0024"#,
            r#"{}"#,
        ] {
            assert!(!holds_reserved_key(raw.as_bytes()), "{raw}");
        }
    }

    #[test]
    fn agrees_with_a_full_parse_on_random_mutations() {
        // Mutations of a realistic payload: every single-byte change at
        // every position, each byte value from a small hostile set.
        let base = br#"{"id":"evt_1","object":"event","data":{"object":{"amount":42,"tags":["a","\u00e9"],"ok":true,"n":null,"f":-1.5e3}}}"#;
        let bytes = [
            b'"', b'\\', b'{', b'}', b'[', b']', b',', b':', b'u', b'0', b'e', b'-', b' ', 0, 0x80,
            0xff,
        ];
        for at in 0..base.len() {
            for &b in &bytes {
                let mut raw = base.to_vec();
                raw[at] = b;
                assert_eq!(
                    shape(&raw),
                    by_value(&raw),
                    "{:?}",
                    String::from_utf8_lossy(&raw)
                );
            }
            let mut cut = base.to_vec();
            cut.truncate(at);
            assert_eq!(shape(&cut), by_value(&cut));
        }
    }
}
