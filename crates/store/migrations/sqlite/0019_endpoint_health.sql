-- The breaker's state lives with the endpoint (#17), so every replica counts
-- the same failures: failed tries in a row since the last success or pause,
-- pauses since the last success (the step of the pause schedule), and the
-- time of the first failure since the last success (an endpoint that has
-- failed every try for HOOKWARDEN_DISABLE_AFTER since then is disabled).
ALTER TABLE webhook_configs ADD COLUMN failures_in_a_row INTEGER NOT NULL DEFAULT 0;
ALTER TABLE webhook_configs ADD COLUMN breaker_pauses INTEGER NOT NULL DEFAULT 0;
ALTER TABLE webhook_configs ADD COLUMN failing_since INTEGER;
