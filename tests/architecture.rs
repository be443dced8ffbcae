//! The arrows between vmauto's parts (design.md §2), read from the source: every `crate::…`
//! path in a module's code (comments and `#[cfg(test)]` modules aside) is an arrow from that
//! module to the top-level module it names. A forbidden arrow or a cycle fails here, naming
//! the files that make it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// module → module it uses → files that use it.
type Arrows = BTreeMap<String, BTreeMap<String, BTreeSet<String>>>;

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src is readable") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module names that `line` refers to as `crate::NAME`.
fn crate_paths(line: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = line;
    while let Some(at) = rest.find("crate::") {
        let before = rest[..at].chars().last();
        rest = &rest[at + "crate::".len()..];
        // `$crate::` (macros) and `vmauto_crate::` are not this crate's paths.
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
            continue;
        }
        let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
        if !name.is_empty() {
            found.push(name);
        }
    }
    found
}

fn arrows() -> Arrows {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let modules: BTreeSet<String> = files
        .iter()
        .map(|f| f.strip_prefix(&src).expect("under src").iter().next().expect("a component"))
        .map(|c| c.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    let mut arrows = Arrows::new();
    for file in &files {
        let rel = file.strip_prefix(&src).expect("under src").to_string_lossy().to_string();
        let from = rel.split('/').next().expect("a component").trim_end_matches(".rs").to_string();
        let text = std::fs::read_to_string(file).expect("readable");
        let code = text.split("#[cfg(test)]").next().unwrap_or_default();
        for line in code.lines().map(str::trim).filter(|l| !l.starts_with("//")) {
            for to in crate_paths(line) {
                if to != from && modules.contains(&to) {
                    arrows.entry(from.clone()).or_default().entry(to).or_default().insert(rel.clone());
                }
            }
        }
    }
    arrows
}

/// `(from, to, why)`: arrows that must never exist.
const FORBIDDEN: &[(&str, &str, &str)] = &[
    ("http", "provider", "HTTP handlers reach SCP only through the gateway actor"),
    ("provider", "db", "the provider layer speaks SCP only; what it answers is stored by its callers"),
    ("provider", "actors", "the provider layer reports through callbacks the gateway actor gives it"),
    ("plugin_host", "db", "plugins see what the host hands them, never the store"),
    ("sim", "actors", "the simulator is SCP, not part of the appliance"),
    ("actors", "sim", "the appliance does not know the simulator"),
    ("db", "http", "the store does not know who asks"),
    ("db", "actors", "the store does not know who asks"),
    ("lifecycle", "actors", "decisions and their rows are pure; the actors run them"),
    ("lifecycle", "http", "decisions and their rows are pure"),
    ("upgrade", "http", "upgrades are a domain the HTTP layer calls, not the other way round"),
    ("upgrade", "actors", "upgrades get what they need of the running appliance from their caller"),
    ("portal", "http", "the portal is a domain the HTTP layer calls, not the other way round"),
    ("portal", "actors", "the portal gets what it needs of the running appliance from its caller"),
    ("config", "actors", "configuration is read before anything runs"),
    ("notice", "actors", "a notice is plain data"),
];

#[test]
fn no_forbidden_arrow_between_the_parts() {
    let arrows = arrows();
    let mut found = Vec::new();
    for (from, to, why) in FORBIDDEN {
        if let Some(files) = arrows.get(*from).and_then(|t| t.get(*to)) {
            found.push(format!("{from} → {to} ({why}): {files:?}"));
        }
    }
    assert!(found.is_empty(), "forbidden arrows:\n{}", found.join("\n"));
}

/// Strongly connected components with more than one module (Tarjan).
fn cycles(arrows: &Arrows) -> Vec<Vec<String>> {
    struct Walk<'a> {
        arrows: &'a Arrows,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        found: Vec<Vec<String>>,
    }
    impl<'a> Walk<'a> {
        fn visit(&mut self, v: &'a str) {
            let n = self.index.len();
            self.index.insert(v, n);
            self.low.insert(v, n);
            self.stack.push(v);
            self.on_stack.insert(v);
            for w in self.arrows.get(v).into_iter().flat_map(|t| t.keys()).map(String::as_str) {
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
                let mut component = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on_stack.remove(w);
                    component.push(w.to_string());
                    if w == v {
                        break;
                    }
                }
                if component.len() > 1 {
                    component.sort();
                    self.found.push(component);
                }
            }
        }
    }
    let mut walk = Walk {
        arrows,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    for v in arrows.keys() {
        if !walk.index.contains_key(v.as_str()) {
            walk.visit(v);
        }
    }
    walk.found
}

#[test]
fn the_parts_have_no_cycles() {
    let arrows = arrows();
    let found = cycles(&arrows);
    let explain: Vec<String> = found
        .iter()
        .map(|c| {
            let inner: Vec<String> = c
                .iter()
                .flat_map(|from| {
                    arrows[from]
                        .iter()
                        .filter(|(to, _)| c.contains(to))
                        .map(move |(to, files)| format!("  {from} → {to}: {files:?}"))
                })
                .collect();
            format!("{c:?}\n{}", inner.join("\n"))
        })
        .collect();
    assert!(found.is_empty(), "modules that depend on each other in a circle:\n{}", explain.join("\n"));
}

