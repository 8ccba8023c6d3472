-- Finished tries recorded in one statement per batch, not one UPDATE per try
-- (#16), by a function of its own that answers which worker's outcome was
-- recorded: 0022's `complete_attempts` answered ids only, so when a worker
-- that had lost a try's lease and the one holding it finished it in the same
-- batch, the answer could go to the wrong one. `complete_attempts` stays as
-- it was, for replicas not yet upgraded. 0022's loop started PostgreSQL's executor once per try: each start
-- opened the table's seven indexes and rebuilt, from their stored text, the
-- history trigger's WHEN clause and the CHECK constraints, and in a burst
-- (batches of a hundred) that parsing alone was a tenth of PostgreSQL's CPU.
-- The same rules as the loop: a try is recorded only where the worker named
-- still holds its lease and the try is pending (re-checked by the UPDATE
-- under concurrent change); of one try named twice in a batch, the first
-- entry that holds the lease is the one recorded; a next try copies the
-- finished one's snapshot and trace inside the database, and an existing
-- next try (a replica that recorded the same outcome) is left as it is.
-- `status || ''` keeps the lookups on the primary key, never the pending
-- index, as before. PL/pgSQL, not SQL, and its generic plan forced: a SQL
-- function is planned again at every call, and so was this statement while
-- PostgreSQL's plan cache found a plan for the batch's own size cheaper
-- than the generic one (always, for a batch of one or a few). Planning it
-- cost three times the loop at one try per batch; the generic plan (primary
-- key lookups, a nested loop) costs what the loop does there, and half or
-- less from 16 tries a batch. This planning is probably why a set-based
-- UPDATE measured slower than the loop at 3–4 tries a batch before (#16).
CREATE FUNCTION hook.record_attempts(
    p_ids TEXT[], p_workers TEXT[], p_status TEXT[], p_http_status INTEGER[], p_duration_ms BIGINT[],
    p_preview TEXT[], p_error TEXT[], p_completed_at TIMESTAMPTZ[], p_next_ids TEXT[],
    p_next_due TIMESTAMPTZ[])
RETURNS TABLE (attempt_id TEXT, worker_id TEXT)
LANGUAGE plpgsql
SET enable_bitmapscan = off
SET enable_seqscan = off
SET plan_cache_mode = force_generic_plan
AS $$
BEGIN
    RETURN QUERY
    WITH r AS (
        SELECT DISTINCT ON (u.id) u.*
        FROM unnest(p_ids, p_workers, p_status, p_http_status, p_duration_ms, p_preview, p_error,
                    p_completed_at, p_next_ids, p_next_due) WITH ORDINALITY
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
        RETURNING d.id, d.claimed_by, d.event_id, d.webhook_id, d.account_id, d.attempt, d.payload_snapshot,
            d.trace_parent, r.completed_at, r.next_id, r.next_due),
    next AS (
        INSERT INTO hook.delivery_attempts (id, event_id, webhook_id, account_id, attempt, status,
            due_at, payload_snapshot, trace_parent, created_at)
        SELECT next_id, event_id, webhook_id, account_id, attempt + 1, 'pending', next_due,
            payload_snapshot, trace_parent, completed_at
        FROM done WHERE next_id IS NOT NULL
        ON CONFLICT (event_id, webhook_id, attempt) DO NOTHING)
    SELECT done.id, done.claimed_by FROM done;
END $$;
