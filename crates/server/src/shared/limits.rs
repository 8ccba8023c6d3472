//! Size limits shared by the HTTP layer and the inbound gateway, kept apart
//! from both so that neither has to import the other for a number.

/// Largest request body, inbound or on the tenant API (SPEC §8).
pub const MAX_BODY: usize = 1024 * 1024;
