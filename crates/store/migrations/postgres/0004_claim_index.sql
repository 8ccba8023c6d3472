-- Claims skip the due rows of endpoints already holding their share of the
-- in-flight budget (a timing-out endpoint's backlog sits at the head of the
-- due order). With the endpoint and lease in the index, skipping a row can
-- be decided from the index alone.
CREATE INDEX delivery_attempts_due_lane ON hook.delivery_attempts (due_at) INCLUDE (webhook_id, lease_until) WHERE status = 'pending';
DROP INDEX hook.delivery_attempts_due;
