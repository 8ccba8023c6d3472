//! The browser console (`/console`, operators) and the tenant portal
//! (`/portal`, one account each): server-rendered pages over the same API
//! the rest of the world uses. Every action is an in-process call to that
//! API (`api.rs`), so a page can do nothing the API would refuse, and every
//! rule — validation, SSRF refusals, audit — is written once.

pub(crate) mod api;
pub(crate) mod assets;
pub(crate) mod catalog;
pub(crate) mod chart;
pub(crate) mod console;
pub(crate) mod ctx;
pub(crate) mod form;
pub(crate) mod guard;
pub(crate) mod page;
pub(crate) mod portal;
pub(crate) mod session;

use crate::shared::state::AppState;
use axum::Router;

/// What the pages share: the application and the API router they call.
#[derive(Clone)]
pub struct Web {
    pub app: AppState,
    pub api: Router,
}

/// The console's and the portal's routes, behind the guard (sessions, CSRF,
/// security headers). `api` is the public API router the pages call.
pub fn router(app: AppState, api: Router) -> Router<AppState> {
    let web = Web { app, api };
    Router::new()
        .merge(console::routes())
        .merge(portal::routes())
        .merge(assets::routes())
        .layer(axum::middleware::from_fn_with_state(
            web.clone(),
            guard::layer,
        ))
        .with_state(web)
}
