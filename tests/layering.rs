//! The crate's layering, checked on the source text (issue 10, "straight layering"):
//! no file imports from a layer above its own, and no files import each other, directly
//! or around a longer circle.
//!
//! A dependency is any path that names a module of this crate: `use` items (grouped
//! ones included), inline paths such as `crate::store::open_database(…)` or
//! `super::admin::socket_path(…)`, and paths through a child module the file declares
//! (`writer::Writer` in `store/mod.rs`). Test modules (`#[cfg(test)] mod …`) count for
//! the layers, since a test that reaches up a layer means the lower module cannot be
//! tested without the upper one; not for circles, since nothing imports a test module, so
//! one that uses the store's front door to set up a fixture closes no circle. Each path belongs to
//! the file of its longest module prefix, so `crate::store::Change` is a dependency on
//! `src/store/mod.rs`, whatever file defines `Change`.
//!
//! Violations that exist today, in code being rewritten elsewhere, are listed in
//! [`KNOWN`]; the test fails on any violation not listed and on any listed one that is
//! gone, so the list can only shrink.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers, bottom first. A module belongs to the layer of its longest listed prefix;
/// a file may import from its own layer and the ones before it.
const LAYERS: &[(&str, &[&str])] = &[
    // Plain values and functions every other part uses.
    ("foundation", &["config", "logging", "credentials", "jid"]),
    // The counters the push module and the store add to.
    ("counters", &["metrics"]),
    ("store", &["store"]),
    // The push module talks to its host only through `push::interface`.
    ("push", &["push"]),
    // Streams, routing, sessions and components.
    ("host", &["xmpp"]),
    // Server-to-server links: streams to and from other servers, entered from the router
    // through `xmpp::route::ToRemote`.
    ("federation", &["s2s"]),
    // What an operator sees of a running host: the admin socket, `check`, the status
    // snapshot and the metrics endpoint.
    (
        "operations",
        &[
            "xmpp::admin",
            "xmpp::preflight",
            "metrics::snapshot",
            "metrics::http",
        ],
    ),
    // Starts and stops all of the above.
    ("startup", &["xmpp::server"]),
    ("commands", &["console"]),
    // The crate root and the binary only declare and call.
    ("root", &["", "main"]),
];

/// Violations tolerated for now: none. A rewrite in several steps may list what it has
/// not ended yet, each with its reason. Each entry is a pair of files: for a layer violation the importing file first; for
/// files that import each other, both, in alphabetical order. Remove an entry when its
/// violation is gone; the test says so.
// One entry a line, so that each pair reads at a glance.
#[rustfmt::skip]
const KNOWN: &[Known] = &[
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    /// The first file imports from a layer above its own.
    UpwardImport,
    /// The two files import each other.
    MutualImport,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Known(Kind, &'static str, &'static str);

#[test]
fn layers_point_down_and_files_import_no_circles() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let files = source_files(&root);
    let graph = Graph::read(&root, &files);
    let mut found: BTreeSet<(Kind, String, String)> = BTreeSet::new();
    for (from, tos) in graph.edges.iter().chain(&graph.test_edges) {
        for to in tos {
            if layer_of(&graph.modules[from]) < layer_of(&graph.modules[to]) {
                found.insert((Kind::UpwardImport, from.clone(), to.clone()));
            }
        }
    }
    for (a, b) in graph.mutual_pairs() {
        found.insert((Kind::MutualImport, a, b));
    }
    let known: BTreeSet<(Kind, String, String)> = KNOWN
        .iter()
        .map(|k| (k.0, k.1.to_string(), k.2.to_string()))
        .collect();
    let show = |set: Vec<&(Kind, String, String)>| -> String {
        set.iter()
            .map(|(kind, a, b)| format!("\n    Known(Kind::{kind:?}, {a:?}, {b:?}),"))
            .collect()
    };
    let new = show(found.difference(&known).collect());
    let gone = show(known.difference(&found).collect());
    let circles = graph.longer_circles(&known);
    assert!(
        new.is_empty() && gone.is_empty() && circles.is_empty(),
        "new violations (fix them):{new}\n\
         listed in KNOWN but gone (delete the entries):{gone}\n\
         files importing each other around a circle of three or more: {circles:?}"
    );
}

