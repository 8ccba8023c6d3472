-- The SQLite twin of migrations/postgres/0010_integration_generation.sql:
-- a counter bumped by every change to integrations, polled by the cache.
CREATE TABLE integration_generation (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    generation INTEGER NOT NULL
) STRICT;
INSERT INTO integration_generation (id, generation) VALUES (1, 1);

CREATE TRIGGER integrations_inserted AFTER INSERT ON integrations
BEGIN
    UPDATE integration_generation SET generation = generation + 1 WHERE id = 1;
END;
CREATE TRIGGER integrations_updated AFTER UPDATE ON integrations
BEGIN
    UPDATE integration_generation SET generation = generation + 1 WHERE id = 1;
END;
CREATE TRIGGER integrations_deleted AFTER DELETE ON integrations
BEGIN
    UPDATE integration_generation SET generation = generation + 1 WHERE id = 1;
END;

ALTER TABLE integrations ADD COLUMN forward_raw_body INTEGER NOT NULL DEFAULT 0;
