//! The one layer in front of every page: finds the request's session,
//! refuses a state-changing request from another origin or without its
//! session's CSRF token, and sets the security headers on every answer.
//! Handlers cannot forget a check: none of them runs before these.

use super::session::{self, Signed};
use super::Web;
use crate::shared::error::ApiError;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hookwarden_store::model::SessionKind;
use subtle::ConstantTimeEq;

/// Largest form a page posts (an event type's schema is the biggest).
pub const MAX_FORM: usize = 1024 * 1024;

/// The form field that carries the CSRF token.
pub const CSRF_FIELD: &str = "_csrf";

/// Page requests per minute an account's portal sessions may make together.
pub const PORTAL_PAGES_PER_MINUTE: u32 = 300;

/// Forms that need no session: signing in, and opening a portal link.
const OPEN_FORMS: &[&str] = &["/console/sign-in", "/portal/enter"];

/// Largest form that needs no session (a key or a link's token, a few
/// fields). Anyone may post one, and it is read before its sender's limit
/// is counted: 1 MiB each would make those reads the costly part.
pub const MAX_OPEN_FORM: usize = 16 * 1024;

pub async fn layer(State(web): State<Web>, mut req: Request, next: Next) -> Response {
    let path = req.uri().path().to_owned();
    let kind = if path.starts_with("/portal") {
        SessionKind::Portal
    } else {
        SessionKind::Operator
    };
    let (cookie, _) = session::cookie_path(&web, kind);
    let asked = Asked::of(&req, cookie);
    let stale = match find_session(&web, asked, kind).await {
        Ok(Lookup::Live(found)) => {
            req.extensions_mut().insert(Signed(found));
            false
        }
        Ok(Lookup::Absent) => false,
        Ok(Lookup::Stale) => true,
        Err(resp) => return secured(&web, kind, resp),
    };
    // A portal's pages make several API calls each: the account's page
    // views are metered here, once each, apart from its API budget.
    if let Some(Signed(s)) = req.extensions().get::<Signed>() {
        if let (SessionKind::Portal, Some(account)) = (s.kind, &s.account_id) {
            let key = format!("portal:{account}");
            if let Err(limited) = web.app.limiter.check(&key, PORTAL_PAGES_PER_MINUTE).await {
                let mut resp = refused(
                    StatusCode::TOO_MANY_REQUESTS,
                    "Too many pages at once; wait a moment and reload.",
                );
                let secs = limited.0.as_secs().max(1).to_string();
                if let Ok(v) = HeaderValue::from_str(&secs) {
                    resp.headers_mut().insert(header::RETRY_AFTER, v);
                }
                return secured(&web, kind, resp);
            }
        }
    }
    if !matches!(*req.method(), Method::GET | Method::HEAD) {
        if !same_origin(&web, &req) {
            return secured(
                &web,
                kind,
                refused(
                    StatusCode::FORBIDDEN,
                    "This form was sent from another site, so it was not acted on.",
                ),
            );
        }
        if !OPEN_FORMS.contains(&path.as_str()) {
            let Some(Signed(s)) = req.extensions().get::<Signed>().cloned() else {
                return secured(
                    &web,
                    kind,
                    refused(
                        StatusCode::FORBIDDEN,
                        "Your session has ended; sign in again.",
                    ),
                );
            };
            let (parts, body) = req.into_parts();
            let bytes = match axum::body::to_bytes(body, MAX_FORM).await {
                Ok(bytes) => bytes,
                Err(e) => {
                    let refusal = match crate::http::body_deadline::refusal(&e) {
                        ApiError::BodyTooSlow => (
                            StatusCode::BAD_REQUEST,
                            "The form did not arrive in time; try again.",
                        ),
                        _ => (StatusCode::PAYLOAD_TOO_LARGE, "The form is too large."),
                    };
                    return secured(&web, kind, refused(refusal.0, refusal.1));
                }
            };
            if !csrf_ok(&bytes, &s.csrf) {
                return secured(&web, kind, refused(StatusCode::FORBIDDEN, "This form's security token is missing or stale; reload the page and try again."));
            }
            req = Request::from_parts(parts, Body::from(bytes));
        }
    }
    let mut resp = next.run(req).await;
    if stale && !resp.headers().contains_key(header::SET_COOKIE) {
        resp.headers_mut()
            .insert(header::SET_COOKIE, session::clear_cookie(&web, kind));
    }
    secured(&web, kind, resp)
}

/// A browser names where a form came from (`Origin`, and `Sec-Fetch-Site`
/// in current browsers); either, when sent, must be this site: the scheme
/// and host this request reached (`Host`, or the authority of an HTTP/2
/// request; `https` where the listener has TLS), or the configured public
/// URL's (behind a proxy that terminates TLS or rewrites `Host`, set
/// `HOOKWARDEN_PUBLIC_URL`). A client that sends neither is not a browser
/// acting for someone else, and still needs the CSRF token.
fn same_origin(web: &Web, req: &Request) -> bool {
    let headers = req.headers();
    if let Some(site) = headers.get("sec-fetch-site") {
        if !matches!(site.as_bytes(), b"same-origin" | b"none") {
            return false;
        }
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let Some(origin) = origin.to_str().ok().and_then(|o| url::Url::parse(o).ok()) else {
        return false;
    };
    let origin = origin.origin().ascii_serialization();
    let settings = &web.app.settings;
    let scheme = if settings.tls_cert_file.is_some() {
        "https"
    } else {
        "http"
    };
    let reached = req
        .uri()
        .authority()
        .map(|a| a.as_str().to_owned())
        .or_else(|| {
            headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_owned)
        })
        .and_then(|host| url::Url::parse(&format!("{scheme}://{host}")).ok())
        .map(|u| u.origin().ascii_serialization());
    let public = settings
        .public_url
        .as_deref()
        .and_then(|u| url::Url::parse(u).ok())
        .map(|u| u.origin().ascii_serialization());
    [reached, public]
        .into_iter()
        .flatten()
        .any(|o| o.eq_ignore_ascii_case(&origin))
}

