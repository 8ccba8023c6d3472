//! JSON Schemas of event types: payloads are checked at the publish edge
//! (HTTP and NATS) and again before delivery. Compiled schemas are cached and
//! re-read from the database at most every few seconds, so a change made
//! through another replica applies quickly without a query per event.
//! Remote `$ref`s are never fetched (no resolver is compiled in).

use hookwarden_store::Store;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

/// How long a compiled schema (or the knowledge that a type has none) is used
/// before the database is asked again.
const FRESH_FOR: Duration = Duration::from_secs(5);
/// Most event types held at once: the cache is bounded whatever names
/// producers publish under (each entry is a compiled validator of at most
/// `MAX_SCHEMA_BYTES` of schema).
const MAX_CACHED: u64 = 10_000;
/// Largest schema accepted.
pub const MAX_SCHEMA_BYTES: usize = 64 * 1024;

/// A type's compiled schema, or `None` when the type has none.
type Cached = Option<Arc<jsonschema::Validator>>;

/// Compiled schemas by event type. Concurrent misses for one type wait for a
/// single read and compilation (no stampede on the database after a change
/// or at start-up). Clones share the cache.
#[derive(Clone)]
pub struct SchemaCache {
    entries: moka::future::Cache<String, Cached>,
}

impl Default for SchemaCache {
    fn default() -> Self {
        Self {
            entries: moka::future::Cache::builder()
                .max_capacity(MAX_CACHED)
                .time_to_live(FRESH_FOR)
                .build(),
        }
    }
}

/// Compiles a schema, or says why it is not one.
pub fn compile(schema: &Value) -> Result<jsonschema::Validator, String> {
    if !schema.is_object() {
        return Err("schema must be a JSON object".into());
    }
    if serde_json::to_vec(schema)
        .map(|v| v.len())
        .unwrap_or(usize::MAX)
        > MAX_SCHEMA_BYTES
    {
        return Err(format!("schema must be at most {MAX_SCHEMA_BYTES} bytes"));
    }
    jsonschema::validator_for(schema).map_err(|e| format!("schema is not valid: {e}"))
}

impl SchemaCache {
    /// Forgets a type (after this process changed it).
    pub async fn invalidate(&self, name: &str) {
        self.entries.invalidate(name).await;
    }

    async fn validator(&self, store: &dyn Store, event_type: &str) -> anyhow::Result<Cached> {
        let load = async {
            match store.get_event_type(event_type).await? {
                Some(t) => Ok::<_, anyhow::Error>(Some(Arc::new(
                    compile(&t.schema).map_err(anyhow::Error::msg)?,
                ))),
                None => Ok(None),
            }
        };
        // A failed load is not cached: the next check asks again.
        self.entries
            .try_get_with_by_ref(event_type, load)
            .await
            .map_err(|e: Arc<anyhow::Error>| anyhow::anyhow!("{e:#}"))
    }

    /// Checks `payload` against the schema of `event_type`, when one is registered.
    /// `Ok(Err(reason))` when it does not conform; `Err` when the check itself failed.
    pub async fn check(
        &self,
        store: &dyn Store,
        event_type: &str,
        payload: &Value,
    ) -> anyhow::Result<Result<(), String>> {
        let Some(validator) = self.validator(store, event_type).await? else {
            return Ok(Ok(()));
        };
        let first = validator
            .iter_errors(payload)
            .next()
            .map(|e| mismatch(event_type, payload, &e));
        Ok(first.map_or(Ok(()), Err))
    }
}

/// Why a payload does not conform, safe to answer, log and store: the place
/// and the keyword that failed, never a value. The validator's own message
/// quotes the offending value (a phone number, say) and the schema's
/// constants, so it is never used.
fn mismatch(event_type: &str, payload: &Value, e: &jsonschema::ValidationError<'_>) -> String {
    format!(
        "payload does not match the schema of {event_type} at {}: {}",
        safe_path(payload, e.instance_path().as_str()),
        keyword(e)
    )
}

