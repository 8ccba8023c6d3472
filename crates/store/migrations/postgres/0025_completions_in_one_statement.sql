-- Finished tries recorded by a function that answers which worker's outcome
-- was recorded (#16): 0022's `complete_attempts` answered ids only, so when
-- a worker that had lost a try's lease and the one holding it finished it in
-- the same batch, the answer could go to the wrong one. `complete_attempts`
-- stays as it was, for replicas not yet upgraded.
--
-- A batch of 64 tries or more is recorded in one statement, not one UPDATE
-- per try. The loop started PostgreSQL's executor once per try: each start
-- reopened the table's seven indexes and rebuilt, from their stored text,
-- the history trigger's WHEN clause and the CHECK constraints, and in a
-- burst (batches of a hundred) that parsing alone was a tenth of
-- PostgreSQL's CPU. The statement is planned at each call (EXECUTE), for the
-- batch's size and the table's size then: a plan kept for the connection's
-- life and made while the table was empty walked the whole table at every
-- later call. Smaller batches keep the loop, whose plans are primary-key
-- lookups whatever the table's size: at 1,000 events/s a batch holds about
-- twenty, and with the statement from 16 tries the planning at each call
-- held the worker's slots long enough to double publish-to-delivery p99
-- (5.8-10.7 ms to 10.7-47.2 ms); from 64 it was 5.1-5.5 ms.
--
-- The same rules either way: a try is recorded only where the worker named
-- still holds its lease and the try is pending (re-checked by the UPDATE
-- under concurrent change); of one try named twice in a batch, the first
-- entry that holds the lease is the one recorded; a next try copies the
-- finished one's snapshot and trace inside the database, and an existing
-- next try (a replica that recorded the same outcome) is left as it is.
-- `status || ''` keeps the lookups on the primary key, never the pending
-- index, as before.
CREATE FUNCTION hook.record_attempts(
    p_ids TEXT[], p_workers TEXT[], p_status TEXT[], p_http_status INTEGER[], p_duration_ms BIGINT[],
    p_preview TEXT[], p_error TEXT[], p_completed_at TIMESTAMPTZ[], p_next_ids TEXT[],
    p_next_due TIMESTAMPTZ[])
RETURNS TABLE (attempt_id TEXT, worker_id TEXT)
LANGUAGE plpgsql
SET enable_bitmapscan = off
SET enable_seqscan = off
AS $$
DECLARE
    done hook.delivery_attempts%ROWTYPE;
BEGIN
    IF coalesce(array_length(p_ids, 1), 0) < 64 THEN
        FOR i IN 1 .. coalesce(array_length(p_ids, 1), 0) LOOP
            UPDATE hook.delivery_attempts SET status = p_status[i], http_status = p_http_status[i],
                duration_ms = p_duration_ms[i], response_preview = p_preview[i], error = p_error[i],
                completed_at = p_completed_at[i], lease_until = NULL
            WHERE id = p_ids[i] AND claimed_by = p_workers[i] AND (status || '') = 'pending'
            RETURNING * INTO done;
            IF FOUND THEN
                attempt_id := done.id;
                worker_id := done.claimed_by;
                RETURN NEXT;
                IF p_next_ids[i] IS NOT NULL THEN
                    INSERT INTO hook.delivery_attempts (id, event_id, webhook_id, account_id, attempt,
                        status, due_at, payload_snapshot, trace_parent, created_at)
                    VALUES (p_next_ids[i], done.event_id, done.webhook_id, done.account_id,
                        done.attempt + 1, 'pending', p_next_due[i], done.payload_snapshot,
                        done.trace_parent, p_completed_at[i])
                    ON CONFLICT (event_id, webhook_id, attempt) DO NOTHING;
                END IF;
            END IF;
        END LOOP;
        RETURN;
    END IF;
    RETURN QUERY EXECUTE $q$
    WITH r AS (
        SELECT DISTINCT ON (u.id) u.*
        FROM unnest($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) WITH ORDINALITY
             AS u(id, worker, status, http_status, duration_ms, preview, error, completed_at,
                  next_id, next_due, n)
        JOIN hook.delivery_attempts a
          ON a.id = u.id AND a.claimed_by = u.worker AND (a.status || '') = 'pending'
        ORDER BY u.id, u.n),
    done AS (
        UPDATE hook.delivery_attempts d SET status = r.status, http_status = r.http_status,
            duration_ms = r.duration_ms, response_preview = r.preview, error = r.error,
            completed_at = r.completed_at, lease_until = NULL
        FROM r
        WHERE d.id = r.id AND d.claimed_by = r.worker AND (d.status || '') = 'pending'
        RETURNING d.id, d.claimed_by, d.event_id, d.webhook_id, d.account_id, d.attempt,
            d.payload_snapshot, d.trace_parent, r.completed_at, r.next_id, r.next_due),
    next AS (
        INSERT INTO hook.delivery_attempts (id, event_id, webhook_id, account_id, attempt, status,
            due_at, payload_snapshot, trace_parent, created_at)
        SELECT next_id, event_id, webhook_id, account_id, attempt + 1, 'pending', next_due,
            payload_snapshot, trace_parent, completed_at
        FROM done WHERE next_id IS NOT NULL
        ON CONFLICT (event_id, webhook_id, attempt) DO NOTHING)
    SELECT done.id, done.claimed_by FROM done
    $q$ USING p_ids, p_workers, p_status, p_http_status, p_duration_ms, p_preview, p_error,
        p_completed_at, p_next_ids, p_next_due;
END $$;
