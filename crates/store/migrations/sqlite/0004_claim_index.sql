-- Claims skip the due rows of endpoints already holding their share of the
-- in-flight budget (a timing-out endpoint's backlog sits at the head of the
-- due order). With the endpoint and lease in the index, skipping a row needs
-- no table lookup.
CREATE INDEX IF NOT EXISTS delivery_attempts_due_lane ON delivery_attempts (due_at, webhook_id, lease_until) WHERE status = 'pending';
DROP INDEX IF EXISTS delivery_attempts_due;
