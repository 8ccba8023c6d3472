//! What the development delivery sink records (outside production): one
//! request as it arrived. Shared state keeps them, so the type lives here,
//! below both the state and the operator routes that write and list them.

use serde::Serialize;
use utoipa::ToSchema;

/// One request the sink recorded.
#[derive(Serialize, ToSchema, Clone)]
#[serde(rename_all = "camelCase")]
pub struct SinkRecord {
    pub provider: String,
    pub headers: std::collections::BTreeMap<String, String>,
    pub body: String,
    #[schema(format = DateTime)]
    pub received_at: String,
}
