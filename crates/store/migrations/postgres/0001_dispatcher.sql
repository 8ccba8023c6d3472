-- The dispatcher's tables in schema hook (SPEC §1): webhook configurations,
-- published events, and delivery attempts (history and outbox in one table).

CREATE TABLE hook.webhook_configs (
    id                    TEXT PRIMARY KEY,
    account_id            TEXT NOT NULL,
    url                   TEXT NOT NULL,
    description           TEXT NOT NULL DEFAULT '',
    event_types           JSONB NOT NULL,
    secret_enc            BYTEA NOT NULL,
    secret_key_id         TEXT NOT NULL,
    old_secret_enc        BYTEA,
    old_secret_key_id     TEXT,
    old_secret_expires_at TIMESTAMPTZ,
    disabled              BOOLEAN NOT NULL DEFAULT FALSE,
    disabled_reason       TEXT,
    throttled_until       TIMESTAMPTZ,
    created_at            TIMESTAMPTZ NOT NULL,
    updated_at            TIMESTAMPTZ NOT NULL
);
CREATE INDEX webhook_configs_account ON hook.webhook_configs (account_id, id);

-- At most 10 webhooks per account, enforced by the database itself. The
-- advisory lock serializes concurrent inserts for one account, so two
-- transactions cannot both see nine and both insert.
CREATE FUNCTION hook.enforce_webhook_limit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('hook.webhook_limit'), hashtext(NEW.account_id));
    IF (SELECT count(*) FROM hook.webhook_configs WHERE account_id = NEW.account_id) >= 10 THEN
        RAISE EXCEPTION 'webhook_limit_exceeded: at most 10 webhooks per account'
            USING ERRCODE = 'HW001';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER webhook_configs_limit BEFORE INSERT ON hook.webhook_configs
    FOR EACH ROW EXECUTE FUNCTION hook.enforce_webhook_limit();

CREATE TABLE hook.events (
    id          TEXT PRIMARY KEY,
    account_id  TEXT NOT NULL,
    event_type  TEXT NOT NULL,
    payload     JSONB NOT NULL,
    producer    TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL
);

CREATE TABLE hook.delivery_attempts (
    id                TEXT PRIMARY KEY,
    event_id          TEXT NOT NULL REFERENCES hook.events (id),
    webhook_id        TEXT NOT NULL,
    account_id        TEXT NOT NULL,
    attempt           INTEGER NOT NULL CHECK (attempt >= 1),
    status            TEXT NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed', 'dead')),
    due_at            TIMESTAMPTZ NOT NULL,
    lease_until       TIMESTAMPTZ,
    claimed_by        TEXT,
    payload_snapshot  JSONB NOT NULL,
    http_status       INTEGER,
    duration_ms       BIGINT,
    response_preview  TEXT,
    error             TEXT,
    created_at        TIMESTAMPTZ NOT NULL,
    completed_at      TIMESTAMPTZ,
    UNIQUE (event_id, webhook_id, attempt)
);
-- The outbox: only pending rows are indexed by due time, so claims stay an
-- index range scan however much history accumulates.
CREATE INDEX delivery_attempts_due ON hook.delivery_attempts (due_at) WHERE status = 'pending';
CREATE INDEX delivery_attempts_webhook ON hook.delivery_attempts (webhook_id, id);
CREATE INDEX delivery_attempts_event ON hook.delivery_attempts (event_id, webhook_id);

-- History is append-only: a finished try can never change or disappear. A
-- pending row (the next try, not yet made) may be claimed and then finished
-- once; its identity and snapshot never change.
CREATE FUNCTION hook.delivery_attempts_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'UPDATE' THEN
        RAISE EXCEPTION 'delivery_attempts is append-only' USING ERRCODE = 'HW002';
    END IF;
    IF OLD.status <> 'pending'
       OR NEW.id <> OLD.id OR NEW.event_id <> OLD.event_id OR NEW.webhook_id <> OLD.webhook_id
       OR NEW.account_id <> OLD.account_id OR NEW.attempt <> OLD.attempt
       OR NEW.payload_snapshot <> OLD.payload_snapshot OR NEW.created_at <> OLD.created_at THEN
        RAISE EXCEPTION 'delivery_attempts history is immutable' USING ERRCODE = 'HW002';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER delivery_attempts_history BEFORE UPDATE OR DELETE ON hook.delivery_attempts
    FOR EACH ROW EXECUTE FUNCTION hook.delivery_attempts_append_only();
CREATE TRIGGER delivery_attempts_no_truncate BEFORE TRUNCATE ON hook.delivery_attempts
    FOR EACH STATEMENT EXECUTE FUNCTION hook.delivery_attempts_append_only();