fn layer_of(module: &[String]) -> usize {
    let path = module.join("::");
    let mut best: Option<(usize, usize)> = None;
    for (index, (_, prefixes)) in LAYERS.iter().enumerate() {
        for prefix in prefixes.iter() {
            let matches =
                path == *prefix || (!prefix.is_empty() && path.starts_with(&format!("{prefix}::")));
            if matches && best.is_none_or(|(len, _)| prefix.len() >= len) {
                best = Some((prefix.len(), index));
            }
        }
    }
    match best {
        Some((_, index)) => index,
        None => panic!("module {path} is in no layer: add it to LAYERS"),
    }
}

fn source_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// The module path a file defines: `src/store/mod.rs` and `src/store.rs` are `store`.
fn module_of(relative: &Path) -> Vec<String> {
    let mut parts: Vec<String> = relative
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().unwrap();
    match last.trim_end_matches(".rs") {
        "lib" | "mod" => {}
        name => parts.push(name.to_string()),
    }
    parts
}

/// Files by their path under the crate (`src/store/mod.rs`), with what each imports.
struct Graph {
    modules: BTreeMap<String, Vec<String>>,
    edges: BTreeMap<String, BTreeSet<String>>,
    /// What each file's test modules import.
    test_edges: BTreeMap<String, BTreeSet<String>>,
}

impl Graph {
    fn read(root: &Path, files: &[PathBuf]) -> Graph {
        let mut modules = BTreeMap::new();
        let mut by_module = BTreeMap::new();
        for file in files {
            let relative = file.strip_prefix(root).unwrap();
            let name = Path::new("src").join(relative).display().to_string();
            let module = module_of(relative);
            modules.insert(name.clone(), module.clone());
            if relative != Path::new("main.rs") {
                by_module.insert(module, name);
            }
        }
        let mut edges = BTreeMap::new();
        let mut test_edges = BTreeMap::new();
        for file in files {
            let relative = file.strip_prefix(root).unwrap();
            let name = Path::new("src").join(relative).display().to_string();
            let is_binary = relative == Path::new("main.rs");
            let text = std::fs::read_to_string(file).unwrap();
            let tokens = lex(&text);
            let own = if is_binary {
                vec!["main".to_string()]
            } else {
                modules[&name].clone()
            };
            let (mut targets, mut test_targets) = (BTreeSet::new(), BTreeSet::new());
            for (path, in_test) in crate_paths(&tokens, &own, is_binary) {
                if let Some(target) = file_of(&by_module, &path)
                    && *target != name
                {
                    let into = if in_test {
                        &mut test_targets
                    } else {
                        &mut targets
                    };
                    into.insert(target.clone());
                }
            }
            edges.insert(name.clone(), targets);
            test_edges.insert(name, test_targets);
        }
        Graph {
            modules,
            edges,
            test_edges,
        }
    }

    /// Circles of three or more files (strongly connected sets that mutual pairs, listed
    /// or not, do not already explain), each as its files.
    fn longer_circles(&self, known: &BTreeSet<(Kind, String, String)>) -> Vec<Vec<String>> {
        let mutual: BTreeSet<(String, String)> = known
            .iter()
            .filter(|k| k.0 == Kind::MutualImport)
            .map(|k| (k.1.clone(), k.2.clone()))
            .collect();
        // Drop both directions of every mutual pair, then any circle left is a longer one.
        let mut edges = self.edges.clone();
        for (a, b) in self.mutual_pairs().into_iter().chain(mutual) {
            if let Some(tos) = edges.get_mut(&a) {
                tos.remove(&b);
            }
            if let Some(tos) = edges.get_mut(&b) {
                tos.remove(&a);
            }
        }
        strongly_connected(&edges)
            .into_iter()
            .filter(|set| set.len() > 2)
            .collect()
    }

    fn mutual_pairs(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (from, tos) in &self.edges {
            for to in tos {
                if from < to && self.edges.get(to).is_some_and(|b| b.contains(from)) {
                    out.push((from.clone(), to.clone()));
                }
            }
        }
        out
    }
}

fn file_of<'a>(
    by_module: &'a BTreeMap<Vec<String>, String>,
    path: &[String],
) -> Option<&'a String> {
    (0..=path.len())
        .rev()
        .find_map(|len| by_module.get(&path[..len]))
}

