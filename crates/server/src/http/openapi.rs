//! The OpenAPI 3.1 document of the public listener, generated from the
//! handlers' `#[utoipa::path]` annotations and the response types themselves
//! (so it cannot drift from what is served), plus the types every route shares:
//! pages, the error body, the health answer.

use serde::Serialize;
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{
    ContentBuilder, HeaderBuilder, OpenApi, RefOr, ResponseBuilder, ResponsesBuilder,
};
use utoipa::ToSchema;

/// One page of a list; `nextCursor` is null on the last page.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Page<T: ToSchema> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

impl<T: ToSchema> Page<T> {
    pub fn new(items: Vec<T>, next_cursor: Option<String>) -> Self {
        Self { items, next_cursor }
    }
}

/// Every error answer: a stable `code`, a message for people, and the
/// request's id (docs/API.md, "Errors").
#[derive(Serialize, ToSchema)]
pub struct ErrorResponse {
    pub error: ErrorDetail,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ErrorDetail {
    /// A stable, machine-readable code such as `VALIDATION_ERROR`.
    pub code: String,
    pub message: String,
    pub request_id: String,
}

/// Liveness.
#[derive(Serialize, ToSchema)]
pub struct Health {
    /// Always `ok`.
    pub status: String,
}

impl Health {
    pub fn ok() -> Self {
        Self {
            status: "ok".into(),
        }
    }
}

/// Security scheme names; the handlers' annotations spell them as literals.
pub const TENANT_AUTH: &str = "bearer";
pub const OPERATOR_AUTH: &str = "operatorKey";

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "hookwarden",
        description = "Secure webhook gateway: the tenant and producer API (`/v1`) and the \
            inbound and operator API (`/api/v1`). Every error is \
            `{\"error\":{\"code\",\"message\",\"requestId\"}}`. Health, readiness, metrics \
            and the identity-token JWKS are on the separate ops listener.",
        license(name = "Apache-2.0 OR MIT"),
    ),
    components(schemas(ErrorResponse)),
    tags(
        (name = "webhooks", description = "Tenants' webhook endpoints and their deliveries"),
        (name = "events", description = "Producers publish events and register their schemas"),
        (name = "inbound", description = "Webhooks received from providers"),
        (name = "operator", description = "Integrations, inbound events, replays, audit trail"),
    )
)]
pub struct ApiDoc;

/// Adds what is the same on every route: the security schemes, and the error
/// answers each operation can give (documented once here rather than on
/// each handler, since the error contract is uniform). Runs on the whole
/// document, after the routes' paths are merged into it.
pub fn complete(doc: &mut OpenApi) {
    {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            TENANT_AUTH,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
        components.add_security_scheme(
            OPERATOR_AUTH,
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new(
                crate::auth::operator::HEADER,
            ))),
        );
        for (path, item) in doc.paths.paths.iter_mut() {
            let ops = [
                ("get", &mut item.get),
                ("post", &mut item.post),
                ("put", &mut item.put),
                ("patch", &mut item.patch),
                ("delete", &mut item.delete),
            ];
            for (method, op) in ops {
                if let Some(op) = op {
                    op.operation_id = Some(operation_id(method, path));
                    add_errors(op, method, path);
                }
            }
        }
        name_page_items(components);
    }
}

/// utoipa inlines a generic's argument, so each `Page_T` would repeat `T`
/// inline, nameless (readers and generators then see "array of object").
/// Where `T` is a component of that very shape, the page points to it.
fn name_page_items(components: &mut utoipa::openapi::Components) {
    use utoipa::openapi::schema::{ArrayItems, Schema};
    let names: Vec<String> = components
        .schemas
        .keys()
        .filter(|n| n.starts_with("Page_"))
        .cloned()
        .collect();
    for page in names {
        let item = &page["Page_".len()..];
        let Some(named) = components
            .schemas
            .get(item)
            .and_then(|s| serde_json::to_value(s).ok())
        else {
            continue;
        };
        let Some(RefOr::T(Schema::Object(obj))) = components.schemas.get_mut(&page) else {
            continue;
        };
        let Some(RefOr::T(Schema::Array(array))) = obj.properties.get_mut("items") else {
            continue;
        };
        let ArrayItems::RefOrSchema(inline) = &array.items else {
            continue;
        };
        if serde_json::to_value(inline).ok().as_ref() == Some(&named) {
            array.items = ArrayItems::RefOrSchema(Box::new(RefOr::Ref(
                utoipa::openapi::Ref::from_schema_name(item),
            )));
        }
    }
}

