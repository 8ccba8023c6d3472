//! A posted form as its fields in order (a field may repeat, as checkboxes
//! do), and the few conversions pages make from them to an API body.

use serde_json::Value;

#[derive(serde::Deserialize, Default)]
#[serde(transparent)]
pub struct Fields(pub Vec<(String, String)>);

impl Fields {
    /// The field's first value, trimmed; `""` when absent.
    pub fn get(&self, name: &str) -> &str {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.trim())
            .unwrap_or("")
    }

    /// Every value of a repeated field, empty ones left out.
    pub fn all(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, v)| k == name && !v.trim().is_empty())
            .map(|(_, v)| v.trim().to_owned())
            .collect()
    }

    /// A checkbox: present means ticked.
    pub fn ticked(&self, name: &str) -> bool {
        self.0.iter().any(|(k, _)| k == name)
    }

    /// The field as a JSON string, or `null` when empty.
    pub fn string_or_null(&self, name: &str) -> Value {
        match self.get(name) {
            "" => Value::Null,
            v => Value::String(v.to_owned()),
        }
    }

    /// The field as a JSON number when it is one; other text is passed on
    /// as a string so the API's own error names the field.
    pub fn number_or_null(&self, name: &str) -> Value {
        match self.get(name) {
            "" => Value::Null,
            v => v
                .parse::<i64>()
                .map(Value::from)
                .unwrap_or_else(|_| Value::String(v.to_owned())),
        }
    }

    /// A list typed as text: one item per line, comma or space.
    pub fn list(&self, name: &str) -> Vec<String> {
        self.get(name)
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    }
}

/// A JSON object without its `null` members (for a create body, where
/// absent means "the default").
pub fn without_nulls(mut v: Value) -> Value {
    if let Value::Object(map) = &mut v {
        map.retain(|_, v| !v.is_null());
    }
    v
}
