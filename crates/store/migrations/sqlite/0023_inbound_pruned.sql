-- Retention of every inbound event (#17). An integration whose scheme signs
-- no timestamp (hmac-sha256, token, github, shopify) is protected against a
-- replay of an old signed request only by its stored deduplication key, so
-- its inbound events were kept forever. Now they are pruned like the
-- others, and their keys stay here: a key, its event's id and when it was
-- received, tens of bytes where the event held its body and headers. A
-- request whose key is here is answered as the duplicate it is.
CREATE TABLE inbound_pruned (
    provider    TEXT NOT NULL,
    dedup_key   TEXT NOT NULL,
    event_id    TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    PRIMARY KEY (provider, dedup_key)
) STRICT, WITHOUT ROWID;
-- Append-only: forgetting a key would let its request in again.
CREATE TRIGGER inbound_pruned_no_update BEFORE UPDATE ON inbound_pruned
BEGIN
    SELECT RAISE(ABORT, 'inbound_pruned is append-only');
END;
CREATE TRIGGER inbound_pruned_no_delete BEFORE DELETE ON inbound_pruned
BEGIN
    SELECT RAISE(ABORT, 'inbound_pruned is append-only');
END;
-- An inbound event whose key was pruned is not stored again: the insert
-- skips the row (RETURNING leaves it out), and the batch answers it from
-- this table as a duplicate.
CREATE TRIGGER inbound_events_pruned_key BEFORE INSERT ON inbound_events
WHEN EXISTS (SELECT 1 FROM inbound_pruned p WHERE p.provider = NEW.provider AND p.dedup_key = NEW.dedup_key)
BEGIN
    SELECT RAISE(IGNORE);
END;
