-- The operator's outbound views (#18): tries by account, dead letters
-- across accounts, and events by account, each an index range newest first.
-- Dead tries are few, so their partial index costs little. On a large table,
-- build these beforehand with CREATE INDEX CONCURRENTLY (docs/PRODUCTION.md):
-- IF NOT EXISTS then finds them made.
CREATE INDEX IF NOT EXISTS delivery_attempts_account ON hook.delivery_attempts (account_id, id);
CREATE INDEX IF NOT EXISTS delivery_attempts_dead ON hook.delivery_attempts (id) WHERE status = 'dead';
CREATE INDEX IF NOT EXISTS events_account ON hook.events (account_id, id);
