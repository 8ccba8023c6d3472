//! JSON read as it was written: a `serde_json::Value` built by our own
//! reader, for which every object key is an ordinary key.
//!
//! Why: serde_json's own `Value` reader (with the `raw_value` feature, which
//! axum and sqlx turn on for the whole build) reads an object led by the
//! key `$serde_json::private::RawValue` as the JSON text its string holds,
//! parsed afresh. Every way in refuses that key now, but values stored
//! before could hold it; read with `Value` they came back as other JSON
//! than was stored, or not at all (and every list, claim or page holding
//! one failed). Stored values, and our own API's answers that carry them,
//! are read with this instead.

use serde::de::{Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

/// A JSON value read by `Plain`'s reader (`Json<Plain>` for a column).
pub struct Plain(pub Value);

/// `serde_json::from_slice`, every key an ordinary key.
pub fn from_slice(bytes: &[u8]) -> serde_json::Result<Value> {
    serde_json::from_slice::<Plain>(bytes).map(|p| p.0)
}

impl<'de> serde::Deserialize<'de> for Plain {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(PlainVisitor).map(Plain)
    }
}

struct PlainVisitor;

impl<'de> Visitor<'de> for PlainVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(v.into())
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(v.into())
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(v.into())
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        // As serde_json's own reader: JSON holds no NaN nor infinity.
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Into::into))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(v.into())
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(v.into())
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        serde::Deserialize::deserialize(d).map(|Plain(v)| v)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        // No capacity from the input's own size hint: it is not ours.
        let mut items = Vec::new();
        while let Some(Plain(v)) = seq.next_element()? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = serde_json::Map::new();
        while let Some((k, Plain(v))) = map.next_entry::<String, Plain>()? {
            object.insert(k, v);
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::from_slice;
    use serde_json::{json, Value};

    /// A value holding serde_json's raw-value key reads back as written, the
    /// key an ordinary key (serde_json's `Value`, built with `raw_value` as
    /// the server is, reads `[1,2]`: the server's canary test), and every
    /// other value as serde_json reads it.
    #[test]
    fn a_value_reads_back_as_it_was_written() {
        let text = r#"{"$serde_json::private::RawValue":"[1,2]","b":[1,{"c":null},true],"f":1.5,"n":-1,"u":18446744073709551615,"s":"\u00e9\n"}"#;
        let mut expected = serde_json::Map::new();
        expected.insert("$serde_json::private::RawValue".into(), json!("[1,2]"));
        expected.insert("b".into(), json!([1, {"c": null}, true]));
        expected.insert("f".into(), json!(1.5));
        expected.insert("n".into(), json!(-1));
        expected.insert("u".into(), json!(u64::MAX));
        expected.insert("s".into(), json!("é\n"));
        assert_eq!(
            from_slice(text.as_bytes()).expect("reads"),
            Value::Object(expected)
        );
        let deep = format!("{}{}", "[".repeat(100), "]".repeat(100));
        for plain in [
            "[]",
            "{}",
            r#""x""#,
            "0",
            "-0",
            "-0.5e-3",
            "1e-400",
            "null",
            r#"{"a":1,"a":2}"#,
            r#"[[[{"a":[]}]]]"#,
            deep.as_str(),
        ] {
            let reference: Value = serde_json::from_str(plain).expect("reads");
            assert_eq!(
                from_slice(plain.as_bytes()).expect("reads"),
                reference,
                "{plain}"
            );
        }
        // What serde_json does not read stays unreadable: a number past f64,
        // nesting past its limit, bad text.
        let deeper = format!("{}{}", "[".repeat(200), "]".repeat(200));
        for bad in [
            r#"{"n":1e400}"#,
            deeper.as_str(),
            r#"{"a":1,}"#,
            "\"\\ud800\"",
        ] {
            assert_eq!(
                from_slice(bad.as_bytes()).is_err(),
                serde_json::from_str::<Value>(bad).is_err(),
                "{bad}"
            );
            assert!(from_slice(bad.as_bytes()).is_err(), "{bad}");
        }
    }
}
