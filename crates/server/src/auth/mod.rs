//! Who is calling: tenants and producers (JWT), each with scopes, and the
//! extractors that authenticate a request and apply its rate limit.
//!
//! Claims read: `sub` (who), `account_id` (the tenant's account; required on
//! tenant routes), `scope` (space-separated), `exp` (required), `nbf`, `iss`
//! and `aud` (required when configured). Refusals name the claim at fault.

pub(crate) mod on_behalf;
pub(crate) mod operator;

use crate::shared::error::ApiError;
use crate::shared::state::AppState;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    WebhooksRead,
    WebhooksWrite,
    EventsPublish,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::WebhooksRead => "webhooks:read",
            Self::WebhooksWrite => "webhooks:write",
            Self::EventsPublish => "events:publish",
        }
    }
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Principal {
    pub subject: String,
    pub account_id: Option<String>,
    scopes: Vec<String>,
}

impl Principal {
    pub fn has(&self, scope: Scope) -> bool {
        self.scopes.iter().any(|s| s == scope.as_str())
    }

    pub fn require(&self, scope: Scope) -> Result<(), ApiError> {
        self.has(scope).then_some(()).ok_or_else(|| {
            ApiError::Forbidden(format!(
                "token lacks scope {} (the `scope` claim, space-separated)",
                scope.as_str()
            ))
        })
    }
}

fn bearer(parts: &Parts) -> Result<&str, ApiError> {
    let value = parts
        .headers
        .get(axum::http::header::AUTHORIZATION)
        .ok_or_else(|| ApiError::Unauthorized("missing bearer token".into()))?
        .to_str()
        .map_err(|_| ApiError::Unauthorized("malformed authorization header".into()))?;
    let (scheme, token) = value
        .split_once(' ')
        .ok_or_else(|| ApiError::Unauthorized("malformed authorization header".into()))?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(ApiError::Unauthorized(
            "authorization must be a bearer token".into(),
        ));
    }
    Ok(token.trim())
}

async fn authenticate(parts: &Parts, state: &AppState) -> Result<Principal, ApiError> {
    let token = bearer(parts)?;
    let claims = state
        .jwt
        .verify(token)
        .await
        .map_err(|e| ApiError::Unauthorized(e.to_string()))?;
    Ok(Principal {
        subject: claims.sub,
        account_id: claims.account_id.filter(|a| !a.is_empty()),
        scopes: claims.scope.split_whitespace().map(str::to_owned).collect(),
    })
}

/// The header a trusted gateway (Kong) sets after validating the tenant's token.
pub const GATEWAY_ACCOUNT_HEADER: &str = "x-account-id";

/// `X-Account-Id` counts only on a connection whose client certificate is the
/// configured gateway's; from anyone else it is ignored (identity is never
/// taken from an unauthenticated header). Gateway requests carry the tenant
/// scopes; publishing stays with producer tokens.
fn gateway_principal(parts: &Parts, state: &AppState) -> Result<Option<Principal>, ApiError> {
    // Two values would let whichever the next hop reads differ from the one
    // judged here: refused whoever sent them.
    if parts.headers.get_all(GATEWAY_ACCOUNT_HEADER).iter().count() > 1 {
        return Err(ApiError::Validation(format!(
            "{GATEWAY_ACCOUNT_HEADER} must appear at most once"
        )));
    }
    let Some(gateway) = &state.settings.gateway_identity else {
        return Ok(None);
    };
    let from_gateway = parts
        .extensions
        .get::<crate::shared::client_identity::ClientIdentity>()
        .is_some_and(|id| id.is(gateway));
    let account = parts
        .headers
        .get(GATEWAY_ACCOUNT_HEADER)
        .and_then(|v| v.to_str().ok());
    match (from_gateway, account) {
        (true, Some(account))
            if !parts
                .headers
                .contains_key(axum::http::header::AUTHORIZATION) =>
        {
            hookwarden_core::validate::identifier("x-account-id", account)?;
            Ok(Some(Principal {
                subject: format!("gateway:{gateway}"),
                account_id: Some(account.to_owned()),
                scopes: vec![
                    Scope::WebhooksRead.as_str().into(),
                    Scope::WebhooksWrite.as_str().into(),
                ],
            }))
        }
        _ => Ok(None),
    }
}

