//! The API contract in the repository, `docs/API.md` and `docs/openapi.json`,
//! kept true to the code: the generated part of `docs/API.md` (every
//! operation, every schema) is rendered here from the same OpenAPI document
//! the public listener serves, and compared with the committed files. When
//! they differ, `HOOKWARDEN_UPDATE_DOCS=1` rewrites them (see `REGENERATE`).

use serde_json::Value;
use std::fmt::Write as _;
use std::path::PathBuf;

const REGENERATE: &str = "HOOKWARDEN_UPDATE_DOCS=1 cargo test -p hookwarden-server --test it docs";
const BEGIN: &str = "<!-- BEGIN GENERATED from the OpenAPI document: do not edit by hand; \
    regenerate with `HOOKWARDEN_UPDATE_DOCS=1 cargo test -p hookwarden-server --test it docs` -->";
const END: &str = "<!-- END GENERATED -->";

fn docs_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs")
}

/// The document exactly as `/openapi.json` serves it.
fn document() -> Value {
    let (_, doc) = hookwarden_server::http::public_routes();
    serde_json::from_str(&hookwarden_server::http::openapi::render(&doc)).expect("document")
}

#[test]
fn docs_api_md_and_openapi_json_match_the_code() {
    let doc = document();
    let update = std::env::var_os("HOOKWARDEN_UPDATE_DOCS").is_some();
    let mut stale = Vec::new();

    let json_path = docs_dir().join("openapi.json");
    let json = serde_json::to_string_pretty(&doc).expect("json") + "\n";
    if std::fs::read_to_string(&json_path).ok().as_deref() != Some(json.as_str()) {
        if update {
            std::fs::write(&json_path, &json).expect("write docs/openapi.json");
        } else {
            stale.push("docs/openapi.json");
        }
    }

    let md_path = docs_dir().join("API.md");
    let md = std::fs::read_to_string(&md_path).expect("docs/API.md exists");
    let (Some(begin), Some(end)) = (md.find(BEGIN), md.find(END)) else {
        panic!("docs/API.md lacks the markers of its generated part:\n{BEGIN}\n…\n{END}");
    };
    assert!(begin < end, "docs/API.md: the markers are out of order");
    let generated = format!("{BEGIN}\n\n{}\n{END}", render(&doc));
    let wanted = format!("{}{generated}{}", &md[..begin], &md[end + END.len()..]);
    if wanted != md {
        if update {
            std::fs::write(&md_path, &wanted).expect("write docs/API.md");
        } else {
            stale.push("docs/API.md");
        }
    }
    // The contract stands on its own: nothing in it points outside the
    // repository.
    for (name, text) in [("docs/API.md", &wanted), ("docs/openapi.json", &json)] {
        for outside in ["../shared", "SPEC §"] {
            assert!(!text.contains(outside), "{name} refers to {outside}");
        }
    }
    assert!(
        stale.is_empty(),
        "{} out of date with the OpenAPI document; regenerate with\n    {REGENERATE}\nand commit the result",
        stale.join(" and "),
    );
}