#[test]
fn the_supervisor_only_supervises() {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/actors/supervisor.rs"))
        .expect("readable");
    let siblings = ["gateway", "notifier", "plugins", "reconciler", "registry", "scheduler", "subscription", "vps"];
    let used: Vec<&str> = siblings.iter().copied().filter(|s| text.contains(&format!("super::{s}::"))).collect();
    assert!(used.is_empty(), "supervisor.rs names actors {used:?}: the tree is built in actors/tree.rs");
}

#[test]
fn the_reader_sees_arrows_and_skips_what_is_not_one() {
    assert_eq!(crate_paths("use crate::db::Store;"), vec!["db"]);
    assert_eq!(crate_paths("let x = crate::upgrade::issue(crate::db::x);"), vec!["upgrade", "db"]);
    assert!(crate_paths("impl ::actix::Handler<$crate::actors::messages::Restart> for $actor {").is_empty());
    assert!(crate_paths("use vmauto_plugin_host::Catalogue;").is_empty());
    let mut cyclic = Arrows::new();
    for (a, b) in [("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")] {
        cyclic.entry(a.into()).or_default().entry(b.into()).or_default().insert(format!("{a}.rs"));
    }
    assert_eq!(cycles(&cyclic), vec![vec!["a".to_string(), "b".into(), "c".into()]]);
}

#[test]
fn no_source_file_is_over_600_lines() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for dir in ["src", "tests", "plugins"] {
        collect(&root.join(dir), &mut files);
    }
    let long: Vec<String> = files
        .iter()
        .filter_map(|f| {
            let n = std::fs::read_to_string(f).ok()?.lines().count();
            (n > 600).then(|| format!("{} ({n} lines)", f.strip_prefix(root).unwrap_or(f).display()))
        })
        .collect();
    assert!(long.is_empty(), "split these by concern: {long:?}");

    fn collect(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for entry in entries.filter_map(Result::ok) {
            let path = entry.path();
            let name = entry.file_name();
            if path.is_dir() && name != "node_modules" && name != "target" {
                collect(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
}

/// SurrealQL in `code` (a file's text outside its tests): a call that runs a query, or a
/// string that starts with a statement.
fn surrealql_in(code: &str) -> Vec<String> {
    const CALLS: &[&str] = &[".query_one(", ".query_one::<", ".execute(", "store.create("];
    const STATEMENTS: &[&str] = &["SELECT ", "UPDATE ", "UPSERT ", "CREATE ", "DELETE ", "DEFINE ", "REMOVE "];
    // What follows a statement's keyword in SurrealQL: a table, `type::…`, `$param` or `*`;
    // an HTTP route (`DELETE /janus/…`) or a PEM label (`BEGIN RSA …`) is not a query.
    let opens_a_query = |s: &str| {
        s.starts_with("LET $")
            || s.starts_with("BEGIN TRANSACTION")
            || STATEMENTS.iter().any(|k| {
                s.strip_prefix(k)
                    .and_then(|rest| rest.chars().next())
                    .is_some_and(|c| c.is_ascii_lowercase() || c == '$' || c == '*' || c == '<')
            })
    };
    let mut found = Vec::new();
    for line in code.lines().map(str::trim).filter(|l| !l.starts_with("//")) {
        if CALLS.iter().any(|c| line.contains(c)) {
            found.push(line.to_string());
            continue;
        }
        if line.split('"').skip(1).step_by(2).any(opens_a_query) {
            found.push(line.to_string());
        }
    }
    found
}

#[test]
fn only_the_store_writes_surrealql() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut found = Vec::new();
    for file in files {
        let rel = file.strip_prefix(&src).expect("under src").to_string_lossy().to_string();
        if rel == "db.rs" || rel.starts_with("db/") {
            continue;
        }
        let text = std::fs::read_to_string(&file).expect("readable");
        let code = text.split("#[cfg(test)]").next().unwrap_or_default();
        found.extend(surrealql_in(code).into_iter().map(|l| format!("{rel}: {l}")));
    }
    assert!(
        found.is_empty(),
        "SurrealQL outside db/ (make it a method in db/models/<table>.rs):\n{}",
        found.join("\n")
    );
}

#[test]
fn the_surrealql_reader_finds_queries_and_skips_routes() {
    assert_eq!(surrealql_in("let n: u64 = store.query_one(sql, json!({}), 0).await?;").len(), 1);
    assert_eq!(surrealql_in(r#"let sql = "SELECT * FROM vps";"#).len(), 1);
    assert_eq!(surrealql_in(r#"    "UPDATE type::record('vps', $id) SET x = 1","#).len(), 1);
    assert_eq!(surrealql_in(r#""BEGIN TRANSACTION; CREATE x; COMMIT TRANSACTION;""#).len(), 1);
    assert!(surrealql_in(r#"("DELETE", ["servers", id]) => (Route::DeleteServer(id), "DELETE /janus"),"#).is_empty());
    assert!(surrealql_in(r#"if text.contains("BEGIN RSA PUBLIC KEY") {"#).is_empty());
    assert!(surrealql_in("// store.query_one(...) in a comment").is_empty());
}
