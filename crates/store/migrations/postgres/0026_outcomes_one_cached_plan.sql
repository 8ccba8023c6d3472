-- Finished tries recorded by one statement whatever the batch's size, its
-- plan made once per connection and kept (#16). 0025 ran batches under 64
-- tries as a loop of one UPDATE per try, because its set-based statement
-- was planned at every call (EXECUTE): at 1,000 events/s a batch holds
-- about twenty tries, and planning each of them held the worker's slots.
-- The loop started PostgreSQL's executor once per try, which rebuilt the
-- history trigger's WHEN clause and the CHECK constraints from their stored
-- text each time.
--
-- Why a kept plan is now safe: 0025 planned at every call because a plan
-- kept for the connection's life and made while the table was empty walked
-- the whole table at every later call (a merge join over an index read end
-- to end). Here hash and merge joins are off, with sequential and bitmap
-- scans: the only plan left joins each try of the batch to its row by a
-- primary-key lookup, at any table size, whatever the statistics said when
-- the plan was made.
--
-- Timed inside PostgreSQL (10^5 tries stored, commits without sync, two
-- runs), PostgreSQL's time per recorded try, 0025 -> this:
--   1 try a batch    235-275 -> 229-280 us
--   4 tries          109-129 ->  92-102 us
--   16 tries          85-92  ->  38-41 us
--   32 tries          79-90  ->  40-42 us
--
-- The rules are 0025's: a try is recorded only where the worker named still
-- holds its lease and the try is pending (re-checked by the UPDATE under
-- concurrent change); of one try named twice in a batch, the first entry
-- that holds the lease is the one recorded; a next try copies the finished
-- one's snapshot and trace inside the database, and an existing next try
-- (a replica that recorded the same outcome) is left as it is.
-- `status || ''` keeps the lookups off the pending index. Same arguments,
-- same answer: replicas not yet upgraded call it unchanged.
CREATE OR REPLACE FUNCTION hook.record_attempts(
    p_ids TEXT[], p_workers TEXT[], p_status TEXT[], p_http_status INTEGER[], p_duration_ms BIGINT[],
    p_preview TEXT[], p_error TEXT[], p_completed_at TIMESTAMPTZ[], p_next_ids TEXT[],
    p_next_due TIMESTAMPTZ[])
RETURNS TABLE (attempt_id TEXT, worker_id TEXT)
LANGUAGE plpgsql
SET enable_bitmapscan = off
SET enable_seqscan = off
SET enable_hashjoin = off
SET enable_mergejoin = off
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
        RETURNING d.id, d.claimed_by, d.event_id, d.webhook_id, d.account_id, d.attempt,
            d.payload_snapshot, d.trace_parent, r.completed_at, r.next_id, r.next_due),
    next AS (
        INSERT INTO hook.delivery_attempts (id, event_id, webhook_id, account_id, attempt, status,
            due_at, payload_snapshot, trace_parent, created_at)
        SELECT next_id, event_id, webhook_id, account_id, attempt + 1, 'pending', next_due,
            payload_snapshot, trace_parent, completed_at
        FROM done WHERE next_id IS NOT NULL
        ON CONFLICT (event_id, webhook_id, attempt) DO NOTHING)
    SELECT done.id, done.claimed_by FROM done;
END $$;
