-- The ingress (the SQLite twin of migrations/postgres/0002_ingress.sql).

CREATE TABLE integrations (
    name                  TEXT PRIMARY KEY,
    scheme                TEXT NOT NULL,
    signature_header      TEXT,
    encoding              TEXT,
    prefix                TEXT,
    tolerance_seconds     INTEGER NOT NULL,
    target_url            TEXT NOT NULL,
    allowed_cidrs         TEXT NOT NULL,
    rate_limit_per_minute INTEGER,
    idempotency_header    TEXT,
    secrets_enc           BLOB NOT NULL,
    secrets_key_id        TEXT NOT NULL,
    forwarding_secret_enc BLOB NOT NULL,
    forwarding_key_id     TEXT NOT NULL,
    created_at            INTEGER NOT NULL,
    updated_at            INTEGER NOT NULL
) STRICT;

CREATE TABLE inbound_events (
    id             TEXT PRIMARY KEY,
    provider       TEXT NOT NULL,
    dedup_key      TEXT NOT NULL,
    delivery_id    TEXT,
    body_sha256    TEXT NOT NULL,
    raw_body       BLOB NOT NULL,
    headers        TEXT NOT NULL,
    source_ip      TEXT,
    correlation_id TEXT NOT NULL,
    received_at    INTEGER NOT NULL,
    UNIQUE (provider, dedup_key)
) STRICT;
CREATE INDEX inbound_events_received ON inbound_events (received_at, id);
CREATE INDEX inbound_events_provider ON inbound_events (provider, received_at, id);

CREATE TABLE processing_jobs (
    id               TEXT PRIMARY KEY,
    event_id         TEXT NOT NULL REFERENCES inbound_events (id),
    provider         TEXT NOT NULL,
    attempt          INTEGER NOT NULL CHECK (attempt >= 1),
    status           TEXT NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed', 'dead')),
    trigger          TEXT NOT NULL CHECK (trigger IN ('received', 'retry', 'replay')),
    due_at           INTEGER NOT NULL,
    lease_until      INTEGER,
    claimed_by       TEXT,
    http_status      INTEGER,
    duration_ms      INTEGER,
    response_preview TEXT,
    error            TEXT,
    created_at       INTEGER NOT NULL,
    completed_at     INTEGER,
    UNIQUE (event_id, attempt)
) STRICT;
CREATE INDEX processing_jobs_due ON processing_jobs (due_at) WHERE status = 'pending';
CREATE INDEX processing_jobs_event ON processing_jobs (event_id, attempt);
CREATE INDEX processing_jobs_status ON processing_jobs (status, created_at);

CREATE TRIGGER processing_jobs_no_delete BEFORE DELETE ON processing_jobs
BEGIN
    SELECT RAISE(ABORT, 'processing_jobs is append-only');
END;
CREATE TRIGGER processing_jobs_history BEFORE UPDATE ON processing_jobs
WHEN OLD.status <> 'pending'
  OR NEW.id IS NOT OLD.id OR NEW.event_id IS NOT OLD.event_id OR NEW.provider IS NOT OLD.provider
  OR NEW.attempt IS NOT OLD.attempt OR NEW.trigger IS NOT OLD.trigger OR NEW.created_at IS NOT OLD.created_at
BEGIN
    SELECT RAISE(ABORT, 'processing_jobs history is immutable');
END;

CREATE TABLE replay_requests (
    id           TEXT PRIMARY KEY,
    event_id     TEXT NOT NULL REFERENCES inbound_events (id),
    requested_by TEXT NOT NULL,
    reason       TEXT NOT NULL,
    request_id   TEXT NOT NULL,
    job_id       TEXT NOT NULL,
    created_at   INTEGER NOT NULL
) STRICT;
CREATE TRIGGER replay_requests_no_update BEFORE UPDATE ON replay_requests
BEGIN
    SELECT RAISE(ABORT, 'replay_requests is append-only');
END;
CREATE TRIGGER replay_requests_no_delete BEFORE DELETE ON replay_requests
BEGIN
    SELECT RAISE(ABORT, 'replay_requests is append-only');
END;

CREATE TABLE audit_entries (
    seq        INTEGER PRIMARY KEY,
    id         TEXT NOT NULL UNIQUE,
    actor      TEXT NOT NULL,
    action     TEXT NOT NULL,
    target     TEXT NOT NULL,
    request_id TEXT NOT NULL,
    details    TEXT NOT NULL,
    created_at TEXT NOT NULL,
    prev_hash  TEXT NOT NULL,
    hash       TEXT NOT NULL
) STRICT;
CREATE TRIGGER audit_entries_no_update BEFORE UPDATE ON audit_entries
BEGIN
    SELECT RAISE(ABORT, 'audit_entries is append-only');
END;
CREATE TRIGGER audit_entries_no_delete BEFORE DELETE ON audit_entries
BEGIN
    SELECT RAISE(ABORT, 'audit_entries is append-only');
END;
