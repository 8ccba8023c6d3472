//! Plain-text rendering for `hookwarden ops`: aligned columns for lists,
//! `label  value` lines for one item, and the JSON form. Every value shown
//! is cleaned of control and direction-changing characters first (escaped,
//! in JSON): the text comes from providers, receivers and tenants, and must
//! not drive the terminal.

use serde_json::Value;

/// One column: its header, the JSON field it shows (`a.b` for a nested
/// one) and how many characters it shows at most.
pub struct Col {
    pub header: &'static str,
    pub field: &'static str,
    pub max: usize,
}

pub const fn col(header: &'static str, field: &'static str, max: usize) -> Col {
    Col { header, field, max }
}

/// Room for any id, time or status.
pub const WIDE: usize = 64;

/// The value at `field` (dotted path; `""` for the item itself), as one
/// line of text; `-` when absent or null.
pub fn cell(item: &Value, field: &str) -> String {
    let mut v = item;
    for part in field.split('.').filter(|p| !p.is_empty()) {
        v = &v[part];
    }
    match v {
        Value::Null => "-".to_owned(),
        Value::String(s) => clean(s),
        Value::Array(a) if a.iter().all(Value::is_string) => clean(
            &a.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(","),
        ),
        other => clean(&other.to_string()),
    }
}

/// One line of text safe to print: line breaks and tabs become spaces;
/// other control characters and bidirectional overrides become `�`.
pub fn clean(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '\n' | '\r' | '\t' => ' ',
            c if unsafe_char(c) => '\u{FFFD}',
            c => c,
        })
        .collect()
}

/// Several lines of text safe to print (a body): keeps line breaks and tabs.
pub fn clean_block(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '\n' | '\t' => c,
            c if unsafe_char(c) => '\u{FFFD}',
            c => c,
        })
        .collect()
}

/// C0 and C1 controls, DEL, and the marks, embeddings, overrides and
/// isolates that change the direction of the text after them.
fn unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
        )
}

