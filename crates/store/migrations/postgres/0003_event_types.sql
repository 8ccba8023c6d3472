-- Event types with an optional JSON Schema for their payloads.
CREATE TABLE hook.event_types (
    name        TEXT PRIMARY KEY,
    schema      JSONB NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    created_at  TIMESTAMPTZ NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL
);
