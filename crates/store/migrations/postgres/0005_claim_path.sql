-- The claim path, made cheap per delivery.
--
-- 1. A claim changes only lease_until and claimed_by. With neither in any
--    index (0004 put lease_until in the due index; on PostgreSQL that never
--    let a claim skip a row from the index alone, since a plain index scan
--    reads the heap anyway) and free room left on each page, the claim is a
--    HOT update: no index entry is written. The index on (event_id,
--    webhook_id) duplicates the prefix of the unique constraint's index and
--    goes. On a large table, build the new index beforehand with CREATE
--    INDEX CONCURRENTLY (docs/PRODUCTION.md) so this only drops the others.
CREATE INDEX IF NOT EXISTS delivery_attempts_pending ON hook.delivery_attempts (due_at) WHERE status = 'pending';
DROP INDEX IF EXISTS hook.delivery_attempts_due_lane;
DROP INDEX IF EXISTS hook.delivery_attempts_event;
ALTER TABLE hook.delivery_attempts SET (fillfactor = 80);
ALTER TABLE hook.processing_jobs SET (fillfactor = 80);

-- 2. Claims walk the due index in order and stop at the limit, whatever the
-- planner believes about the table. On a fresh or fast-growing table the
-- statistics lag behind (autovacuum analyzes a minute later at best), the
-- planner expected a handful of due rows, and chose a bitmap scan plus a sort
-- of every due row: each claim cost grew with the backlog (15k due rows:
-- 15-50 ms per claim). Inside these functions only, the alternatives to an
-- ordered index scan are switched off; the plan is cached by PL/pgSQL.

CREATE FUNCTION hook.claim_attempts(
    p_lease_until TIMESTAMPTZ, p_worker TEXT, p_now TIMESTAMPTZ, p_exclude TEXT[], p_limit INTEGER)
RETURNS SETOF hook.delivery_attempts
LANGUAGE plpgsql
SET enable_bitmapscan = off
SET enable_seqscan = off
SET enable_sort = off
AS $$
BEGIN
    RETURN QUERY
    UPDATE hook.delivery_attempts d SET lease_until = p_lease_until, claimed_by = p_worker
    WHERE d.id IN (
        SELECT a.id FROM hook.delivery_attempts a
        WHERE a.status = 'pending' AND a.due_at <= p_now
          AND (a.lease_until IS NULL OR a.lease_until < p_now)
          AND a.webhook_id <> ALL(p_exclude)
          AND EXISTS (SELECT 1 FROM hook.webhook_configs w WHERE w.id = a.webhook_id
                      AND NOT w.disabled AND (w.throttled_until IS NULL OR w.throttled_until <= p_now))
        ORDER BY a.due_at LIMIT p_limit FOR UPDATE OF a SKIP LOCKED)
    RETURNING d.*;
END $$;

CREATE FUNCTION hook.claim_jobs(
    p_lease_until TIMESTAMPTZ, p_worker TEXT, p_now TIMESTAMPTZ, p_exclude TEXT[], p_limit INTEGER)
RETURNS SETOF hook.processing_jobs
LANGUAGE plpgsql
SET enable_bitmapscan = off
SET enable_seqscan = off
SET enable_sort = off
AS $$
BEGIN
    RETURN QUERY
    UPDATE hook.processing_jobs j SET lease_until = p_lease_until, claimed_by = p_worker
    WHERE j.id IN (
        SELECT p.id FROM hook.processing_jobs p
        WHERE p.status = 'pending' AND p.due_at <= p_now
          AND (p.lease_until IS NULL OR p.lease_until < p_now)
          AND p.provider <> ALL(p_exclude)
        ORDER BY p.due_at LIMIT p_limit FOR UPDATE SKIP LOCKED)
    RETURNING j.*;
END $$;

-- 3. Finished tries of a batch recorded in one call: each row found by its
-- primary key. As one UPDATE ... FROM unnest(...), the planner, believing
-- the same lagging statistics, scanned every pending row per batch instead.
-- Answers the ids recorded (a try whose lease was lost is not).
CREATE FUNCTION hook.complete_attempts(
    p_ids TEXT[], p_workers TEXT[], p_status TEXT[], p_http_status INTEGER[], p_duration_ms BIGINT[],
    p_preview TEXT[], p_error TEXT[], p_completed_at TIMESTAMPTZ[], p_next_ids TEXT[],
    p_next_due TIMESTAMPTZ[])
RETURNS SETOF TEXT
LANGUAGE plpgsql
AS $$
DECLARE
    done hook.delivery_attempts%ROWTYPE;
BEGIN
    FOR i IN 1 .. coalesce(array_length(p_ids, 1), 0) LOOP
        UPDATE hook.delivery_attempts SET status = p_status[i], http_status = p_http_status[i],
            duration_ms = p_duration_ms[i], response_preview = p_preview[i], error = p_error[i],
            completed_at = p_completed_at[i], lease_until = NULL
        WHERE id = p_ids[i] AND claimed_by = p_workers[i] AND status = 'pending'
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

-- 4. Claimed tries given back unworked, likewise row by primary key.
CREATE FUNCTION hook.release_attempts(p_ids TEXT[], p_worker TEXT)
RETURNS VOID
LANGUAGE plpgsql
AS $$
DECLARE
    one TEXT;
BEGIN
    FOREACH one IN ARRAY p_ids LOOP
        UPDATE hook.delivery_attempts SET lease_until = NULL, claimed_by = NULL
        WHERE id = one AND claimed_by = p_worker AND status = 'pending';
    END LOOP;
END $$;
