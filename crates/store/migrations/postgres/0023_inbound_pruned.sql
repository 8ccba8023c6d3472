-- Retention of every inbound event (#17). An integration whose scheme signs
-- no timestamp (hmac-sha256, token, github, shopify) is protected against a
-- replay of an old signed request only by its stored deduplication key, so
-- its inbound events were kept forever. Now they are pruned like the
-- others, and their keys stay here: a key, its event's id and when it was
-- received, tens of bytes where the event held its body and headers. A
-- request whose key is here is answered as the duplicate it is.
CREATE TABLE hook.inbound_pruned (
    provider    TEXT NOT NULL,
    dedup_key   TEXT NOT NULL,
    event_id    TEXT NOT NULL,
    received_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (provider, dedup_key)
);
-- Append-only: forgetting a key would let its request in again.
CREATE TRIGGER inbound_pruned_append_only BEFORE UPDATE OR DELETE ON hook.inbound_pruned
    FOR EACH ROW EXECUTE FUNCTION hook.refuse_change();
CREATE TRIGGER inbound_pruned_no_truncate BEFORE TRUNCATE ON hook.inbound_pruned
    FOR EACH STATEMENT EXECUTE FUNCTION hook.refuse_change();
