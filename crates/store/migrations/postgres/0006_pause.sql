-- An endpoint paused (it asked us to slow down, or failed tries in a row):
-- the pause, and its pending tries due earlier moved to the end of it, so
-- that claims for other endpoints do not walk past them at the head of the
-- due index (an endpoint that times out piles up due rows quickly).
--
-- The rows are found through the due index: the pending rows due before the
-- end of the pause. The endpoint's own index (webhook_id, id) holds its whole
-- history, which grows without bound; the expression on webhook_id keeps the
-- planner off it, and the settings off a scan of the table, whatever the
-- statistics say (see 0005).
CREATE FUNCTION hook.pause_webhook(p_id TEXT, p_until TIMESTAMPTZ)
RETURNS VOID
LANGUAGE plpgsql
SET enable_bitmapscan = off
SET enable_seqscan = off
AS $$
BEGIN
    UPDATE hook.webhook_configs SET throttled_until = GREATEST(COALESCE(throttled_until, p_until), p_until)
    WHERE id = p_id;
    UPDATE hook.delivery_attempts SET due_at = p_until
    WHERE status = 'pending' AND due_at < p_until AND (webhook_id || '') = p_id;
END $$;

-- Recording and releasing tries find each row by primary key, and only by
-- it. With `status = 'pending'` in their WHERE clause the partial due index
-- (status = 'pending') was usable too, and a plan made while the table was
-- small (cached by PL/pgSQL for the life of the connection, and never
-- replaced where nothing analyzes the table) walked that whole index for
-- each row: a thousand index entries per recorded try in the dispatch
-- benchmark. Written as an expression, the status test cannot select that
-- index; the settings keep the planner off a scan of the table.
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
                    due_at, payload_snapshot, created_at)
                VALUES (p_next_ids[i], done.event_id, done.webhook_id, done.account_id, done.attempt + 1,
                    'pending', p_next_due[i], done.payload_snapshot, p_completed_at[i])
                ON CONFLICT (event_id, webhook_id, attempt) DO NOTHING;
            END IF;
        END IF;
    END LOOP;
END $$;

CREATE OR REPLACE FUNCTION hook.release_attempts(p_ids TEXT[], p_worker TEXT)
RETURNS VOID
LANGUAGE plpgsql
SET enable_bitmapscan = off
SET enable_seqscan = off
AS $$
DECLARE
    one TEXT;
BEGIN
    FOREACH one IN ARRAY p_ids LOOP
        UPDATE hook.delivery_attempts SET lease_until = NULL, claimed_by = NULL
        WHERE id = one AND claimed_by = p_worker AND (status || '') = 'pending';
    END LOOP;
END $$;
