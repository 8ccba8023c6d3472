-- Traces (#17): the W3C `traceparent` an event, a try and an inbound event
-- continue (`00-<trace>-<span>-<flags>`: the span that is the parent of
-- what is done with the row next). NULL when the row has none.
ALTER TABLE events ADD COLUMN trace_parent TEXT;
ALTER TABLE delivery_attempts ADD COLUMN trace_parent TEXT;
ALTER TABLE inbound_events ADD COLUMN trace_parent TEXT;

-- A try's trace is part of its history, as its payload is.
DROP TRIGGER delivery_attempts_history;
CREATE TRIGGER delivery_attempts_history BEFORE UPDATE ON delivery_attempts
WHEN OLD.status <> 'pending'
  OR NEW.id IS NOT OLD.id OR NEW.event_id IS NOT OLD.event_id OR NEW.webhook_id IS NOT OLD.webhook_id
  OR NEW.account_id IS NOT OLD.account_id OR NEW.attempt IS NOT OLD.attempt
  OR NEW.payload_snapshot IS NOT OLD.payload_snapshot OR NEW.trace_parent IS NOT OLD.trace_parent
  OR NEW.created_at IS NOT OLD.created_at
BEGIN
    SELECT RAISE(ABORT, 'delivery_attempts history is immutable');
END;