/// The renderer's own rules, on a small document of known shape.
#[test]
fn docs_render_types_fields_and_markdown_safely() {
    let doc = serde_json::json!({
        "components": {"schemas": {"Thing": {"type": "object", "required": ["a"],
            "properties": {
                "a": {"type": "string", "description": "one | two\nlines"},
                "b": {"type": ["integer", "null"], "format": "int64"},
                "c": {"type": "array", "items": {"$ref": "#/components/schemas/Other"}},
                "d": {"oneOf": [{"type": "null"}, {"$ref": "#/components/schemas/Other"}]},
                "e": {"type": "string", "enum": ["x", "y"]},
                "f": {},
                "g": {"type": "array", "items": {"title": "Other", "type": "object",
                    "properties": {"z": {"type": "string"}}}},
                "h": {"type": "array", "items": {"allOf": [
                    {"$ref": "#/components/schemas/Other"},
                    {"type": "object", "properties": {"accountId": {"type": "string"}}}]}},
                "i": {"type": "object", "properties": {"p": {}, "q": {}}},
                "j": {"type": "array", "items": {"title": "Unknown", "type": "object"}}
            }},
            "Other": {"type": "object", "required": ["z"],
                "properties": {"z": {"type": "string"}}},
            "OtherPlus": {"allOf": [
                {"$ref": "#/components/schemas/Other"},
                {"allOf": [{"type": "object", "required": ["accountId"],
                    "properties": {"accountId": {"type": "string"}}}]}]}
        }}
    });
    let thing = &doc["components"]["schemas"]["Thing"];
    let rows = fields(&doc, thing);
    assert!(
        rows.contains("| `a` | string | yes | one \\| two lines |"),
        "{rows}"
    );
    assert!(
        rows.contains("| `b` | integer (int64) or null | no |"),
        "{rows}"
    );
    assert!(
        rows.contains("| `c` | array of [`Other`](#other) | no |"),
        "{rows}"
    );
    assert!(
        rows.contains("| `d` | null or [`Other`](#other) | no |"),
        "{rows}"
    );
    assert!(rows.contains("| `e` | `\"x\"` or `\"y\"` | no |"), "{rows}");
    assert!(rows.contains("| `f` | any JSON | no |"), "{rows}");
    // An inline item schema is named by its title, never "array of object".
    assert!(
        rows.contains("| `g` | array of [`Other`](#other) | no |"),
        "{rows}"
    );
    // allOf is one object: the fields of a named part and the inline ones.
    assert!(
        rows.contains(
            "| `h` | array of object with the fields of [`Other`](#other) and `accountId` | no |"
        ),
        "{rows}"
    );
    assert!(
        rows.contains("| `i` | object with `p`, `q` | no |"),
        "{rows}"
    );
    // A title the document does not define is named, not linked.
    assert!(rows.contains("| `j` | array of `Unknown` | no |"), "{rows}");
    // An allOf schema's field table is the union of its parts' fields,
    // nested allOf flattened.
    let plus = fields(&doc, &doc["components"]["schemas"]["OtherPlus"]);
    assert!(plus.contains("| `z` | string | yes |"), "{plus}");
    assert!(plus.contains("| `accountId` | string | yes |"), "{plus}");
    // A `$ref` to the schema itself: its name.
    assert_eq!(
        type_of(
            &doc,
            &serde_json::json!({"type": "array",
            "items": {"$ref": "#/components/schemas/OtherPlus"}})
        ),
        "array of [`OtherPlus`](#otherplus)"
    );
}

/// Every page names its item type: the served document points each
/// `Page_T`'s items to `T`, and so the rendering says "array of T".
#[test]
fn docs_pages_name_their_item_type() {
    let doc = document();
    let schemas = doc["components"]["schemas"].as_object().expect("schemas");
    let pages: Vec<_> = schemas.keys().filter(|n| n.starts_with("Page_")).collect();
    assert!(!pages.is_empty());
    for page in pages {
        let item = &page["Page_".len()..];
        assert_eq!(
            doc["components"]["schemas"][page]["properties"]["items"]["items"]["$ref"],
            format!("#/components/schemas/{item}"),
            "{page}"
        );
        let rows = fields(&doc, &doc["components"]["schemas"][page]);
        let want = format!("| `items` | array of [`{item}`](#{}) | yes |", anchor(item));
        assert!(rows.contains(&want), "{page}: {rows}");
    }
}

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

/// Markdown of every operation, grouped by tag, then every schema.
fn render(doc: &Value) -> String {
    let mut out = String::new();
    let paths = doc["paths"].as_object().expect("paths");
    let operations = || {
        paths.iter().flat_map(|(path, item)| {
            METHODS
                .iter()
                .filter_map(move |m| item.get(*m).map(|op| (*m, path.as_str(), op)))
        })
    };
    // The document's tags in its order, then any an operation uses that
    // the document does not declare (so no operation is ever left out).
    let mut tags: Vec<(String, String)> = doc["tags"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            (
                text(&t["name"]).to_owned(),
                text(&t["description"]).to_owned(),
            )
        })
        .collect();
    for (_, _, op) in operations() {
        if !tags.iter().any(|(name, _)| name == op_tag(op)) {
            tags.push((op_tag(op).to_owned(), String::new()));
        }
    }

    out.push_str("## Operations\n\n");
    out.push_str("| method | path | summary |\n|---|---|---|\n");
    for (tag, _) in &tags {
        for (method, path, op) in operations().filter(|(_, _, op)| op_tag(op) == tag) {
            let _ = writeln!(
                out,
                "| {} | [`{path}`](#{}) | {} |",
                method.to_uppercase(),
                anchor(&heading(method, path)),
                cell(text(&op["summary"]))
            );
        }
    }
    for (tag, description) in &tags {
        let _ = writeln!(out, "\n### {}", title(tag));
        if !description.is_empty() {
            let _ = writeln!(out, "\n{description}");
        }
        for (method, path, op) in operations().filter(|(_, _, op)| op_tag(op) == tag) {
            operation(&mut out, doc, method, path, op);
        }
    }

    out.push_str(
        "\n## Schemas\n\nThe bodies named above. Field names are camelCase; times are RFC 3339.\n",
    );
    if let Some(schemas) = doc["components"]["schemas"].as_object() {
        for (name, schema) in schemas {
            let _ = write!(out, "\n### {name}\n\n");
            if let Some(d) = schema["description"].as_str() {
                let _ = write!(out, "{}\n\n", d.trim());
            }
            let rows = fields(doc, schema);
            if rows.is_empty() {
                let _ = writeln!(out, "Type: {}.", type_of(doc, schema));
            } else {
                out.push_str(&rows);
            }
        }
    }
    out
}

