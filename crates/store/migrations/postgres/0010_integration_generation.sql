-- Integrations change rarely and are read on every inbound request, so each
-- replica holds all of them in memory. This counter, bumped by every change
-- to hook.integrations (statement trigger, same transaction), is what the
-- replicas poll (a one-row read a few times a second) to reload at once: a
-- provider secret rotated out or an integration deleted on one replica stops
-- verifying on every replica within a second.
CREATE TABLE hook.integration_generation (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    generation BIGINT NOT NULL
);
INSERT INTO hook.integration_generation (id, generation) VALUES (1, 1);

CREATE FUNCTION hook.bump_integration_generation() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE hook.integration_generation SET generation = generation + 1 WHERE id = 1;
    RETURN NULL;
END $$;

CREATE TRIGGER integrations_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON hook.integrations
    FOR EACH STATEMENT EXECUTE FUNCTION hook.bump_integration_generation();

-- Forward the exact verified bytes instead of the normalized envelope.
ALTER TABLE hook.integrations ADD COLUMN forward_raw_body BOOLEAN NOT NULL DEFAULT false;
