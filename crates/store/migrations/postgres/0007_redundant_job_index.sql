-- processing_jobs_event (event_id, attempt) repeated the index of the
-- UNIQUE (event_id, attempt) constraint column for column: every inbound
-- event and every retry paid for a second, identical index entry. Lookups
-- by event use the constraint's index.
DROP INDEX IF EXISTS hook.processing_jobs_event;
