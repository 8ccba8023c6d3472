-- The operator's audit trail filters: entries by actor, action (exact or a
-- prefix such as `integration.`), target and creation time, each an index
-- range in trail order (seq), so a filtered page reads its own entries, not
-- the trail. Action and time compare byte by byte (COLLATE "C", as the
-- queries do): a prefix is a range in that order, and the times, one width
-- of RFC 3339 text, sort as they happen. The audit trail is written rarely,
-- so four indexes cost little. On a large table, build these beforehand
-- with CREATE INDEX CONCURRENTLY (docs/PRODUCTION.md): IF NOT EXISTS then
-- finds them made.
CREATE INDEX IF NOT EXISTS audit_entries_actor ON hook.audit_entries (actor, seq);
CREATE INDEX IF NOT EXISTS audit_entries_action ON hook.audit_entries (action COLLATE "C", seq);
CREATE INDEX IF NOT EXISTS audit_entries_target ON hook.audit_entries (target, seq);
CREATE INDEX IF NOT EXISTS audit_entries_created ON hook.audit_entries (created_at COLLATE "C", seq);
