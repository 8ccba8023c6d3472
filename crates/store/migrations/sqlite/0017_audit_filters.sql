-- The operator's audit trail filters (the SQLite twin of
-- migrations/postgres/0017_audit_filters.sql): entries by actor, action,
-- target and creation time, each an index range in trail order (seq).
-- SQLite's default collation already compares byte by byte.
CREATE INDEX IF NOT EXISTS audit_entries_actor ON audit_entries (actor, seq);
CREATE INDEX IF NOT EXISTS audit_entries_action ON audit_entries (action, seq);
CREATE INDEX IF NOT EXISTS audit_entries_target ON audit_entries (target, seq);
CREATE INDEX IF NOT EXISTS audit_entries_created ON audit_entries (created_at, seq);
