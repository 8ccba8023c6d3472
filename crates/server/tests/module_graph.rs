//! Keeps the server crate's module graph acyclic: dependencies point from the
//! HTTP handlers to the domain, never back (ARCHITECTURE.md, "Module graph").
//!
//! Reads every `.rs` file under `src/`, treats each file as one module, and
//! draws an edge for every `crate::…` path it names (in `use` statements,
//! grouped `use crate::{…}` included, and inline paths) to the longest
//! existing module that path starts with. A cycle fails the test, naming the
//! files and the paths that close it.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};

#[test]
fn the_server_module_graph_has_no_cycle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let files = rust_files(&src);
    assert!(
        files.len() > 10,
        "found the sources under {}",
        src.display()
    );
    let modules: BTreeMap<String, PathBuf> = files
        .iter()
        .map(|f| (module_path(&src, f), f.clone()))
        .collect();
    let graph = build_graph(&modules);
    let cycles = cycles(&graph);
    assert!(
        cycles.is_empty(),
        "the server's module graph has cycles (point dependencies from the HTTP \
         handlers to the domain; move a shared type or constant down instead):\n{}",
        cycles.join("\n")
    );
}

#[test]
fn the_checker_sees_a_cycle_and_grouped_and_inline_paths() {
    let modules: BTreeMap<String, PathBuf> = ["crate", "crate::a", "crate::b", "crate::b::c"]
        .iter()
        .map(|m| (m.to_string(), PathBuf::new()))
        .collect();
    let text = "// use crate::b; (a comment)\n\
                let s = \"crate::b\";\n\
                use crate::{b::{self, c::Thing as T}, a};\n\
                fn f() -> crate::b::c::Other { crate::b::c::Other }\n\
                macro_rules! m { () => { $crate::b::x } }\n";
    let refs = references(text);
    let targets: BTreeSet<String> = refs
        .iter()
        .filter_map(|(_, p)| resolve(&modules, p))
        .collect();
    let want: BTreeSet<String> = ["crate::a", "crate::b", "crate::b::c"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(targets, want);
    let mut graph = Graph::new();
    graph
        .entry("crate::a".into())
        .or_default()
        .insert("crate::b".into(), ("a.rs:1".into(), "crate::b::X".into()));
    graph
        .entry("crate::b".into())
        .or_default()
        .insert("crate::a".into(), ("b.rs:2".into(), "crate::a::Y".into()));
    let found = cycles(&graph);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].contains("a.rs:1") && found[0].contains("b.rs:2"));
}

/// ARCHITECTURE.md's code map must name files that exist: every
/// backticked `….rs` path in it is the end of some source file's path in the
/// repository (`inbound/receive.rs`, `crates/store/src/rows.rs`…).
#[test]
fn architecture_names_only_files_that_exist() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let text = std::fs::read_to_string(root.join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    let files: Vec<String> = ["crates", "fuzz"]
        .iter()
        .filter(|d| root.join(d).is_dir())
        .flat_map(|d| rust_files(&root.join(d)))
        .filter(|f| !f.components().any(|c| c.as_os_str() == "target"))
        .map(|f| f.to_string_lossy().replace('\\', "/"))
        .collect();
    let missing: Vec<&str> = text
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|t| t.ends_with(".rs") && !t.contains(' '))
        .filter(|t| {
            !files
                .iter()
                .any(|f| f.ends_with(&format!("/{}", t.trim_start_matches("./"))))
        })
        .collect();
    assert!(
        missing.is_empty(),
        "ARCHITECTURE.md names files that do not exist: {missing:?}"
    );
}

/// For each module, the modules it names, each with one place it does so.
type Graph = BTreeMap<String, BTreeMap<String, (String, String)>>;

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).expect("read src dir") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                todo.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// `src/lib.rs` → `crate`, `src/a/mod.rs` → `crate::a`, `src/a/b.rs` → `crate::a::b`.
fn module_path(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).expect("under src");
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().expect("a file name");
    let stem = last.trim_end_matches(".rs");
    if stem != "mod" && stem != "lib" && stem != "main" {
        parts.push(stem.to_owned());
    }
    std::iter::once("crate".to_owned())
        .chain(parts)
        .collect::<Vec<_>>()
        .join("::")
}

fn build_graph(modules: &BTreeMap<String, PathBuf>) -> Graph {
    let mut graph = Graph::new();
    for (module, file) in modules {
        let text = std::fs::read_to_string(file).expect("read source");
        let edges = graph.entry(module.clone()).or_default();
        for (line, path) in references(&text) {
            let Some(target) = resolve(modules, &path) else {
                continue;
            };
            if target != *module {
                let rel = file
                    .strip_prefix(Path::new(env!("CARGO_MANIFEST_DIR")))
                    .unwrap_or(file);
                edges
                    .entry(target)
                    .or_insert_with(|| (format!("{}:{line}", rel.display()), path.join("::")));
            }
        }
    }
    graph
}