/// Tarjan's algorithm, written out iteratively so a deep graph cannot overflow the stack.
fn strongly_connected(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    let nodes: Vec<&String> = edges.keys().collect();
    let index_of: BTreeMap<&String, usize> =
        nodes.iter().enumerate().map(|(i, n)| (*n, i)).collect();
    let next: Vec<Vec<usize>> = nodes
        .iter()
        .map(|n| {
            edges[*n]
                .iter()
                .filter_map(|t| index_of.get(t).copied())
                .collect()
        })
        .collect();
    let n = nodes.len();
    let (mut index, mut low, mut on_stack) = (vec![usize::MAX; n], vec![0; n], vec![false; n]);
    let (mut counter, mut stack, mut out) = (0, Vec::new(), Vec::new());
    for start in 0..n {
        if index[start] != usize::MAX {
            continue;
        }
        let mut work = vec![(start, 0usize)];
        index[start] = counter;
        low[start] = counter;
        counter += 1;
        stack.push(start);
        on_stack[start] = true;
        while let Some(&mut (v, ref mut child)) = work.last_mut() {
            if let Some(&w) = next[v].get(*child) {
                *child += 1;
                if index[w] == usize::MAX {
                    index[w] = counter;
                    low[w] = counter;
                    counter += 1;
                    stack.push(w);
                    on_stack[w] = true;
                    work.push((w, 0));
                } else if on_stack[w] {
                    low[v] = low[v].min(index[w]);
                }
                continue;
            }
            work.pop();
            if let Some(&(parent, _)) = work.last() {
                low[parent] = low[parent].min(low[v]);
            }
            if low[v] == index[v] {
                let mut set = Vec::new();
                while let Some(w) = stack.pop() {
                    on_stack[w] = false;
                    set.push(nodes[w].clone());
                    if w == v {
                        break;
                    }
                }
                set.sort();
                out.push(set);
            }
        }
    }
    out
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Ident(String),
    /// `::`
    PathSep,
    Punct(char),
}

/// Identifiers, `::` and punctuation; comments, strings, characters, lifetimes and
/// numbers are dropped, so a path inside a doc comment or a string is not a dependency.
fn lex(text: &str) -> Vec<Token> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            i = skip_block_comment(&chars, i);
        } else if c == '"' {
            i = skip_string(&chars, i + 1);
        } else if (c == 'r' || c == 'b') && raw_string_start(&chars, i).is_some() {
            let (hashes, body) = raw_string_start(&chars, i).unwrap_or_default();
            i = skip_raw_string(&chars, body, hashes);
        } else if c == 'b' && next == Some('"') {
            i = skip_string(&chars, i + 2);
        } else if c == '\'' {
            i = skip_char_or_lifetime(&chars, i);
        } else if c.is_ascii_digit() {
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
        } else if c.is_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            out.push(Token::Ident(chars[start..i].iter().collect()));
        } else if c == ':' && next == Some(':') {
            out.push(Token::PathSep);
            i += 2;
        } else {
            if !c.is_whitespace() {
                out.push(Token::Punct(c));
            }
            i += 1;
        }
    }
    out
}

fn skip_block_comment(chars: &[char], mut i: usize) -> usize {
    let mut depth = 0;
    while i < chars.len() {
        if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
            depth += 1;
            i += 2;
        } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
            depth -= 1;
            i += 2;
            if depth == 0 {
                break;
            }
        } else {
            i += 1;
        }
    }
    i
}

/// From just after the opening quote to just after the closing one.
fn skip_string(chars: &[char], mut i: usize) -> usize {
    while i < chars.len() {
        match chars[i] {
            '\\' => i += 2,
            '"' => return i + 1,
            _ => i += 1,
        }
    }
    i
}

/// At `r"`, `r#"`, `br"`…: the number of `#` and where the body starts.
fn raw_string_start(chars: &[char], i: usize) -> Option<(usize, usize)> {
    let previous_is_ident = i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_');
    if previous_is_ident {
        return None;
    }
    let mut j = i + usize::from(chars[i] == 'b');
    if chars.get(j) != Some(&'r') {
        return None;
    }
    j += 1;
    let hashes = chars[j..].iter().take_while(|c| **c == '#').count();
    (chars.get(j + hashes) == Some(&'"')).then_some((hashes, j + hashes + 1))
}