/// `value` as pretty JSON that parses to the same value, with every
/// character [`clean`] would replace written as `\uXXXX`. serde_json escapes
/// only U+0000–U+001F; the rest (DEL, C1 such as U+009B CSI, bidirectional
/// controls) would otherwise reach the terminal raw.
pub fn json(value: &Value) -> serde_json::Result<String> {
    let text = serde_json::to_string_pretty(value)?;
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        // Outside strings JSON is ASCII, and C0 is escaped already (the raw
        // line breaks left are the layout's), so any such character is
        // inside a string, where `\uXXXX` stands for it (all are in the BMP).
        if c >= '\u{7F}' && unsafe_char(c) {
            out.push_str(&format!("\\u{:04x}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    Ok(out)
}

/// At most `max` characters, the last one `…` when cut.
pub fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// A header row and one aligned row per item; `(none)` for no items.
pub fn render(items: &[Value], cols: &[Col]) -> String {
    if items.is_empty() {
        return "(none)\n".to_owned();
    }
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|item| {
            cols.iter()
                .map(|c| truncate(&cell(item, c.field), c.max))
                .collect()
        })
        .collect();
    let widths: Vec<usize> = cols
        .iter()
        .enumerate()
        .map(|(i, c)| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .chain([c.header.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let headers: Vec<String> = cols.iter().map(|c| c.header.to_owned()).collect();
    let mut out = String::new();
    for row in std::iter::once(&headers).chain(&rows) {
        let mut line = String::new();
        for (text, width) in row.iter().zip(&widths) {
            line.push_str(text);
            line.extend(std::iter::repeat_n(' ', width - text.chars().count() + 2));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// A page (`{items, nextCursor}`) as a table, then how to get the next one.
pub fn page(page: &Value, cols: &[Col]) -> String {
    let items = page["items"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    let mut out = render(items, cols);
    if let Some(cursor) = page["nextCursor"].as_str() {
        out.push_str(&format!("next page: --cursor {}\n", clean(cursor)));
    }
    out
}

/// One item as `label  value` lines, labels aligned.
pub fn fields(item: &Value, list: &[(&str, &str)]) -> String {
    let width = list.iter().map(|(l, _)| l.len()).max().unwrap_or(0);
    list.iter()
        .map(|(label, field)| format!("{label:<width$}  {}\n", cell(item, field)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const COLS: &[Col] = &[
        col("ID", "id", WIDE),
        col("STATUS", "status", WIDE),
        col("HTTP", "httpStatus", 4),
        col("ERROR", "error", 12),
    ];

    #[test]
    fn columns_align_and_absent_values_show_a_dash() {
        let items = [
            json!({"id": "dlv_1", "status": "dead", "httpStatus": 500, "error": "HTTP 500"}),
            json!({"id": "dlv_22", "status": "succeeded", "httpStatus": null}),
        ];
        assert_eq!(
            render(&items, COLS),
            "ID      STATUS     HTTP  ERROR\n\
             dlv_1   dead       500   HTTP 500\n\
             dlv_22  succeeded  -     -\n"
        );
    }

    #[test]
    fn long_values_are_cut_with_an_ellipsis() {
        let items =
            [json!({"id": "a", "status": "failed", "error": "connection refused by the receiver"})];
        let out = render(&items, COLS);
        assert!(out.contains("connection …"), "{out}");
        assert_eq!(truncate("abc", 3), "abc");
        assert_eq!(truncate("日本語です", 3), "日本…");
    }

    #[test]
    fn control_and_bidi_characters_never_reach_the_terminal() {
        let items = [json!({"id": "x", "status": "a\u{1b}[2J\nb\u{202E}c", "error": "\u{7}"})];
        let out = render(&items, COLS);
        assert!(!out
            .chars()
            .any(|c| c == '\u{1b}' || c == '\u{202E}' || c == '\u{7}'));
        assert!(out.contains("a\u{FFFD}[2J b\u{FFFD}c"), "{out}");
        assert_eq!(
            clean_block("line1\nline2\t\u{1b}"),
            "line1\nline2\t\u{FFFD}"
        );
    }

    #[test]
    fn json_escapes_what_would_drive_the_terminal_and_keeps_the_value() {
        let odd = "a\u{7F}b\u{80}\u{9B}31m\u{9F}c\u{061C}\u{200E}\u{200F}\
                   \u{202A}\u{202B}\u{202C}\u{202D}\u{202E}\u{2066}\u{2067}\u{2068}\u{2069}\
                   \u{1b}[2J\n\té\u{FFFD}日本";
        let value = json!({"preview": odd, odd: [odd, {"nested": odd}], "n": 1});
        let text = json(&value).expect("json");
        let back: Value = serde_json::from_str(&text).expect("valid JSON");
        assert_eq!(back, value);
        for c in text.chars() {
            assert!(
                !unsafe_char(c) || c == '\n',
                "raw U+{:04X} in {text}",
                u32::from(c)
            );
        }
        assert!(text.contains("b\\u0080\\u009b31m\\u009fc\\u061c"), "{text}");
        assert!(text.contains("\\u202e\\u2066"), "{text}");
        // Characters that do no harm stay as they are.
        assert!(text.contains("\\u001b[2J\\n\\té\u{FFFD}日本"), "{text}");
        assert_eq!(json(&json!({"a": 1})).expect("json"), "{\n  \"a\": 1\n}");
    }

    #[test]
    fn an_empty_page_says_so_and_a_cursor_is_offered() {
        assert_eq!(
            page(&json!({"items": [], "nextCursor": null}), COLS),
            "(none)\n"
        );
        let out = page(
            &json!({"items": [{"id": "a", "status": "dead"}], "nextCursor": "c_9"}),
            COLS,
        );
        assert!(out.ends_with("next page: --cursor c_9\n"), "{out}");
    }

    #[test]
    fn nested_fields_arrays_and_one_item_views() {
        let item = json!({"jobs": {"dead": 2}, "eventTypes": ["a.*", "b"], "on": true});
        assert_eq!(cell(&item, "jobs.dead"), "2");
        assert_eq!(cell(&item, "eventTypes"), "a.*,b");
        assert_eq!(cell(&item, "missing.deeper"), "-");
        assert_eq!(
            fields(&item, &[("dead", "jobs.dead"), ("enabled", "on")]),
            "dead     2\nenabled  true\n"
        );
    }
}