/// The keyword that failed. A `false` subschema (`additionalProperties:
/// false`, say) reports itself as `falseSchema`; the keyword holding it is
/// more useful, and is schema text, not payload.
fn keyword<'e>(e: &'e jsonschema::ValidationError<'_>) -> &'e str {
    const HOLDERS: [&str; 7] = [
        "additionalProperties",
        "additionalItems",
        "items",
        "propertyNames",
        "unevaluatedProperties",
        "unevaluatedItems",
        "not",
    ];
    let kw = e.kind().keyword();
    if kw == "falseSchema" {
        let holder = e.schema_path().as_str().rsplit('/').next();
        if let Some(h) = holder.and_then(|h| HOLDERS.iter().find(|k| **k == h)) {
            return h;
        }
    }
    kw
}

/// The JSON pointer `pointer` into `payload`, with every object key that is
/// not a plain field name (a map keyed by phone numbers or emails, say)
/// shown as `*`: keys can be data too. Array indices are kept.
fn safe_path(payload: &Value, pointer: &str) -> String {
    if pointer.is_empty() {
        return "the top level".into();
    }
    let mut node = Some(payload);
    let mut out = String::new();
    for raw in pointer.split('/').skip(1) {
        let key = raw.replace("~1", "/").replace("~0", "~");
        out.push('/');
        node = match node {
            Some(Value::Array(items)) => match key.parse::<usize>() {
                Ok(i) => {
                    out.push_str(&i.to_string());
                    items.get(i)
                }
                Err(_) => {
                    out.push('*');
                    None
                }
            },
            Some(Value::Object(map)) => {
                out.push_str(if is_field_name(&key) {
                    key.as_str()
                } else {
                    "*"
                });
                map.get(&key)
            }
            _ => {
                out.push('*');
                None
            }
        };
    }
    out
}

/// A field name as schemas name them: a letter or `_` first, then letters,
/// digits, `_` or `-`, at most 64 characters.
fn is_field_name(key: &str) -> bool {
    let mut bytes = key.bytes();
    key.len() <= 64
        && bytes
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn reason(schema: Value, payload: Value) -> String {
        let validator = compile(&schema).expect("schema");
        let e = validator.iter_errors(&payload).next().expect("a mismatch");
        mismatch("sms.sent", &payload, &e)
    }

    #[test]
    fn mismatches_name_the_place_and_keyword_never_the_value() {
        let phone = "+15551234567";
        let cases = [
            (
                json!({"properties": {"to": {"pattern": "^[a-z]+$"}}}),
                json!({"to": phone}),
                "payload does not match the schema of sms.sent at /to: pattern",
            ),
            (
                json!({"properties": {"to": {"type": "integer"}}}),
                json!({"to": phone}),
                "payload does not match the schema of sms.sent at /to: type",
            ),
            (
                json!({"properties": {"to": {"enum": ["+15550000000"]}}}),
                json!({"to": phone}),
                "payload does not match the schema of sms.sent at /to: enum",
            ),
            (
                json!({"properties": {"to": {"const": "+15550000000"}}}),
                json!({"to": phone}),
                "payload does not match the schema of sms.sent at /to: const",
            ),
            (
                json!({"properties": {"to": {"maxLength": 3}}}),
                json!({"to": phone}),
                "payload does not match the schema of sms.sent at /to: maxLength",
            ),
            (
                json!({"additionalProperties": false}),
                json!({ phone: 1 }),
                "payload does not match the schema of sms.sent at the top level: additionalProperties",
            ),
            (
                json!({"required": ["to"]}),
                json!({}),
                "payload does not match the schema of sms.sent at the top level: required",
            ),
            // Keys that are data (a map keyed by phone number, even digits only) are masked.
            (
                json!({"additionalProperties": {"type": "object", "additionalProperties": {"type": "string"}}}),
                json!({"contacts": {phone: 1}}),
                "payload does not match the schema of sms.sent at /contacts/*: type",
            ),
            (
                json!({"additionalProperties": {"type": "string"}}),
                json!({"15551234567": 1}),
                "payload does not match the schema of sms.sent at /*: type",
            ),
            (
                json!({"properties": {"list": {"items": {"type": "integer"}}}}),
                json!({"list": [1, 2, phone]}),
                "payload does not match the schema of sms.sent at /list/2: type",
            ),
        ];
        for (schema, payload, expected) in cases {
            let text = reason(schema, payload);
            assert_eq!(text, expected);
            assert!(!text.contains("555"), "{text}");
        }
    }
}