fn skip_raw_string(chars: &[char], mut i: usize, hashes: usize) -> usize {
    while i < chars.len() {
        if chars[i] == '"'
            && chars[i + 1..]
                .iter()
                .take(hashes)
                .filter(|c| **c == '#')
                .count()
                == hashes
        {
            return i + 1 + hashes;
        }
        i += 1;
    }
    i
}

/// `'a'`, `'\n'`, `'\u{1F600}'` are characters; `'a` (no closing quote) is a lifetime.
fn skip_char_or_lifetime(chars: &[char], i: usize) -> usize {
    if chars.get(i + 1) == Some(&'\\') {
        let close = chars[i + 2..].iter().position(|c| *c == '\'');
        return close.map_or(chars.len(), |p| i + 2 + p + 1);
    }
    if chars.get(i + 2) == Some(&'\'') {
        return i + 3;
    }
    i + 1
}

/// Every path into this crate, made absolute (module segments from the crate root, then
/// whatever item names follow), and whether it is written in a test module.
fn crate_paths(tokens: &[Token], own: &[String], is_binary: bool) -> Vec<(Vec<String>, bool)> {
    let mut out = Vec::new();
    // Inline modules (`mod tests { … }`) open at a brace depth; `super` inside one is
    // relative to it.
    let mut inline: Vec<(String, usize, bool)> = Vec::new();
    // Child modules declared per module, for paths that start with one of their names.
    let mut children: BTreeMap<Vec<String>, BTreeSet<String>> = BTreeMap::new();
    let mut depth = 0;
    let mut i = 0;
    let here = |inline: &[(String, usize, bool)]| -> Vec<String> {
        own.iter()
            .cloned()
            .chain(inline.iter().map(|m| m.0.clone()))
            .collect()
    };
    while i < tokens.len() {
        match &tokens[i] {
            Token::Punct('{') => depth += 1,
            Token::Punct('}') => {
                depth -= 1;
                if inline.last().is_some_and(|m| m.1 > depth) {
                    inline.pop();
                }
            }
            Token::Ident(word) if word == "mod" => {
                if let Some(Token::Ident(name)) = tokens.get(i + 1) {
                    children
                        .entry(here(&inline))
                        .or_default()
                        .insert(name.clone());
                    if tokens.get(i + 2) == Some(&Token::Punct('{')) {
                        depth += 1;
                        let test = inline.last().is_some_and(|m| m.2) || after_cfg_test(tokens, i);
                        inline.push((name.clone(), depth, test));
                        i += 3;
                        continue;
                    }
                }
            }
            // `+ use<'a>` in a return type (precise capturing) is not a declaration:
            // reading on to the next `;` would swallow the function's opening brace.
            Token::Ident(word)
                if word == "use" && tokens.get(i + 1) != Some(&Token::Punct('<')) =>
            {
                let end = tokens[i..]
                    .iter()
                    .position(|t| *t == Token::Punct(';'))
                    .map_or(tokens.len(), |p| i + p);
                let module = here(&inline);
                let kids = children.get(&module).cloned().unwrap_or_default();
                let in_test = inline.last().is_some_and(|m| m.2);
                for path in use_tree(&tokens[i + 1..end]) {
                    if let Some(abs) = absolute(&path, &module, &kids, is_binary) {
                        out.push((abs, in_test));
                    }
                }
                i = end + 1;
                continue;
            }
            Token::Ident(_) if i == 0 || tokens[i - 1] != Token::PathSep => {
                let mut path = Vec::new();
                let mut j = i;
                while let Some(Token::Ident(segment)) = tokens.get(j) {
                    path.push(segment.clone());
                    if tokens.get(j + 1) != Some(&Token::PathSep) {
                        break;
                    }
                    j += 2;
                }
                if path.len() > 1 {
                    let module = here(&inline);
                    let kids = children.get(&module).cloned().unwrap_or_default();
                    if let Some(abs) = absolute(&path, &module, &kids, is_binary) {
                        out.push((abs, inline.last().is_some_and(|m| m.2)));
                    }
                    i = j;
                    continue;
                }
            }
            _ => {}
        }
        i += 1;
    }
    out
}

/// Whether the `mod` at `i` has `#[cfg(test)]` right before it.
fn after_cfg_test(tokens: &[Token], i: usize) -> bool {
    let ident = |s: &str| Token::Ident(s.to_string());
    let attribute = [
        Token::Punct('#'),
        Token::Punct('['),
        ident("cfg"),
        Token::Punct('('),
        ident("test"),
        Token::Punct(')'),
        Token::Punct(']'),
    ];
    i >= attribute.len() && tokens[i - attribute.len()..i] == attribute
}

