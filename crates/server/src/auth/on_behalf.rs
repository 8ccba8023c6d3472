//! Calls the console and the portal make to the API in process, on behalf
//! of a signed-in session. The marker is a request extension the web layer
//! puts on a request it builds itself: nothing a client sends can set it,
//! so the network never reaches the API through it.

/// Who the in-process call is for; the session was authenticated at sign-in
/// (operator key, client certificate) or at the portal link's redemption.
#[derive(Debug, Clone)]
pub enum OnBehalf {
    /// A console session: `key_id` names the key it signed in with.
    Operator { key_id: String },
    /// A portal session, scoped to one account.
    Tenant { account_id: String },
}

/// The subject a portal session's changes are audited under.
pub const PORTAL_SUBJECT: &str = "portal";
