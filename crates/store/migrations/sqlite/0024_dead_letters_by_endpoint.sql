-- An endpoint's dead letters, newest first, as a range of their own (#17,
-- lists as fast with 10^7 stored tries as with 10^4). Dead tries are few,
-- so the partial index costs little.
CREATE INDEX IF NOT EXISTS delivery_attempts_webhook_dead ON delivery_attempts (webhook_id, id)
    WHERE status = 'dead';
