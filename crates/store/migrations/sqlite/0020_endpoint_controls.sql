-- Per-endpoint controls (#17). `headers`: the custom headers every request
-- to the endpoint carries, as a JSON list of {name, value} with the values
-- of secret headers left out ({name, secret: true}); those values are the
-- sealed JSON object `headers_enc` (key `headers_key_id`). `payload_filter`:
-- a JSON pointer and the value(s) it must hold, checked at publish.
-- `rate_limit_per_second`: the most tries sent to it per second, across
-- replicas: each try reserves the next free slot, `rate_next_at`.
-- `public_key`: set when the endpoint signs `v1a` (Ed25519; the sealed
-- secret is then the private key), the `whpk_` key its receivers verify with.
ALTER TABLE webhook_configs ADD COLUMN headers TEXT;
ALTER TABLE webhook_configs ADD COLUMN headers_enc BLOB;
ALTER TABLE webhook_configs ADD COLUMN headers_key_id TEXT;
ALTER TABLE webhook_configs ADD COLUMN payload_filter TEXT;
ALTER TABLE webhook_configs ADD COLUMN rate_limit_per_second INTEGER;
ALTER TABLE webhook_configs ADD COLUMN rate_next_at INTEGER;
ALTER TABLE webhook_configs ADD COLUMN public_key TEXT;
