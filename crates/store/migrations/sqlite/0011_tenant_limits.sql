-- The SQLite twin of migrations/postgres/0011_tenant_limits.sql: the
-- per-account webhook cap read from a one-row table the server writes at
-- start-up (HOOKWARDEN_MAX_WEBHOOKS_PER_ACCOUNT, 10 by default), and a second
-- webhook with the same URL and event types (as a set) in one account refused.
-- SQLite runs one writer at a time, so neither check can race.
CREATE TABLE tenant_limits (
    id                       INTEGER PRIMARY KEY CHECK (id = 1),
    max_webhooks_per_account INTEGER NOT NULL CHECK (max_webhooks_per_account >= 1)
) STRICT;
INSERT INTO tenant_limits (id, max_webhooks_per_account) VALUES (1, 10);

DROP TRIGGER webhook_configs_limit;
CREATE TRIGGER webhook_configs_limit BEFORE INSERT ON webhook_configs
WHEN (SELECT count(*) FROM webhook_configs WHERE account_id = NEW.account_id)
    >= COALESCE((SELECT max_webhooks_per_account FROM tenant_limits WHERE id = 1), 10)
BEGIN
    SELECT RAISE(ABORT, 'webhook_limit_exceeded: too many webhooks for this account');
END;

-- Equal sets: as many types, and each of the new ones among the old (lists
-- never repeat a type; the API refuses that).
CREATE TRIGGER webhook_configs_duplicate_insert BEFORE INSERT ON webhook_configs
WHEN EXISTS (
    SELECT 1 FROM webhook_configs w
    WHERE w.account_id = NEW.account_id AND w.url = NEW.url
      AND json_array_length(w.event_types) = json_array_length(NEW.event_types)
      AND NOT EXISTS (
          SELECT 1 FROM json_each(NEW.event_types) n
          WHERE n.value NOT IN (SELECT o.value FROM json_each(w.event_types) o)
      )
)
BEGIN
    SELECT RAISE(ABORT, 'webhook_duplicate: a webhook with this url and these event types exists');
END;

CREATE TRIGGER webhook_configs_duplicate_update BEFORE UPDATE OF url, event_types ON webhook_configs
WHEN (OLD.url IS NOT NEW.url OR OLD.event_types IS NOT NEW.event_types) AND EXISTS (
    SELECT 1 FROM webhook_configs w
    WHERE w.account_id = NEW.account_id AND w.id <> NEW.id AND w.url = NEW.url
      AND json_array_length(w.event_types) = json_array_length(NEW.event_types)
      AND NOT EXISTS (
          SELECT 1 FROM json_each(NEW.event_types) n
          WHERE n.value NOT IN (SELECT o.value FROM json_each(w.event_types) o)
      )
)
BEGIN
    SELECT RAISE(ABORT, 'webhook_duplicate: a webhook with this url and these event types exists');
END;
