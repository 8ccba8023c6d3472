-- Claims skip the due rows of endpoints already holding their share of the
-- in-flight budget (a timing-out endpoint's backlog sits at the head of the
-- due order). With the endpoint and lease in the index, skipping a row can
-- be decided from the index alone. On a large table, build it first with
-- CREATE INDEX CONCURRENTLY (docs/PRODUCTION.md) so this migration only
-- drops the old one.
CREATE INDEX IF NOT EXISTS delivery_attempts_due_lane ON hook.delivery_attempts (due_at) INCLUDE (webhook_id, lease_until) WHERE status = 'pending';
DROP INDEX IF EXISTS hook.delivery_attempts_due;
