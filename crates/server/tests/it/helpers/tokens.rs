//! Tokens a test presents: claims for a tenant or a producer, signed with
//! the test app's own HS256 secret.

use super::TestApp;
use hookwarden_server::shared::jwt::{mint_hs256, Claims};

impl TestApp {
    pub fn claims(&self, account: Option<&str>, scope: &str) -> Claims {
        let now = chrono::Utc::now().timestamp();
        Claims {
            sub: account.unwrap_or("producer-test").to_owned(),
            account_id: account.map(str::to_owned),
            scope: scope.to_owned(),
            exp: now + 600,
            nbf: Some(now),
            iat: Some(now),
            iss: None,
            aud: None,
        }
    }

    pub fn sign(&self, claims: &Claims) -> String {
        mint_hs256(&self.jwt_secret, claims).expect("token")
    }

    /// A tenant token with read and write scopes.
    pub fn tenant(&self, account: &str) -> String {
        self.sign(&self.claims(Some(account), "webhooks:read webhooks:write"))
    }

    pub fn producer(&self) -> String {
        self.sign(&self.claims(None, "events:publish"))
    }
}
