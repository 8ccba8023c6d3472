-- The audit chain's key (the SQLite twin of migrations/postgres/0009_audit_chain_key.sql).
CREATE TABLE audit_chain_key (
    id         TEXT PRIMARY KEY CHECK (id = 'chain'),
    key_enc    BLOB NOT NULL,
    key_id     TEXT NOT NULL,
    created_at TEXT NOT NULL
) STRICT;
CREATE TRIGGER audit_chain_key_kept BEFORE DELETE ON audit_chain_key
BEGIN
    SELECT RAISE(ABORT, 'audit_chain_key is kept (append-only)');
END;