/// The longest existing module a `crate::…` path starts with.
fn resolve(modules: &BTreeMap<String, PathBuf>, path: &[String]) -> Option<String> {
    (1..=path.len())
        .rev()
        .map(|n| path[..n].join("::"))
        .find(|m| modules.contains_key(m))
}

/// Every `crate::…` path in the source, with its line, grouped imports
/// expanded. Comments, strings and `$crate` (macro hygiene) are skipped.
fn references(text: &str) -> Vec<(usize, Vec<String>)> {
    let code = strip_comments_and_strings(text);
    let tokens = tokenize(&code);
    let mut out = Vec::new();
    for i in 0..tokens.len() {
        let (line, ref tok) = tokens[i];
        if tok != "crate" || tokens.get(i + 1).map(|t| t.1.as_str()) != Some("::") {
            continue;
        }
        if i > 0 && tokens[i - 1].1 == "$" {
            continue;
        }
        let mut pos = i + 2;
        parse_tree(&tokens, &mut pos, vec!["crate".to_owned()], line, &mut out);
    }
    out
}

/// Parses one use-tree (`a::b`, `a::{…}`, `{…}`, `self`, `*`) after `prefix::`.
fn parse_tree(
    tokens: &[(usize, String)],
    pos: &mut usize,
    prefix: Vec<String>,
    line: usize,
    out: &mut Vec<(usize, Vec<String>)>,
) {
    let mut path = prefix;
    loop {
        match tokens.get(*pos).map(|t| t.1.as_str()) {
            Some("{") => {
                *pos += 1;
                loop {
                    match tokens.get(*pos).map(|t| t.1.as_str()) {
                        None => return,
                        Some("}") => {
                            *pos += 1;
                            return;
                        }
                        Some(",") => *pos += 1,
                        Some(_) => {
                            let l = tokens[*pos].0;
                            parse_tree(tokens, pos, path.clone(), l, out);
                        }
                    }
                }
            }
            Some("self") => {
                *pos += 1;
                out.push((line, path));
                return;
            }
            Some("*") => {
                *pos += 1;
                out.push((line, path));
                return;
            }
            Some(t) if is_ident(t) => {
                path.push(t.to_owned());
                *pos += 1;
                if tokens.get(*pos).map(|t| t.1.as_str()) == Some("::") {
                    *pos += 1;
                    continue;
                }
                out.push((line, path));
                return;
            }
            _ => {
                out.push((line, path));
                return;
            }
        }
    }
}

fn is_ident(t: &str) -> bool {
    t.chars()
        .next()
        .is_some_and(|c| c.is_alphabetic() || c == '_')
        && t.chars().all(|c| c.is_alphanumeric() || c == '_')
}

/// Identifiers, `::` and single punctuation characters, with their lines.
fn tokenize(code: &str) -> Vec<(usize, String)> {
    let chars: Vec<char> = code.chars().collect();
    let mut out = Vec::new();
    let mut line = 1;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\n' {
            line += 1;
            i += 1;
        } else if c.is_whitespace() {
            i += 1;
        } else if c.is_alphanumeric() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            out.push((line, chars[start..i].iter().collect()));
        } else if c == ':' && chars.get(i + 1) == Some(&':') {
            out.push((line, "::".to_owned()));
            i += 2;
        } else {
            out.push((line, c.to_string()));
            i += 1;
        }
    }
    out
}

