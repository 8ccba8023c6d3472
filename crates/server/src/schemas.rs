//! JSON Schemas of event types: payloads are checked at the publish edge
//! (HTTP and NATS) and again before delivery. Compiled schemas are cached and
//! re-read from the database at most every few seconds, so a change made
//! through another replica applies quickly without a query per event.
//! Remote `$ref`s are never fetched (no resolver is compiled in).

use hookwarden_store::Store;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const FRESH_FOR: Duration = Duration::from_secs(5);
/// Largest schema accepted.
pub const MAX_SCHEMA_BYTES: usize = 64 * 1024;

type Cached = (Instant, Option<Arc<jsonschema::Validator>>);

#[derive(Default)]
pub struct SchemaCache {
    entries: Mutex<HashMap<String, Cached>>,
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
    pub fn invalidate(&self, name: &str) {
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
    }

    async fn validator(
        &self,
        store: &dyn Store,
        event_type: &str,
    ) -> anyhow::Result<Option<Arc<jsonschema::Validator>>> {
        if let Some((at, v)) = self
            .entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(event_type)
        {
            if at.elapsed() < FRESH_FOR {
                return Ok(v.clone());
            }
        }
        let compiled = match store.get_event_type(event_type).await? {
            Some(t) => Some(Arc::new(compile(&t.schema).map_err(anyhow::Error::msg)?)),
            None => None,
        };
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(event_type.to_owned(), (Instant::now(), compiled.clone()));
        Ok(compiled)
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
        let first = validator.iter_errors(payload).next().map(|e| {
            format!(
                "payload does not match the schema of {event_type}: {e} (at {})",
                e.instance_path()
            )
        });
        Ok(first.map_or(Ok(()), Err))
    }
}
