-- The browser console (/console, operators) and the tenant portal (/portal)
-- (#15): their sign-in sessions, and the single-use links that open a portal
-- session. Only hashes of the tokens are kept (hex SHA-256): someone who
-- reads this table cannot sign in with what they read.

CREATE TABLE hook.web_sessions (
    id_hash    TEXT PRIMARY KEY,
    kind       TEXT NOT NULL CHECK (kind IN ('operator', 'portal')),
    -- A portal session sees exactly one account; it never exists without one.
    account_id TEXT CHECK (kind <> 'portal' OR account_id IS NOT NULL),
    actor      TEXT NOT NULL,
    csrf       TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL,
    revoked_at TIMESTAMPTZ
);
-- Pruning walks expired sessions; revoked ones are few (partial index).
CREATE INDEX web_sessions_expires ON hook.web_sessions (expires_at);
CREATE INDEX web_sessions_revoked ON hook.web_sessions (revoked_at) WHERE revoked_at IS NOT NULL;
-- Signing out every session of an account (or of every operator).
CREATE INDEX web_sessions_kind_account ON hook.web_sessions (kind, account_id);

CREATE TABLE hook.portal_links (
    token_hash          TEXT PRIMARY KEY,
    account_id          TEXT NOT NULL,
    created_at          TIMESTAMPTZ NOT NULL,
    expires_at          TIMESTAMPTZ NOT NULL,
    session_ttl_seconds BIGINT NOT NULL CHECK (session_ttl_seconds > 0),
    used_at             TIMESTAMPTZ
);
CREATE INDEX portal_links_expires ON hook.portal_links (expires_at);
