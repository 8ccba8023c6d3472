//! What a page handler starts from: the signed-in session, an API client
//! acting for it, and the request's id for the audit trail. `Console`
//! sends anyone else to sign in; `Portal` tells them the link has ended.

use super::api::{Api, Failure};
use super::page::{self, Frame};
use super::session::Signed;
use super::Web;
use crate::auth::on_behalf::OnBehalf;
use crate::http::request_id::RequestId;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Redirect, Response};
use hookwarden_store::model::{SessionKind, WebSession};
use std::net::SocketAddr;

pub struct Ctx {
    pub web: Web,
    pub session: WebSession,
    pub api: Api,
    pub request_id: String,
}

impl Ctx {
    fn new(web: &Web, parts: &Parts, session: WebSession, on_behalf: OnBehalf) -> Self {
        let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().copied();
        Self {
            web: web.clone(),
            api: Api::new(web.api.clone(), on_behalf, peer),
            request_id: parts
                .extensions
                .get::<RequestId>()
                .map(|r| r.0.clone())
                .unwrap_or_default(),
            session,
        }
    }

    pub fn frame<'a>(&'a self, title: &'a str, active: &'a str) -> Frame<'a> {
        Frame {
            title,
            active,
            session: &self.session,
        }
    }

    /// A whole page answer.
    pub fn page(&self, title: &str, active: &str, body: maud::Markup) -> Response {
        page::render(self.frame(title, active), body).into_response()
    }

    /// The page that says what the API refused.
    pub fn fail(&self, active: &str, f: &Failure) -> Response {
        page::failure(self.frame("", active), f)
    }
}

/// A signed-in operator.
pub struct Console(pub Ctx);

impl FromRequestParts<Web> for Console {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, web: &Web) -> Result<Self, Response> {
        match parts.extensions.get::<Signed>() {
            Some(Signed(s)) if s.kind == SessionKind::Operator => {
                let key_id = s
                    .actor
                    .strip_prefix("operator:")
                    .unwrap_or(&s.actor)
                    .to_owned();
                Ok(Self(Ctx::new(
                    web,
                    parts,
                    s.clone(),
                    OnBehalf::Operator { key_id },
                )))
            }
            _ => Err(Redirect::to("/console/sign-in").into_response()),
        }
    }
}

/// A portal session, scoped to one account.
pub struct Portal(pub Ctx);

impl FromRequestParts<Web> for Portal {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, web: &Web) -> Result<Self, Response> {
        match parts.extensions.get::<Signed>() {
            Some(Signed(s)) if s.kind == SessionKind::Portal => match &s.account_id {
                Some(account_id) => {
                    let on_behalf = OnBehalf::Tenant {
                        account_id: account_id.clone(),
                    };
                    Ok(Self(Ctx::new(web, parts, s.clone(), on_behalf)))
                }
                None => Err(super::portal::ended()),
            },
            _ => Err(super::portal::ended()),
        }
    }
}
