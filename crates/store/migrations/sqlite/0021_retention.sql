-- Retention (#17): the history tables stay append-only, except for the one
-- pruning path. SQLite has no session settings: the pruning transaction
-- (`sqlite/retention.rs`, on the one writer) sets `prune_gate.before`,
-- deletes rows created before it, and clears it again before committing,
-- so no other statement ever sees it set. Any other DELETE is refused as
-- before. The audit trail is never pruned: its triggers are unchanged.
CREATE TABLE prune_gate (
    id     INTEGER PRIMARY KEY CHECK (id = 1),
    before INTEGER
) STRICT;
INSERT INTO prune_gate (id, before) VALUES (1, NULL);

DROP TRIGGER delivery_attempts_no_delete;
CREATE TRIGGER delivery_attempts_no_delete BEFORE DELETE ON delivery_attempts
WHEN OLD.created_at >= COALESCE((SELECT before FROM prune_gate WHERE id = 1), -9223372036854775808)
BEGIN
    SELECT RAISE(ABORT, 'delivery_attempts is append-only');
END;

DROP TRIGGER processing_jobs_no_delete;
CREATE TRIGGER processing_jobs_no_delete BEFORE DELETE ON processing_jobs
WHEN OLD.created_at >= COALESCE((SELECT before FROM prune_gate WHERE id = 1), -9223372036854775808)
BEGIN
    SELECT RAISE(ABORT, 'processing_jobs is append-only');
END;

DROP TRIGGER replay_requests_no_delete;
CREATE TRIGGER replay_requests_no_delete BEFORE DELETE ON replay_requests
WHEN OLD.created_at >= COALESCE((SELECT before FROM prune_gate WHERE id = 1), -9223372036854775808)
BEGIN
    SELECT RAISE(ABORT, 'replay_requests is append-only');
END;
-- Pruning finds an event's replay requests.
CREATE INDEX replay_requests_event ON replay_requests (event_id);
