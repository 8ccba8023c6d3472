-- The operator's outbound views (#18): tries by account, dead letters
-- across accounts, and events by account, each an index range newest first.
CREATE INDEX IF NOT EXISTS delivery_attempts_account ON delivery_attempts (account_id, id);
CREATE INDEX IF NOT EXISTS delivery_attempts_dead ON delivery_attempts (id) WHERE status = 'dead';
CREATE INDEX IF NOT EXISTS events_account ON events (account_id, id);
