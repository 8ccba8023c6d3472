-- An endpoint's dead letters, newest first, as a range of their own (#17,
-- lists as fast with 10^7 stored tries as with 10^4): the tenant's
-- `?status=dead` read the endpoint's whole history backwards to find a page
-- of rare dead letters. Dead tries are few, so the partial index costs
-- little. On a large table, build it beforehand with CREATE INDEX
-- CONCURRENTLY (docs/PRODUCTION.md): IF NOT EXISTS then finds it made.
CREATE INDEX IF NOT EXISTS delivery_attempts_webhook_dead ON hook.delivery_attempts (webhook_id, id)
    WHERE status = 'dead';
