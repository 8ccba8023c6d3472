-- The dispatcher's tables (the SQLite twin of migrations/postgres). Times are
-- INTEGER unix milliseconds; JSON is TEXT.

CREATE TABLE webhook_configs (
    id                    TEXT PRIMARY KEY,
    account_id            TEXT NOT NULL,
    url                   TEXT NOT NULL,
    description           TEXT NOT NULL DEFAULT '',
    event_types           TEXT NOT NULL,
    secret_enc            BLOB NOT NULL,
    secret_key_id         TEXT NOT NULL,
    old_secret_enc        BLOB,
    old_secret_key_id     TEXT,
    old_secret_expires_at INTEGER,
    disabled              INTEGER NOT NULL DEFAULT 0,
    disabled_reason       TEXT,
    throttled_until       INTEGER,
    created_at            INTEGER NOT NULL,
    updated_at            INTEGER NOT NULL
) STRICT;
CREATE INDEX webhook_configs_account ON webhook_configs (account_id, id);

-- At most 10 webhooks per account. SQLite runs one writer at a time, so the
-- count cannot race.
CREATE TRIGGER webhook_configs_limit BEFORE INSERT ON webhook_configs
WHEN (SELECT count(*) FROM webhook_configs WHERE account_id = NEW.account_id) >= 10
BEGIN
    SELECT RAISE(ABORT, 'webhook_limit_exceeded: at most 10 webhooks per account');
END;

CREATE TABLE events (
    id          TEXT PRIMARY KEY,
    account_id  TEXT NOT NULL,
    event_type  TEXT NOT NULL,
    payload     TEXT NOT NULL,
    producer    TEXT NOT NULL,
    created_at  INTEGER NOT NULL
) STRICT;

CREATE TABLE delivery_attempts (
    id                TEXT PRIMARY KEY,
    event_id          TEXT NOT NULL REFERENCES events (id),
    webhook_id        TEXT NOT NULL,
    account_id        TEXT NOT NULL,
    attempt           INTEGER NOT NULL CHECK (attempt >= 1),
    status            TEXT NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed', 'dead')),
    due_at            INTEGER NOT NULL,
    lease_until       INTEGER,
    claimed_by        TEXT,
    payload_snapshot  TEXT NOT NULL,
    http_status       INTEGER,
    duration_ms       INTEGER,
    response_preview  TEXT,
    error             TEXT,
    created_at        INTEGER NOT NULL,
    completed_at      INTEGER,
    UNIQUE (event_id, webhook_id, attempt)
) STRICT;
CREATE INDEX delivery_attempts_due ON delivery_attempts (due_at) WHERE status = 'pending';
CREATE INDEX delivery_attempts_webhook ON delivery_attempts (webhook_id, id);
CREATE INDEX delivery_attempts_event ON delivery_attempts (event_id, webhook_id);

-- Append-only history, as on PostgreSQL.
CREATE TRIGGER delivery_attempts_no_delete BEFORE DELETE ON delivery_attempts
BEGIN
    SELECT RAISE(ABORT, 'delivery_attempts is append-only');
END;
CREATE TRIGGER delivery_attempts_history BEFORE UPDATE ON delivery_attempts
WHEN OLD.status <> 'pending'
  OR NEW.id IS NOT OLD.id OR NEW.event_id IS NOT OLD.event_id OR NEW.webhook_id IS NOT OLD.webhook_id
  OR NEW.account_id IS NOT OLD.account_id OR NEW.attempt IS NOT OLD.attempt
  OR NEW.payload_snapshot IS NOT OLD.payload_snapshot OR NEW.created_at IS NOT OLD.created_at
BEGIN
    SELECT RAISE(ABORT, 'delivery_attempts history is immutable');
END;