/// The paths a `use` tree names, without the `use` and the `;`: `crate::{a, b::{c, self}}`
/// names `crate::a`, `crate::b::c` and `crate::b`. Renames (`as x`) and globs end a path.
fn use_tree(tokens: &[Token]) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut i = 0;
    walk_use(tokens, &mut i, Vec::new(), &mut out);
    out
}

fn walk_use(tokens: &[Token], i: &mut usize, prefix: Vec<String>, out: &mut Vec<Vec<String>>) {
    let mut path = prefix;
    while *i < tokens.len() {
        match &tokens[*i] {
            Token::Ident(word) if word == "as" => {
                *i += 2;
                break;
            }
            Token::Ident(word) if word == "self" && !path.is_empty() => *i += 1,
            Token::Ident(word) => {
                path.push(word.clone());
                *i += 1;
            }
            Token::PathSep => *i += 1,
            Token::Punct('{') => {
                *i += 1;
                loop {
                    walk_use(tokens, i, path.clone(), out);
                    match tokens.get(*i) {
                        Some(Token::Punct(',')) => *i += 1,
                        _ => break,
                    }
                    if tokens.get(*i) == Some(&Token::Punct('}')) {
                        break;
                    }
                }
                *i += 1;
                return;
            }
            Token::Punct('*') => *i += 1,
            Token::Punct(',') | Token::Punct('}') => break,
            // `pub use`, `pub(crate) use` have their visibility before `use`; anything
            // else here is not part of a path.
            Token::Punct(_) => *i += 1,
        }
    }
    out.push(path);
}

/// The path from the crate root, or `None` when it leads outside the crate.
fn absolute(
    path: &[String],
    module: &[String],
    children: &BTreeSet<String>,
    is_binary: bool,
) -> Option<Vec<String>> {
    let (first, rest) = path.split_first()?;
    let mut base: Vec<String> = match first.as_str() {
        "crate" if !is_binary => Vec::new(),
        "cloud_notify" if is_binary => Vec::new(),
        "self" => module.to_vec(),
        "super" => module[..module.len().checked_sub(1)?].to_vec(),
        name if children.contains(name) && !is_binary => {
            let mut m = module.to_vec();
            m.push(name.to_string());
            m
        }
        _ => return None,
    };
    let mut rest = rest.iter().peekable();
    while rest.peek().is_some_and(|s| *s == "super") {
        rest.next();
        base.pop()?;
    }
    base.extend(rest.cloned());
    Some(base)
}

#[test]
fn use_trees_are_read_whole() {
    let tokens = lex("crate::{a, b::{self, c as d}, e::*}");
    let names: Vec<String> = use_tree(&tokens).iter().map(|p| p.join("::")).collect();
    assert_eq!(names, ["crate::a", "crate::b", "crate::b::c", "crate::e"]);
}

#[test]
fn paths_resolve_from_where_they_are_written() {
    let text = "//! crate::ignored::in_comment\n\
                use super::sibling::Item;\n\
                mod child;\n\
                fn f() { let _ = \"crate::in_string\"; crate::x::y(); child::z(); }\n\
                #[cfg(test)]\n\
                mod tests { use super::*; use super::super::up; }\n";
    let own = vec!["a".to_string(), "b".to_string()];
    let found: Vec<(String, bool)> = crate_paths(&lex(text), &own, false)
        .iter()
        .map(|(p, test)| (p.join("::"), *test))
        .collect();
    let expected = [
        ("a::sibling::Item", false),
        ("x::y", false),
        ("a::b::child::z", false),
        ("a::b", true),
        ("a::up", true),
    ];
    assert_eq!(found, expected.map(|(p, t)| (p.to_string(), t)));
}

#[test]
fn a_lower_layer_importing_a_higher_one_is_found() {
    assert!(layer_of(&["store".into()]) < layer_of(&["xmpp".into(), "c2s".into()]));
    assert!(layer_of(&["metrics".into()]) < layer_of(&["store".into()]));
    assert!(
        layer_of(&["xmpp".into(), "router".into()])
            < layer_of(&["metrics".into(), "snapshot".into()])
    );
}
