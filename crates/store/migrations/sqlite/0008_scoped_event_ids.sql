-- A publish `id` is an idempotency key of one producer for one account
-- (SPEC §12), no longer the event's primary key (see the PostgreSQL twin
-- for why). Existing events keep their id, which also becomes their client
-- id; events published without an id get a NULL client id (NULLs never
-- conflict in a unique index).
ALTER TABLE events ADD COLUMN client_id TEXT;
UPDATE events SET client_id = id;
CREATE UNIQUE INDEX events_client_id ON events (producer, account_id, client_id);
