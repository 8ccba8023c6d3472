-- The per-account webhook cap becomes a setting (HOOKWARDEN_MAX_WEBHOOKS_PER_ACCOUNT,
-- 10 by default): the server writes it to this one-row table at start-up and
-- the trigger reads it, so the database still enforces the cap, and the
-- advisory lock still serializes one account's inserts (two transactions
-- cannot both see the cap minus one and both insert).
--
-- The same trigger, under the same lock, refuses a second webhook of an
-- account with the same URL and the same event types (as a set), on insert
-- and on an update that changes either: it would only deliver every event twice.
CREATE TABLE hook.tenant_limits (
    id                       SMALLINT PRIMARY KEY CHECK (id = 1),
    max_webhooks_per_account INTEGER NOT NULL CHECK (max_webhooks_per_account >= 1)
);
INSERT INTO hook.tenant_limits (id, max_webhooks_per_account) VALUES (1, 10);

CREATE OR REPLACE FUNCTION hook.enforce_webhook_limit() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    cap INTEGER;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('hook.webhook_limit'), hashtext(NEW.account_id));
    IF EXISTS (
        SELECT 1 FROM hook.webhook_configs w
        WHERE w.account_id = NEW.account_id AND w.id <> NEW.id AND w.url = NEW.url
          AND w.event_types @> NEW.event_types AND NEW.event_types @> w.event_types
    ) THEN
        RAISE EXCEPTION 'webhook_duplicate: a webhook with this url and these event types exists'
            USING ERRCODE = 'HW002';
    END IF;
    IF TG_OP = 'INSERT' THEN
        SELECT max_webhooks_per_account INTO cap FROM hook.tenant_limits WHERE id = 1;
        IF (SELECT count(*) FROM hook.webhook_configs WHERE account_id = NEW.account_id)
            >= COALESCE(cap, 10) THEN
            RAISE EXCEPTION 'webhook_limit_exceeded: at most % webhooks per account', COALESCE(cap, 10)
                USING ERRCODE = 'HW001';
        END IF;
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER webhook_configs_duplicate BEFORE UPDATE OF url, event_types ON hook.webhook_configs
    FOR EACH ROW
    WHEN (OLD.url IS DISTINCT FROM NEW.url OR OLD.event_types IS DISTINCT FROM NEW.event_types)
    EXECUTE FUNCTION hook.enforce_webhook_limit();
