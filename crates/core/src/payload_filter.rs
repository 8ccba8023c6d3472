//! A webhook's optional filter on the payload: a JSON pointer (RFC 6901)
//! and the value, or one of the values, it must hold. Checked at publish, so
//! an event that does not match creates no try for that webhook.
//!
//! Values compare as JSON values, except that numbers compare by value
//! (`1` equals `1.0`). A pointer to nothing matches nothing.

use crate::plain_json::Plain;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

/// Longest pointer accepted.
pub const MAX_POINTER: usize = 256;
/// Most values `oneOf` lists.
pub const MAX_VALUES: usize = 100;
/// Largest filter, as JSON text.
pub const MAX_BYTES: usize = 8 * 1024;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PayloadFilter {
    /// Where in the payload: `""` is the whole payload, `/customer/tier` a
    /// member of a member (`~1` stands for `/`, `~0` for `~`).
    pub pointer: String,
    /// The value there must equal this.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "plain"
    )]
    pub equals: Option<Value>,
    /// The value there must equal one of these.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "plain_list"
    )]
    pub one_of: Option<Vec<Value>>,
}

// The values are read by `plain_json`'s reader, not serde_json's `Value`:
// a filter stored before every way in refused serde_json's raw-value key
// would otherwise fail to read (and so filter nothing) or compare as other
// JSON than was stored. `null` is no value, as before.

fn plain<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Ok(Option::<Plain>::deserialize(d)?.map(|p| p.0))
}

fn plain_list<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<Value>>, D::Error> {
    Ok(Option::<Vec<Plain>>::deserialize(d)?.map(|v| v.into_iter().map(|p| p.0).collect()))
}

impl PayloadFilter {
    /// Reads and checks a filter as the API or the database gives it.
    pub fn parse(v: &Value) -> Result<Self, String> {
        let f: Self = serde_json::from_value(v.clone()).map_err(|e| format!("filter: {e}"))?;
        f.check()?;
        Ok(f)
    }

    /// What is wrong with it, worded for the API's 400.
    pub fn check(&self) -> Result<(), String> {
        if self.pointer.len() > MAX_POINTER {
            return Err(format!("filter.pointer: at most {MAX_POINTER} characters"));
        }
        if !self.pointer.is_empty() && !self.pointer.starts_with('/') {
            return Err(
                "filter.pointer: a JSON pointer starts with / (or is empty for the whole payload)"
                    .into(),
            );
        }
        let mut chars = self.pointer.chars();
        while let Some(c) = chars.next() {
            if c == '~' && !matches!(chars.next(), Some('0' | '1')) {
                return Err("filter.pointer: ~ must be followed by 0 or 1".into());
            }
        }
        match (&self.equals, &self.one_of) {
            (Some(_), None) => {}
            (None, Some(values)) if (1..=MAX_VALUES).contains(&values.len()) => {}
            (None, Some(_)) => {
                return Err(format!("filter.oneOf: 1 to {MAX_VALUES} values"));
            }
            _ => return Err("filter: give exactly one of equals and oneOf".into()),
        }
        let size = serde_json::to_vec(self)
            .map(|b| b.len())
            .unwrap_or(usize::MAX);
        if size > MAX_BYTES {
            return Err(format!("filter: at most {MAX_BYTES} bytes of JSON"));
        }
        Ok(())
    }

    /// Whether `payload` holds the value this filter asks for.
    pub fn matches(&self, payload: &Value) -> bool {
        let Some(found) = payload.pointer(&self.pointer) else {
            return false;
        };
        match (&self.equals, &self.one_of) {
            (Some(want), _) => same(found, want),
            (None, Some(values)) => values.iter().any(|want| same(found, want)),
            (None, None) => false,
        }
    }
}

