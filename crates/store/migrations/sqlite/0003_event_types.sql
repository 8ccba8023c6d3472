-- Event types with an optional JSON Schema for their payloads.
CREATE TABLE event_types (
    name        TEXT PRIMARY KEY,
    schema      TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
) STRICT;
