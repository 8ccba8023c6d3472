//! Counts every HTTP answer by method, route template and status. The label
//! is the route as declared (`/v1/webhooks/{id}`), never the path asked for,
//! so ids and probes cannot grow the number of series.

use axum::extract::{MatchedPath, Request};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;

/// Route label of a request that matched no route.
pub const UNMATCHED: &str = "unmatched";

pub async fn layer(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| UNMATCHED.to_owned(), |m| m.as_str().to_owned());
    let method = method_label(req.method());
    let resp = next.run(req).await;
    metrics::counter!(
        crate::shared::metrics::HTTP_RESPONSES,
        "method" => method,
        "route" => route,
        "status" => resp.status().as_str().to_owned()
    )
    .increment(1);
    resp
}

/// Methods outside the standard set share one label.
fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}
