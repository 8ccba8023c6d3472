-- Indexes that repeated a UNIQUE constraint's index (or its first columns):
-- each insert paid for an entry nobody needed. Lookups by event use the
-- constraints' indexes: (event_id, attempt) and (event_id, webhook_id, attempt).
DROP INDEX IF EXISTS processing_jobs_event;
DROP INDEX IF EXISTS delivery_attempts_event;