/// Blanks comments, string and char literals, keeping the line breaks.
fn strip_comments_and_strings(text: &str) -> String {
    let c: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let ident = |ch: char| ch.is_alphanumeric() || ch == '_';
    // Copies the line breaks of c[from..to] only.
    let breaks = |out: &mut String, from: usize, to: usize| {
        out.extend(c[from..to.min(c.len())].iter().filter(|&&ch| ch == '\n'));
    };
    while i < c.len() {
        let prev = if i > 0 { c[i - 1] } else { ' ' };
        if c[i] == '/' && c.get(i + 1) == Some(&'/') {
            let start = i;
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
            breaks(&mut out, start, i);
        } else if c[i] == '/' && c.get(i + 1) == Some(&'*') {
            let start = i;
            let mut depth = 0;
            while i < c.len() {
                if c[i] == '/' && c.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if c[i] == '*' && c.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            breaks(&mut out, start, i);
            out.push(' ');
        } else if c[i] == 'r'
            && (!ident(prev) || prev == 'b')
            && matches!(c.get(i + 1), Some('"') | Some('#'))
        {
            // A raw string: r"…", r#"…"#, br#"…"#.
            let start = i;
            let mut j = i + 1;
            let mut hashes = 0;
            while c.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if c.get(j) != Some(&'"') {
                out.push(c[i]);
                i += 1;
                continue;
            }
            j += 1;
            loop {
                if j >= c.len() {
                    break;
                }
                if c[j] == '"' && (1..=hashes).all(|k| c.get(j + k) == Some(&'#')) {
                    j += 1 + hashes;
                    break;
                }
                j += 1;
            }
            breaks(&mut out, start, j);
            out.push_str("\"\"");
            i = j;
        } else if c[i] == '"' {
            let start = i;
            i += 1;
            while i < c.len() && c[i] != '"' {
                if c[i] == '\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            breaks(&mut out, start, i);
            out.push_str("\"\"");
        } else if c[i] == '\'' {
            // A char literal ('x', '\n', '\u{..}') or a lifetime ('a).
            if c.get(i + 1) == Some(&'\\') {
                let mut j = i + 2;
                while j < c.len() && c[j] != '\'' {
                    j += 1;
                }
                i = j + 1;
                out.push_str("' '");
            } else if c.get(i + 2) == Some(&'\'') {
                i += 3;
                out.push_str("' '");
            } else {
                out.push('\'');
                i += 1;
            }
        } else {
            out.push(c[i]);
            i += 1;
        }
    }
    out
}

/// Every strongly connected component of more than one module (Tarjan),
/// each described by one cycle through it and the paths that make it.
fn cycles(graph: &Graph) -> Vec<String> {
    struct Tarjan<'g> {
        graph: &'g Graph,
        index: BTreeMap<&'g str, usize>,
        low: BTreeMap<&'g str, usize>,
        stack: Vec<&'g str>,
        on_stack: BTreeSet<&'g str>,
        sccs: Vec<Vec<&'g str>>,
    }
    impl<'g> Tarjan<'g> {
        fn visit(&mut self, v: &'g str) {
            let n = self.index.len();
            self.index.insert(v, n);
            self.low.insert(v, n);
            self.stack.push(v);
            self.on_stack.insert(v);
            let graph = self.graph;
            for w in graph.get(v).into_iter().flat_map(|e| e.keys()) {
                let w = w.as_str();
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let lw = self.low[w];
                    let lv = self.low.get_mut(v).expect("visited");
                    *lv = (*lv).min(lw);
                } else if self.on_stack.contains(w) {
                    let iw = self.index[w];
                    let lv = self.low.get_mut(v).expect("visited");
                    *lv = (*lv).min(iw);
                }
            }
            if self.low[v] == self.index[v] {
                let mut scc = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on_stack.remove(w);
                    scc.push(w);
                    if w == v {
                        break;
                    }
                }
                if scc.len() > 1 {
                    self.sccs.push(scc);
                }
            }
        }
    }
    let mut t = Tarjan {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        sccs: Vec::new(),
    };
    for v in graph.keys() {
        if !t.index.contains_key(v.as_str()) {
            t.visit(v);
        }
    }
    t.sccs
        .into_iter()
        .map(|scc| describe(graph, &scc))
        .collect()
}

/// One shortest cycle through the component's first module, edge by edge.
fn describe(graph: &Graph, scc: &[&str]) -> String {
    let members: BTreeSet<&str> = scc.iter().copied().collect();
    let start = *members.iter().next().expect("non-empty");
    // Breadth-first from `start` inside the component, back to `start`.
    let mut parent: BTreeMap<&str, &str> = BTreeMap::new();
    let mut queue = VecDeque::from([start]);
    let mut end = None;
    while let Some(v) = queue.pop_front() {
        for w in graph.get(v).into_iter().flat_map(|e| e.keys()) {
            let w = w.as_str();
            if !members.contains(w) {
                continue;
            }
            if w == start {
                end = Some(v);
                break;
            }
            if !parent.contains_key(w) {
                parent.insert(w, v);
                queue.push_back(w);
            }
        }
        if end.is_some() {
            break;
        }
    }
    let mut chain = Vec::new();
    let mut v = end.unwrap_or(start);
    while v != start {
        chain.push(v);
        v = parent.get(v).copied().unwrap_or(start);
    }
    chain.reverse();
    let path: Vec<&str> = std::iter::once(start)
        .chain(chain)
        .chain(std::iter::once(start))
        .collect();
    let mut text = format!(
        "cycle among {} modules ({}):",
        scc.len(),
        members.iter().copied().collect::<Vec<_>>().join(", ")
    );
    for pair in path.windows(2) {
        let (from, to) = (pair[0], pair[1]);
        let (place, named) = &graph[from][to];
        text.push_str(&format!("\n  {from} -> {to}  ({place}: {named})"));
    }
    text
}
