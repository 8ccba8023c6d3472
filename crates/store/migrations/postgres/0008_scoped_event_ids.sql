-- A publish `id` is an idempotency key of one producer for one account
-- (SPEC §12), no longer the event's primary key: keyed globally, one
-- producer could pre-claim another's predictable ids, and tell from 409
-- against 202 whether an id was taken elsewhere. Every event now has an
-- internal id of its own (what the API answers and receivers get as
-- `webhook-id`), and the client's id is unique per (producer, account).
--
-- Existing events keep their id (so tries already queued keep their
-- `webhook-id`), which also becomes their client id: re-publishing one is
-- still recognized. Rows published without an id get a NULL client id
-- from now on (NULLs never conflict).
ALTER TABLE hook.events ADD COLUMN client_id TEXT;
UPDATE hook.events SET client_id = id;
ALTER TABLE hook.events ADD CONSTRAINT events_client_id UNIQUE (producer, account_id, client_id);
