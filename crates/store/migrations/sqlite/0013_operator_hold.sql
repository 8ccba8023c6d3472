-- An endpoint the operator disabled stays disabled until the operator
-- enables it (#18): neither a tenant's update, nor a 410 from the endpoint,
-- nor the tenant's own disable can lift or overwrite that hold.
ALTER TABLE webhook_configs ADD COLUMN operator_hold INTEGER NOT NULL DEFAULT 0;