fn op_tag(op: &Value) -> &str {
    op["tags"][0].as_str().unwrap_or("")
}

fn title(tag: &str) -> String {
    if tag.is_empty() {
        return "Other".to_owned();
    }
    let mut chars = tag.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().collect::<String>() + chars.as_str())
        .unwrap_or_default()
}

fn heading(method: &str, path: &str) -> String {
    format!("{} {path}", method.to_uppercase())
}

/// GitHub's anchor of a heading: lower case, spaces to `-`, punctuation
/// other than `-` and `_` dropped.
fn anchor(heading: &str) -> String {
    heading
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or("").trim()
}

fn operation(out: &mut String, doc: &Value, method: &str, path: &str, op: &Value) {
    let _ = write!(
        out,
        "\n#### {}\n\n**{}**\n\n{}\n\n",
        heading(method, path),
        text(&op["summary"]),
        text(&op["description"])
    );
    let auth: Vec<&str> = op["security"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|req| req.as_object())
        .flat_map(|req| req.keys())
        .map(|scheme| match scheme.as_str() {
            "bearer" => "bearer JWT (`Authorization: Bearer …`)",
            "operatorKey" => "operator key (`x-internal-api-key`)",
            other => other,
        })
        .collect();
    let _ = writeln!(
        out,
        "Auth: {}.\n",
        if auth.is_empty() {
            "none".to_owned()
        } else {
            auth.join(" or ")
        }
    );
    if let Some(params) = op["parameters"].as_array().filter(|p| !p.is_empty()) {
        out.push_str(
            "Parameters:\n\n| name | in | type | required | description |\n|---|---|---|---|---|\n",
        );
        for p in params {
            let _ = writeln!(
                out,
                "| `{}` | {} | {} | {} | {} |",
                text(&p["name"]),
                text(&p["in"]),
                type_of(doc, &p["schema"]),
                yes_no(p["required"].as_bool().unwrap_or(false)),
                cell(text(&p["description"]))
            );
        }
        out.push('\n');
    }
    if let Some(body) = op["requestBody"].as_object() {
        let required = body
            .get("required")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        for (content_type, content) in body
            .get("content")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            let schema = &content["schema"];
            let _ = writeln!(
                out,
                "Request body ({}, `{content_type}`): {}.{}\n",
                if required { "required" } else { "optional" },
                type_of(doc, schema),
                body.get("description")
                    .and_then(Value::as_str)
                    .map(|d| format!(" {}", d.trim()))
                    .unwrap_or_default()
            );
            let rows = fields(doc, schema);
            if !rows.is_empty() {
                out.push_str(&rows);
                out.push('\n');
            }
        }
    }
    out.push_str("Responses:\n\n| status | description | body |\n|---|---|---|\n");
    for (status, response) in op["responses"].as_object().into_iter().flatten() {
        let body: Vec<String> = response["content"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(ct, c)| match ct.as_str() {
                "application/json" => type_of(doc, &c["schema"]),
                _ => format!("{} (`{ct}`)", type_of(doc, &c["schema"])),
            })
            .collect();
        let headers: Vec<String> = response["headers"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(h, _)| format!("header `{h}`"))
            .collect();
        let body = body.into_iter().chain(headers).collect::<Vec<_>>();
        let _ = writeln!(
            out,
            "| {status} | {} | {} |",
            cell(text(&response["description"])),
            if body.is_empty() {
                "–".to_owned()
            } else {
                body.join("; ")
            }
        );
    }
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

/// A table cell: one line, pipes escaped.
fn cell(s: &str) -> String {
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace('|', "\\|")
}

