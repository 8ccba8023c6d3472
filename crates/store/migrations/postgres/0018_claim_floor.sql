-- Cheaper tries on the delivery path, the same rules kept.
--
-- 1. The append-only triggers are asked only when a change breaks a rule:
--    the rule moves into the trigger's WHEN clause, which the executor
--    evaluates itself, so a lawful claim or outcome no longer starts a
--    PL/pgSQL call per row (the function still refuses, as before, when it
--    is called). DELETE is refused by a trigger of its own, unconditionally.
DROP TRIGGER delivery_attempts_history ON hook.delivery_attempts;
CREATE TRIGGER delivery_attempts_history BEFORE UPDATE ON hook.delivery_attempts
    FOR EACH ROW
    WHEN (OLD.status <> 'pending'
          OR NEW.id IS DISTINCT FROM OLD.id OR NEW.event_id IS DISTINCT FROM OLD.event_id
          OR NEW.webhook_id IS DISTINCT FROM OLD.webhook_id OR NEW.account_id IS DISTINCT FROM OLD.account_id
          OR NEW.attempt IS DISTINCT FROM OLD.attempt
          OR NEW.payload_snapshot IS DISTINCT FROM OLD.payload_snapshot
          OR NEW.created_at IS DISTINCT FROM OLD.created_at)
    EXECUTE FUNCTION hook.delivery_attempts_append_only();
CREATE TRIGGER delivery_attempts_no_delete BEFORE DELETE ON hook.delivery_attempts
    FOR EACH ROW EXECUTE FUNCTION hook.delivery_attempts_append_only();

DROP TRIGGER processing_jobs_history ON hook.processing_jobs;
CREATE TRIGGER processing_jobs_history BEFORE UPDATE ON hook.processing_jobs
    FOR EACH ROW
    WHEN (OLD.status <> 'pending'
          OR NEW.id IS DISTINCT FROM OLD.id OR NEW.event_id IS DISTINCT FROM OLD.event_id
          OR NEW.provider IS DISTINCT FROM OLD.provider OR NEW.attempt IS DISTINCT FROM OLD.attempt
          OR NEW.trigger IS DISTINCT FROM OLD.trigger OR NEW.created_at IS DISTINCT FROM OLD.created_at)
    EXECUTE FUNCTION hook.processing_jobs_append_only();
CREATE TRIGGER processing_jobs_no_delete BEFORE DELETE ON hook.processing_jobs
    FOR EACH ROW EXECUTE FUNCTION hook.processing_jobs_append_only();

-- (A set-based complete_attempts, one UPDATE joined to the batch, was
-- measured slower than 0006's loop for the batches seen, 3-4 tries each:
-- the loop stays.)

-- 2. A claim starts at a floor (`postgres/floor.rs`): the oldest pending
--    due time less a margin, as the replica last read it. The entries of
--    finished tries below it, which stay in the partial index until VACUUM,
--    are not walked. NULL reads the whole index, as 0005's claim does.
CREATE FUNCTION hook.claim_attempts(
    p_lease_until TIMESTAMPTZ, p_worker TEXT, p_now TIMESTAMPTZ, p_exclude TEXT[], p_limit INTEGER,
    p_from TIMESTAMPTZ)
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
          AND a.due_at >= COALESCE(p_from, '-infinity'::timestamptz)
          AND (a.lease_until IS NULL OR a.lease_until < p_now)
          AND a.webhook_id <> ALL(p_exclude)
          AND EXISTS (SELECT 1 FROM hook.webhook_configs w WHERE w.id = a.webhook_id
                      AND NOT w.disabled AND (w.throttled_until IS NULL OR w.throttled_until <= p_now))
        ORDER BY a.due_at LIMIT p_limit FOR UPDATE OF a SKIP LOCKED)
    RETURNING d.*;
END $$;

-- The forwarding jobs' claim, with its floor likewise.
CREATE FUNCTION hook.claim_jobs(
    p_lease_until TIMESTAMPTZ, p_worker TEXT, p_now TIMESTAMPTZ, p_exclude TEXT[], p_limit INTEGER,
    p_from TIMESTAMPTZ)
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
          AND p.due_at >= COALESCE(p_from, '-infinity'::timestamptz)
          AND (p.lease_until IS NULL OR p.lease_until < p_now)
          AND p.provider <> ALL(p_exclude)
        ORDER BY p.due_at LIMIT p_limit FOR UPDATE SKIP LOCKED)
    RETURNING j.*;
END $$;

-- 0005's 5-argument claims, still called by replicas not yet upgraded, now
-- read the whole index through these: one body per claim to maintain.
CREATE OR REPLACE FUNCTION hook.claim_attempts(
    p_lease_until TIMESTAMPTZ, p_worker TEXT, p_now TIMESTAMPTZ, p_exclude TEXT[], p_limit INTEGER)
RETURNS SETOF hook.delivery_attempts
LANGUAGE sql
AS $$ SELECT * FROM hook.claim_attempts(p_lease_until, p_worker, p_now, p_exclude, p_limit, NULL) $$;

CREATE OR REPLACE FUNCTION hook.claim_jobs(
    p_lease_until TIMESTAMPTZ, p_worker TEXT, p_now TIMESTAMPTZ, p_exclude TEXT[], p_limit INTEGER)
RETURNS SETOF hook.processing_jobs
LANGUAGE sql
AS $$ SELECT * FROM hook.claim_jobs(p_lease_until, p_worker, p_now, p_exclude, p_limit, NULL) $$;