/// A tenant: a verified token naming an account, within the account's rate limit.
///
/// The limit (`HOOKWARDEN_API_RATE_LIMIT_PER_MINUTE`) is checked here, once
/// per request, whatever the route does: a request that lists, retries or
/// changes many items counts once, like any other.
#[derive(Debug, Clone)]
pub struct Tenant {
    pub principal: Principal,
    pub account_id: String,
}

impl Tenant {
    pub fn require(&self, scope: Scope) -> Result<(), ApiError> {
        self.principal.require(scope)
    }
}

impl FromRequestParts<AppState> for Tenant {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let principal = match parts.extensions.get::<on_behalf::OnBehalf>() {
            // The portal's own call for its session's one account.
            Some(on_behalf::OnBehalf::Tenant { account_id }) => Principal {
                subject: on_behalf::PORTAL_SUBJECT.into(),
                account_id: Some(account_id.clone()),
                scopes: vec![
                    Scope::WebhooksRead.as_str().into(),
                    Scope::WebhooksWrite.as_str().into(),
                ],
            },
            Some(on_behalf::OnBehalf::Operator { .. }) => {
                return Err(ApiError::Forbidden("not a tenant".into()))
            }
            None => match gateway_principal(parts, state)? {
                Some(p) => p,
                None => authenticate(parts, state).await?,
            },
        };
        let account_id = principal
            .account_id
            .clone()
            .ok_or_else(|| ApiError::Forbidden("token has no `account_id` claim".into()))?;
        // The operational webhooks' account is the operator's, never a
        // tenant's, whatever a token says.
        if crate::shared::operational::Operational::is_own(&account_id) {
            return Err(ApiError::Forbidden(
                "this account is reserved for hookwarden's operational webhooks".into(),
            ));
        }
        // The portal's page is metered once, by the guard, not per call it makes.
        if parts.extensions.get::<on_behalf::OnBehalf>().is_some() {
            return Ok(Self {
                principal,
                account_id,
            });
        }
        state
            .limiter
            .check(
                &format!("tenant:{account_id}"),
                state.settings.api_rate_limit_per_minute,
            )
            .await?;
        Ok(Self {
            principal,
            account_id,
        })
    }
}

/// Any caller with a valid token (tenant or producer), for read-only
/// platform information such as event types; within the API's rate limit.
#[derive(Debug, Clone)]
pub struct Caller {
    pub principal: Principal,
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        // The console and the portal read the catalog for their session.
        match parts.extensions.get::<on_behalf::OnBehalf>() {
            Some(on_behalf::OnBehalf::Tenant { account_id }) => {
                return Ok(Self {
                    principal: Principal {
                        subject: on_behalf::PORTAL_SUBJECT.into(),
                        account_id: Some(account_id.clone()),
                        scopes: vec![Scope::WebhooksRead.as_str().into()],
                    },
                })
            }
            Some(on_behalf::OnBehalf::Operator { key_id }) => {
                return Ok(Self {
                    principal: Principal {
                        subject: format!("operator:{key_id}/console"),
                        account_id: None,
                        scopes: Vec::new(),
                    },
                })
            }
            None => {}
        }
        let principal = authenticate(parts, state).await?;
        // Metered as the tenant API is: a tenant's token in its account's
        // budget, any other token in one of its own (the catalog is read
        // whole at each call, so it must not be free to ask for).
        let key = match &principal.account_id {
            Some(account_id) => format!("tenant:{account_id}"),
            None => format!("reader:{}", principal.subject),
        };
        state
            .limiter
            .check(&key, state.settings.api_rate_limit_per_minute)
            .await?;
        Ok(Self { principal })
    }
}

/// A producer: a verified token with `events:publish`, metered per subject.
#[derive(Debug, Clone)]
pub struct Producer {
    pub principal: Principal,
}

impl FromRequestParts<AppState> for Producer {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let principal = authenticate(parts, state).await?;
        principal.require(Scope::EventsPublish)?;
        state
            .limiter
            .check(
                &format!("producer:{}", principal.subject),
                state.settings.publish_rate_limit_per_minute,
            )
            .await?;
        Ok(Self { principal })
    }
}