/// The schema a `$ref` names, or the schema itself.
fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str().and_then(|r| r.rsplit('/').next()) {
        Some(name) => &doc["components"]["schemas"][name],
        None => schema,
    }
}

/// The field table of an object schema (its `allOf` parts merged), or
/// nothing when it is no object with properties.
fn fields(doc: &Value, schema: &Value) -> String {
    let mut rows = String::new();
    let mut parts = vec![resolve(doc, schema)];
    let mut i = 0;
    while i < parts.len() {
        if let Some(all) = parts[i]["allOf"].as_array() {
            parts.extend(all.iter().map(|s| resolve(doc, s)));
        }
        i += 1;
    }
    for part in parts {
        let required: Vec<&str> = part["required"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        for (name, field) in part["properties"].as_object().into_iter().flatten() {
            let _ = writeln!(
                rows,
                "| `{name}` | {} | {} | {} |",
                type_of(doc, field),
                yes_no(required.contains(&name.as_str())),
                cell(text(&field["description"]))
            );
        }
    }
    if rows.is_empty() {
        rows
    } else {
        format!("| field | type | required | description |\n|---|---|---|---|\n{rows}")
    }
}

/// A schema's type in words: `string (date-time) or null`, `array of
/// [`Thing`](#thing)`, `` `"a"` or `"b"` ``. A named schema (a `$ref`, or an
/// inline one with a `title`) is its name, linked when the document has it;
/// an `allOf` is one object with the fields of all its parts.
fn type_of(doc: &Value, schema: &Value) -> String {
    if let Some(r) = schema["$ref"].as_str() {
        return name_link(doc, r.rsplit('/').next().unwrap_or(r));
    }
    if let Some(title) = schema["title"].as_str() {
        return name_link(doc, title);
    }
    if let Some(values) = schema["enum"].as_array() {
        return values
            .iter()
            .map(|v| format!("`{v}`"))
            .collect::<Vec<_>>()
            .join(" or ");
    }
    if schema["allOf"].is_array() {
        return object_of(doc, &all_of(schema));
    }
    for key in ["oneOf", "anyOf"] {
        if let Some(parts) = schema[key].as_array() {
            return parts
                .iter()
                .map(|p| type_of(doc, p))
                .collect::<Vec<_>>()
                .join(" or ");
        }
    }
    let one = |t: &str| -> String {
        match t {
            "array" => format!("array of {}", type_of(doc, &schema["items"])),
            "string" | "integer" | "number" => match schema["format"].as_str() {
                Some(f) => format!("{t} ({f})"),
                None => t.to_owned(),
            },
            "object" => object_of(doc, &[schema]),
            other => other.to_owned(),
        }
    };
    match &schema["type"] {
        Value::String(t) => one(t),
        Value::Array(ts) => ts
            .iter()
            .filter_map(Value::as_str)
            .map(one)
            .collect::<Vec<_>>()
            .join(" or "),
        _ => "any JSON".to_owned(),
    }
}

/// `` [`Name`](#name) `` when the document has that schema, else `` `Name` ``.
fn name_link(doc: &Value, name: &str) -> String {
    if doc["components"]["schemas"].get(name).is_some() {
        format!("[`{name}`](#{})", anchor(name))
    } else {
        format!("`{name}`")
    }
}

/// The parts of an `allOf`, flattened: named parts stay whole (they are
/// linked), inline parts are opened, nested `allOf`s too.
fn all_of(schema: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for part in schema["allOf"].as_array().into_iter().flatten() {
        if part.get("$ref").is_none() && part["allOf"].is_array() {
            out.extend(all_of(part));
        } else {
            out.push(part);
        }
    }
    out
}

/// An object in words, from the parts whose fields it has: `object`,
/// `` object with `a`, `b` ``, or `` object with the fields of
/// [`Thing`](#thing) and `a` ``.
fn object_of(doc: &Value, parts: &[&Value]) -> String {
    let mut named = Vec::new();
    let mut fields = Vec::new();
    for part in parts {
        if part.get("$ref").is_some() || part.get("title").is_some() {
            named.push(type_of(doc, part));
        } else {
            fields.extend(
                part["properties"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(name, _)| format!("`{name}`")),
            );
        }
    }
    match (named.is_empty(), fields.is_empty()) {
        (true, true) => "object".to_owned(),
        (true, false) => format!("object with {}", fields.join(", ")),
        (false, true) => format!("object with the fields of {}", named.join(" and ")),
        (false, false) => format!(
            "object with the fields of {} and {}",
            named.join(" and "),
            fields.join(", ")
        ),
    }
}
