-- The audit chain's key (issue 13, item 10): one random 32-byte key per
-- database, sealed under the master key like every secret (AES-256-GCM), that
-- links each new audit entry with HMAC-SHA256. The sealed value also holds the
-- seq of the first keyed entry, so entries before it are checked as the plain
-- SHA-256 links they were written with. `hookwarden keys rotate` re-seals the
-- row (compare-and-swap); nothing removes it.
CREATE TABLE hook.audit_chain_key (
    id         TEXT PRIMARY KEY CHECK (id = 'chain'),
    key_enc    BYTEA NOT NULL,
    key_id     TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TRIGGER audit_chain_key_kept BEFORE DELETE ON hook.audit_chain_key
    FOR EACH ROW EXECUTE FUNCTION hook.refuse_change();
CREATE TRIGGER audit_chain_key_no_truncate BEFORE TRUNCATE ON hook.audit_chain_key
    FOR EACH STATEMENT EXECUTE FUNCTION hook.refuse_change();