/// A unique id from the method and path (handler names repeat across
/// modules): `get /v1/webhooks/{id}` is `getV1WebhooksById`.
fn operation_id(method: &str, path: &str) -> String {
    let mut id = method.to_owned();
    for segment in path.split(['/', '-']).filter(|s| !s.is_empty()) {
        let (prefix, word) = match segment.strip_prefix('{') {
            Some(param) => ("By", param.trim_end_matches('}')),
            None => ("", segment),
        };
        id.push_str(prefix);
        let mut chars = word.chars();
        if let Some(first) = chars.next() {
            id.extend(first.to_uppercase());
            id.push_str(chars.as_str());
        }
    }
    id
}

fn error_response(description: &str, retry_after: bool) -> RefOr<utoipa::openapi::Response> {
    let mut b = ResponseBuilder::new().description(description).content(
        "application/json",
        ContentBuilder::new()
            .schema(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                "ErrorResponse",
            ))))
            .build(),
    );
    if retry_after {
        b = b.header(
            "Retry-After",
            HeaderBuilder::new()
                .description(Some("Seconds to wait before trying again"))
                .schema(
                    utoipa::openapi::ObjectBuilder::new()
                        .schema_type(utoipa::openapi::schema::Type::Integer),
                )
                .build(),
        );
    }
    RefOr::T(b.build())
}

/// The limits that can answer an operation 429. Every request on the
/// public listener passes the failed-authentication limit per client
/// (`http::client_addr`); tenant routes (the `Tenant` extractor) also meter
/// the account, and producer routes (the `Producer` extractor: publishing
/// and writing a type's schema) the producer, and the event-type catalog's
/// readers (the `Caller` extractor) the token. The inbound route documents
/// its own limits. A test (`every_documented_429_names_the_limits_that_apply`)
/// calls each bearer route over the limits to keep this true.
fn too_many_requests(method: &str, path: &str, op: &Operation) -> &'static str {
    let bearer = op
        .security
        .iter()
        .flatten()
        .any(|req| serde_json::to_value(req).is_ok_and(|v| v.get(TENANT_AUTH).is_some()));
    let producer = (method == "post" && path == "/v1/events")
        || (matches!(method, "put" | "delete") && path == "/v1/event-types/{name}");
    let tenant = path.starts_with("/v1/webhooks")
        || path.starts_with("/v1/deliveries")
        || (method == "get" && path == "/v1/events/{id}");
    // The catalog's readers (the `Caller` extractor).
    if bearer && method == "get" && path.starts_with("/v1/event-types") {
        return "Over the token's request limit (a tenant's token: its account's), or too many failed authentications from this client";
    }
    match (bearer, producer, tenant) {
        (true, true, _) => {
            "Over the producer's publish limit, or too many failed authentications from this client"
        }
        (true, false, true) => {
            "Over the account's request limit, or too many failed authentications from this client"
        }
        _ => "Too many failed authentications from this client",
    }
}

fn add_errors(op: &mut Operation, method: &str, path: &str) {
    let has_body = op.request_body.is_some();
    let secured = op.security.as_ref().is_some_and(|s| !s.is_empty());
    let mut wanted: Vec<(&str, &str, bool)> = vec![
        ("400", "Invalid input: a parameter or the body", false),
        ("404", "Not found (or another account's)", false),
        ("500", "Internal error; nothing internal is said", false),
    ];
    if secured {
        wanted.push(("401", "Missing or invalid credentials", false));
        wanted.push(("403", "Credentials lack the permission", false));
    }
    wanted.push(("429", too_many_requests(method, path, op), true));
    if has_body {
        wanted.push(("413", "Body over the limit", false));
        wanted.push(("415", "Body is not application/json", false));
    }
    let mut extra = ResponsesBuilder::new();
    for (code, description, retry_after) in wanted {
        if !op.responses.responses.contains_key(code) {
            extra = extra.response(code, error_response(description, retry_after));
        }
    }
    op.responses.responses.extend(extra.build().responses);
}

/// The document as served: rendered once.
pub fn render(doc: &OpenApi) -> String {
    doc.to_json().unwrap_or_else(|_| "{}".into())
}

#[cfg(test)]
mod tests {
    #[test]
    fn operation_ids_read_from_method_and_path() {
        assert_eq!(
            super::operation_id("get", "/v1/webhooks/{id}/deliveries"),
            "getV1WebhooksByIdDeliveries"
        );
        assert_eq!(
            super::operation_id("post", "/api/v1/internal/delivery-sink/{provider}"),
            "postApiV1InternalDeliverySinkByProvider"
        );
    }
}