/// The scope under which the pages count a client's failures (unknown
/// cookies, links that open nothing), as failed authentications are
/// counted: past `HOOKWARDEN_FAILED_AUTH_LIMIT_PER_MINUTE`, its cookies and
/// links are not looked up at all.
pub const SCOPE: &str = "web";

/// The live session the request's cookie names, if any. A cookie that is
/// not one of our tokens costs nothing; an unknown one a read, and a client
/// sending many is limited like a failed authentication. A console session
/// lasts only while its way in does: its key is still configured, and the
/// operator's client certificate, where one is required, comes with every
/// request.
/// What the session lookup needs of a request, taken before it awaits.
struct Asked {
    token: Option<String>,
    client: Option<std::net::IpAddr>,
    identity: Option<crate::shared::client_identity::ClientIdentity>,
}

impl Asked {
    fn of(req: &Request, cookie: &str) -> Self {
        let token = if req.uri().path().starts_with("/assets/") {
            None
        } else {
            session::read_cookie(req.headers(), cookie)
                .filter(|t| session::well_formed(t))
                .map(str::to_owned)
        };
        Self {
            token,
            client: req
                .extensions()
                .get::<crate::http::client_addr::ClientAddr>()
                .map(|c| c.0),
            identity: req
                .extensions()
                .get::<crate::shared::client_identity::ClientIdentity>()
                .cloned(),
        }
    }
}

async fn find_session(web: &Web, asked: Asked, kind: SessionKind) -> Result<Lookup, Response> {
    let Some(token) = asked.token.as_deref() else {
        return Ok(Lookup::Absent);
    };
    // A client that sent many cookies naming no session gets no more reads.
    if let Some(ip) = asked.client {
        if web.app.refusals.blocked(SCOPE, ip).is_some() {
            return Ok(Lookup::Stale);
        }
    }
    let now = web.app.clock.now();
    let found = match web
        .app
        .store
        .get_web_session(&session::digest(token), now)
        .await
    {
        Ok(found) => found.filter(|s| s.kind == kind),
        Err(e) => {
            tracing::error!(error.message = %e, "reading a console session failed");
            return Err(refused(
                StatusCode::SERVICE_UNAVAILABLE,
                "The database did not answer; try again.",
            ));
        }
    };
    let Some(found) = found else {
        if let Some(ip) = asked.client {
            web.app.refusals.failed(SCOPE, ip);
        }
        return Ok(Lookup::Stale);
    };
    if found.kind == SessionKind::Operator && !operator_still_admitted(web, &asked, &found) {
        return Ok(Lookup::Stale);
    }
    Ok(Lookup::Live(found))
}

/// What the request's cookie names.
enum Lookup {
    /// No cookie of ours.
    Absent,
    /// A cookie that opens nothing (ended, unknown, or its way in gone):
    /// the answer clears it, so that a browser stops sending it.
    Stale,
    Live(hookwarden_store::model::WebSession),
}

fn operator_still_admitted(
    web: &Web,
    asked: &Asked,
    s: &hookwarden_store::model::WebSession,
) -> bool {
    let settings = &web.app.settings;
    let presented = |required: &String| asked.identity.as_ref().is_some_and(|id| id.is(required));
    if let Some(required) = &settings.operator_client_identity {
        if !presented(required) {
            return false;
        }
    }
    match s.actor.strip_prefix("operator:") {
        Some("certificate") => settings.operator_client_identity.is_some(),
        Some(key_id) => crate::auth::operator::key_ids(settings)
            .iter()
            .any(|k| k == key_id),
        None => false,
    }
}

fn csrf_ok(form: &Bytes, expected: &str) -> bool {
    let given = url::form_urlencoded::parse(form)
        .find(|(k, _)| k == CSRF_FIELD)
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    !given.is_empty() && bool::from(given.as_bytes().ct_eq(expected.as_bytes()))
}

fn refused(status: StatusCode, message: &'static str) -> Response {
    (status, super::page::notice_page("Not done", message)).into_response()
}

/// Every page's security headers. Scripts and styles come only from our
/// own files (no inline script can run, whatever a value contains); only
/// the portal may be framed, and only by the configured origins.
fn secured(web: &Web, kind: SessionKind, mut resp: Response) -> Response {
    let ancestors = match kind {
        SessionKind::Portal if !web.app.settings.portal_frame_ancestors.is_empty() => {
            web.app.settings.portal_frame_ancestors.join(" ")
        }
        _ => "'none'".to_owned(),
    };
    let csp = format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors {ancestors}"
    );
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&csp) {
        h.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // Not `no-referrer`: under it a browser sends `Origin: null` with our
    // own forms; `same-origin` keeps every address from other sites.
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    if ancestors == "'none'" {
        h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}
