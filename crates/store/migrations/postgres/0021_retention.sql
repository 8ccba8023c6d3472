-- Retention (#17): the history tables stay append-only, except for the one
-- pruning path. A transaction that sets `hookwarden.prune_before` (SET
-- LOCAL, `postgres/retention.rs`) may delete rows created before that
-- time, and only those; any other DELETE is refused as before. The audit
-- trail is never pruned: its triggers are unchanged.
CREATE FUNCTION hook.prune_before() RETURNS TIMESTAMPTZ LANGUAGE sql STABLE AS $$
    SELECT COALESCE(NULLIF(current_setting('hookwarden.prune_before', true), '')::timestamptz,
                    '-infinity'::timestamptz)
$$;

DROP TRIGGER delivery_attempts_no_delete ON hook.delivery_attempts;
CREATE TRIGGER delivery_attempts_no_delete BEFORE DELETE ON hook.delivery_attempts
    FOR EACH ROW WHEN (OLD.created_at >= hook.prune_before())
    EXECUTE FUNCTION hook.delivery_attempts_append_only();

DROP TRIGGER processing_jobs_no_delete ON hook.processing_jobs;
CREATE TRIGGER processing_jobs_no_delete BEFORE DELETE ON hook.processing_jobs
    FOR EACH ROW WHEN (OLD.created_at >= hook.prune_before())
    EXECUTE FUNCTION hook.processing_jobs_append_only();

DROP TRIGGER replay_requests_append_only ON hook.replay_requests;
CREATE TRIGGER replay_requests_no_update BEFORE UPDATE ON hook.replay_requests
    FOR EACH ROW EXECUTE FUNCTION hook.refuse_change();
CREATE TRIGGER replay_requests_no_delete BEFORE DELETE ON hook.replay_requests
    FOR EACH ROW WHEN (OLD.created_at >= hook.prune_before())
    EXECUTE FUNCTION hook.refuse_change();
-- Pruning finds an event's replay requests.
CREATE INDEX replay_requests_event ON hook.replay_requests (event_id);
