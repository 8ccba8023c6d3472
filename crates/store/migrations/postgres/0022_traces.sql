-- Traces (#17): the W3C `traceparent` an event, a try and an inbound event
-- continue (`00-<trace>-<span>-<flags>`: the span that is the parent of
-- what is done with the row next). NULL when the row has none: added as
-- NULL columns, so no row is rewritten and an event without a trace pays
-- one bit of its null bitmap.
ALTER TABLE hook.events ADD COLUMN trace_parent TEXT;
ALTER TABLE hook.delivery_attempts ADD COLUMN trace_parent TEXT;
ALTER TABLE hook.inbound_events ADD COLUMN trace_parent TEXT;

-- A try's trace is part of its history, as its payload is.
DROP TRIGGER delivery_attempts_history ON hook.delivery_attempts;
CREATE TRIGGER delivery_attempts_history BEFORE UPDATE ON hook.delivery_attempts
    FOR EACH ROW
    WHEN (OLD.status <> 'pending'
          OR NEW.id IS DISTINCT FROM OLD.id OR NEW.event_id IS DISTINCT FROM OLD.event_id
          OR NEW.webhook_id IS DISTINCT FROM OLD.webhook_id OR NEW.account_id IS DISTINCT FROM OLD.account_id
          OR NEW.attempt IS DISTINCT FROM OLD.attempt
          OR NEW.payload_snapshot IS DISTINCT FROM OLD.payload_snapshot
          OR NEW.trace_parent IS DISTINCT FROM OLD.trace_parent
          OR NEW.created_at IS DISTINCT FROM OLD.created_at)
    EXECUTE FUNCTION hook.delivery_attempts_append_only();

-- 0006's recording, the next try carrying the trace with the payload.
CREATE OR REPLACE FUNCTION hook.complete_attempts(
    p_ids TEXT[], p_workers TEXT[], p_status TEXT[], p_http_status INTEGER[], p_duration_ms BIGINT[],
    p_preview TEXT[], p_error TEXT[], p_completed_at TIMESTAMPTZ[], p_next_ids TEXT[],
    p_next_due TIMESTAMPTZ[])
RETURNS SETOF TEXT
LANGUAGE plpgsql
SET enable_bitmapscan = off
SET enable_seqscan = off
AS $$
DECLARE
    done hook.delivery_attempts%ROWTYPE;
BEGIN
    FOR i IN 1 .. coalesce(array_length(p_ids, 1), 0) LOOP
        UPDATE hook.delivery_attempts SET status = p_status[i], http_status = p_http_status[i],
            duration_ms = p_duration_ms[i], response_preview = p_preview[i], error = p_error[i],
            completed_at = p_completed_at[i], lease_until = NULL
        WHERE id = p_ids[i] AND claimed_by = p_workers[i] AND (status || '') = 'pending'
        RETURNING * INTO done;
        IF FOUND THEN
            RETURN NEXT done.id;
            IF p_next_ids[i] IS NOT NULL THEN
                INSERT INTO hook.delivery_attempts (id, event_id, webhook_id, account_id, attempt, status,
                    due_at, payload_snapshot, trace_parent, created_at)
                VALUES (p_next_ids[i], done.event_id, done.webhook_id, done.account_id, done.attempt + 1,
                    'pending', p_next_due[i], done.payload_snapshot, done.trace_parent, p_completed_at[i])
                ON CONFLICT (event_id, webhook_id, attempt) DO NOTHING;
            END IF;
        END IF;
    END LOOP;
END $$;