/// JSON equality, numbers by value: integers exactly (ids past 2^53 stay
/// apart), `1` and `1.0` alike.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            if let (Some(x), Some(y)) = (x.as_i64(), y.as_i64()) {
                return x == y;
            }
            if let (Some(x), Some(y)) = (x.as_u64(), y.as_u64()) {
                return x == y;
            }
            if x.is_f64() || y.is_f64() {
                return x.as_f64() == y.as_f64();
            }
            false
        }
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn filter(v: Value) -> Result<PayloadFilter, String> {
        PayloadFilter::parse(&v)
    }

    #[test]
    fn equals_and_one_of_match_the_value_at_the_pointer() {
        let gold = filter(json!({"pointer": "/customer/tier", "equals": "gold"})).expect("ok");
        assert!(gold.matches(&json!({"customer": {"tier": "gold"}})));
        assert!(!gold.matches(&json!({"customer": {"tier": "silver"}})));
        assert!(!gold.matches(&json!({"customer": {}})), "nothing there");
        assert!(!gold.matches(&json!({"customer": "gold"})));
        let some = filter(json!({"pointer": "/n", "oneOf": [1, "two", null]})).expect("ok");
        assert!(some.matches(&json!({"n": 1.0})), "numbers by value");
        assert!(some.matches(&json!({"n": "two"})));
        assert!(some.matches(&json!({"n": null})));
        assert!(!some.matches(&json!({})), "absent is not null");
        assert!(!some.matches(&json!({"n": "1"})));
        let escaped = filter(json!({"pointer": "/a~1b/c~0d", "equals": true})).expect("ok");
        assert!(escaped.matches(&json!({"a/b": {"c~d": true}})));
        let items = filter(json!({"pointer": "/items/0/sku", "equals": "x"})).expect("ok");
        assert!(items.matches(&json!({"items": [{"sku": "x"}]})));
        let big = filter(json!({"pointer": "/id", "equals": 9007199254740993u64})).expect("ok");
        assert!(
            !big.matches(&json!({"id": 9007199254740992u64})),
            "no f64 rounding"
        );
        assert!(big.matches(&json!({"id": 9007199254740993u64})));
        let whole = filter(json!({"pointer": "", "equals": {"a": 1}})).expect("ok");
        assert!(whole.matches(&json!({"a": 1})));
    }

    #[test]
    fn a_value_holding_the_raw_value_key_is_an_ordinary_value() {
        // A filter stored before every way in refused the key, read back as
        // stored (`plain_json`): it must read, and match as written, not be
        // taken for the JSON text its string holds (nor fail, and so filter
        // nothing).
        let key = "$serde_json::private::RawValue";
        let stored =
            format!(r#"{{"pointer":"/a","oneOf":[{{"{key}":"{{\"b\":1}}"}},2],"equals":null}}"#);
        let v = crate::plain_json::from_slice(stored.as_bytes()).expect("stored JSON");
        let f = PayloadFilter::parse(&v).expect("reads");
        let payload = |a: &str| {
            crate::plain_json::from_slice(format!(r#"{{"a":{a}}}"#).as_bytes()).expect("payload")
        };
        assert!(f.matches(&payload(&format!(r#"{{"{key}":"{{\"b\":1}}"}}"#))));
        assert!(!f.matches(&payload(r#"{"b":1}"#)), "not the inner text");
        assert!(f.matches(&payload("2")));
        let equals = format!(r#"{{"pointer":"/a","equals":{{"{key}":"1"}}}}"#);
        let f =
            PayloadFilter::parse(&crate::plain_json::from_slice(equals.as_bytes()).expect("json"))
                .expect("reads");
        assert!(f.matches(&payload(&format!(r#"{{"{key}":"1"}}"#))));
        assert!(!f.matches(&payload("1")));
    }

    #[test]
    fn malformed_filters_are_refused_with_the_reason() {
        for (bad, says) in [
            (json!({"pointer": "customer", "equals": 1}), "starts with /"),
            (json!({"pointer": "/a~2", "equals": 1}), "~ must be"),
            (json!({"pointer": "/a"}), "exactly one"),
            (
                json!({"pointer": "/a", "equals": 1, "oneOf": [1]}),
                "exactly one",
            ),
            (json!({"pointer": "/a", "oneOf": []}), "1 to 100"),
            (
                json!({"pointer": "/a", "equals": 1, "other": 2}),
                "unknown field",
            ),
            (json!({"equals": 1}), "pointer"),
            (json!("/a"), "filter"),
            (
                json!({"pointer": "/".repeat(300), "equals": 1}),
                "at most 256",
            ),
            (
                json!({"pointer": "/a", "equals": "x".repeat(9000)}),
                "8192 bytes",
            ),
        ] {
            let e = filter(bad.clone()).expect_err(&bad.to_string());
            assert!(e.contains(says), "{bad}: {e}");
        }
    }
}
