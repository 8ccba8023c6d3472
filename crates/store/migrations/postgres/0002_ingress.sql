-- The ingress (SPEC §8–§9): integrations, verified inbound events, forwarding
-- jobs (history and outbox), replay requests and the hash-chained audit trail.

CREATE TABLE hook.integrations (
    name                  TEXT PRIMARY KEY,
    scheme                TEXT NOT NULL,
    signature_header      TEXT,
    encoding              TEXT,
    prefix                TEXT,
    tolerance_seconds     INTEGER NOT NULL,
    target_url            TEXT NOT NULL,
    allowed_cidrs         JSONB NOT NULL,
    rate_limit_per_minute INTEGER,
    idempotency_header    TEXT,
    secrets_enc           BYTEA NOT NULL,
    secrets_key_id        TEXT NOT NULL,
    forwarding_secret_enc BYTEA NOT NULL,
    forwarding_key_id     TEXT NOT NULL,
    created_at            TIMESTAMPTZ NOT NULL,
    updated_at            TIMESTAMPTZ NOT NULL
);

CREATE TABLE hook.inbound_events (
    id             TEXT PRIMARY KEY,
    provider       TEXT NOT NULL,
    dedup_key      TEXT NOT NULL,
    delivery_id    TEXT,
    body_sha256    TEXT NOT NULL,
    raw_body       BYTEA NOT NULL,
    headers        JSONB NOT NULL,
    source_ip      TEXT,
    correlation_id TEXT NOT NULL,
    received_at    TIMESTAMPTZ NOT NULL,
    -- Deduplication behind the Redis marker: one event per provider delivery.
    UNIQUE (provider, dedup_key)
);
CREATE INDEX inbound_events_received ON hook.inbound_events (received_at, id);
CREATE INDEX inbound_events_provider ON hook.inbound_events (provider, received_at, id);

CREATE TABLE hook.processing_jobs (
    id               TEXT PRIMARY KEY,
    event_id         TEXT NOT NULL REFERENCES hook.inbound_events (id),
    provider         TEXT NOT NULL,
    attempt          INTEGER NOT NULL CHECK (attempt >= 1),
    status           TEXT NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed', 'dead')),
    trigger          TEXT NOT NULL CHECK (trigger IN ('received', 'retry', 'replay')),
    due_at           TIMESTAMPTZ NOT NULL,
    lease_until      TIMESTAMPTZ,
    claimed_by       TEXT,
    http_status      INTEGER,
    duration_ms      BIGINT,
    response_preview TEXT,
    error            TEXT,
    created_at       TIMESTAMPTZ NOT NULL,
    completed_at     TIMESTAMPTZ,
    UNIQUE (event_id, attempt)
);
CREATE INDEX processing_jobs_due ON hook.processing_jobs (due_at) WHERE status = 'pending';
CREATE INDEX processing_jobs_event ON hook.processing_jobs (event_id, attempt);
CREATE INDEX processing_jobs_status ON hook.processing_jobs (status, created_at);

CREATE FUNCTION hook.processing_jobs_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'UPDATE' THEN
        RAISE EXCEPTION 'processing_jobs is append-only' USING ERRCODE = 'HW002';
    END IF;
    IF OLD.status <> 'pending'
       OR NEW.id <> OLD.id OR NEW.event_id <> OLD.event_id OR NEW.provider <> OLD.provider
       OR NEW.attempt <> OLD.attempt OR NEW.trigger <> OLD.trigger OR NEW.created_at <> OLD.created_at THEN
        RAISE EXCEPTION 'processing_jobs history is immutable' USING ERRCODE = 'HW002';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER processing_jobs_history BEFORE UPDATE OR DELETE ON hook.processing_jobs
    FOR EACH ROW EXECUTE FUNCTION hook.processing_jobs_append_only();
CREATE TRIGGER processing_jobs_no_truncate BEFORE TRUNCATE ON hook.processing_jobs
    FOR EACH STATEMENT EXECUTE FUNCTION hook.processing_jobs_append_only();

-- Rows of these tables never change once written.
CREATE FUNCTION hook.refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only', TG_TABLE_NAME USING ERRCODE = 'HW002';
END $$;

CREATE TABLE hook.replay_requests (
    id           TEXT PRIMARY KEY,
    event_id     TEXT NOT NULL REFERENCES hook.inbound_events (id),
    requested_by TEXT NOT NULL,
    reason       TEXT NOT NULL,
    request_id   TEXT NOT NULL,
    job_id       TEXT NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL
);
CREATE TRIGGER replay_requests_append_only BEFORE UPDATE OR DELETE ON hook.replay_requests
    FOR EACH ROW EXECUTE FUNCTION hook.refuse_change();
CREATE TRIGGER replay_requests_no_truncate BEFORE TRUNCATE ON hook.replay_requests
    FOR EACH STATEMENT EXECUTE FUNCTION hook.refuse_change();

CREATE TABLE hook.audit_entries (
    seq        BIGINT PRIMARY KEY,
    id         TEXT NOT NULL UNIQUE,
    actor      TEXT NOT NULL,
    action     TEXT NOT NULL,
    target     TEXT NOT NULL,
    request_id TEXT NOT NULL,
    details    TEXT NOT NULL,
    created_at TEXT NOT NULL,
    prev_hash  TEXT NOT NULL,
    hash       TEXT NOT NULL
);
CREATE TRIGGER audit_entries_append_only BEFORE UPDATE OR DELETE ON hook.audit_entries
    FOR EACH ROW EXECUTE FUNCTION hook.refuse_change();
CREATE TRIGGER audit_entries_no_truncate BEFORE TRUNCATE ON hook.audit_entries
    FOR EACH STATEMENT EXECUTE FUNCTION hook.refuse_change();
