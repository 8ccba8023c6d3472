-- The SQLite twin of migrations/postgres/0014_web_sessions.sql: the console's
-- and the portal's sign-in sessions and the portal's single-use links, kept
-- as hashes of their tokens only. Times are unix milliseconds.

CREATE TABLE web_sessions (
    id_hash    TEXT PRIMARY KEY,
    kind       TEXT NOT NULL CHECK (kind IN ('operator', 'portal')),
    -- A portal session sees exactly one account; it never exists without one.
    account_id TEXT CHECK (kind <> 'portal' OR account_id IS NOT NULL),
    actor      TEXT NOT NULL,
    csrf       TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    revoked_at INTEGER
) STRICT;
CREATE INDEX web_sessions_expires ON web_sessions (expires_at);
CREATE INDEX web_sessions_revoked ON web_sessions (revoked_at) WHERE revoked_at IS NOT NULL;
CREATE INDEX web_sessions_kind_account ON web_sessions (kind, account_id);

CREATE TABLE portal_links (
    token_hash          TEXT PRIMARY KEY,
    account_id          TEXT NOT NULL,
    created_at          INTEGER NOT NULL,
    expires_at          INTEGER NOT NULL,
    session_ttl_seconds INTEGER NOT NULL CHECK (session_ttl_seconds > 0),
    used_at             INTEGER
) STRICT;
CREATE INDEX portal_links_expires ON portal_links (expires_at);
