//! Checks on the shape of the code, so that it stays a codebase a newcomer can map: no
//! source file over ~900 lines, no function over ~80 (data tables excepted), no circle
//! between modules, and a dependency two crates share declared once for the workspace.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use regex::Regex;

const MAX_FILE_LINES: usize = 900;
const MAX_FN_LINES: usize = 80;
/// Functions that are tables of data, not logic: long by nature, read by scanning.
const DATA_TABLES: &[&str] = &["crates/auth/src/roles.rs: built_in"];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every crate's `src` folder and its Rust files, paths relative to the workspace.
fn crate_sources() -> BTreeMap<String, Vec<(String, String)>> {
    let root = root();
    let mut crates = BTreeMap::new();
    for entry in std::fs::read_dir(root.join("crates")).expect("crates/").flatten() {
        let mut files = Vec::new();
        rust_files(&entry.path().join("src"), &mut files);
        let files = files
            .into_iter()
            .map(|f| {
                let text = std::fs::read_to_string(&f).expect("source");
                (f.strip_prefix(&root).unwrap_or(&f).to_string_lossy().into_owned(), text)
            })
            .collect();
        crates.insert(entry.file_name().to_string_lossy().into_owned(), files);
    }
    crates
}

#[test]
fn no_source_file_is_over_900_lines() {
    let long: Vec<String> = crate_sources()
        .values()
        .flatten()
        .filter(|(_, text)| text.lines().count() > MAX_FILE_LINES)
        .map(|(path, text)| format!("{path}: {} lines", text.lines().count()))
        .collect();
    assert!(long.is_empty(), "files over {MAX_FILE_LINES} lines: {long:#?}");
}

/// `(name, lines)` of every function with a body in `text`: from its `fn` line to the
/// closing brace at the same indentation (rustfmt's layout).
fn functions(text: &str) -> Vec<(String, usize)> {
    let start = Regex::new(r"^(\s*)(?:pub(?:\([^)]*\))?\s+)?(?:const\s+)?(?:async\s+)?fn\s+(\w+)")
        .expect("regex");
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(m) = start.captures(line) else { continue };
        let indent = &m[1];
        // The signature ends at the first line ending in `{` (a body) or `;` (none).
        let Some(open) = lines[i..].iter().position(|l| {
            let l = l.trim_end();
            l.ends_with('{') || l.ends_with(';')
        }) else {
            continue;
        };
        if lines[i + open].trim_end().ends_with(';') {
            continue;
        }
        let close = format!("{indent}}}");
        if let Some(end) = lines[i + open..].iter().position(|l| l.trim_end() == close) {
            out.push((m[2].to_owned(), open + end + 1));
        }
    }
    out
}

#[test]
fn no_function_is_over_80_lines() {
    let mut long = Vec::new();
    for (path, text) in crate_sources().values().flatten() {
        for (name, lines) in functions(text) {
            let id = format!("{path}: {name}");
            if lines > MAX_FN_LINES && !DATA_TABLES.contains(&id.as_str()) {
                long.push(format!("{id} ({lines} lines)"));
            }
        }
    }
    assert!(long.is_empty(), "functions over {MAX_FN_LINES} lines: {long:#?}");
}

/// A module's path in its crate (`["oci", "manifests"]`) from its file's path under `src`.
fn module_of(file: &str) -> Vec<String> {
    let rel = file.split_once("/src/").map_or(file, |(_, r)| r).trim_end_matches(".rs");
    let mut parts: Vec<String> = rel.split('/').map(str::to_owned).collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib" | "main")) {
        parts.pop();
    }
    parts
}

/// The module paths a file names through `crate::…` and `super::…`.
fn named_paths(module: &[String], text: &str) -> Vec<Vec<String>> {
    let ident = r"[A-Za-z_][A-Za-z0-9_]*";
    let grouped = Regex::new(r"\bcrate::\{([^}]*)\}").expect("regex");
    let plain = Regex::new(&format!(r"\bcrate((?:::{ident})+)")).expect("regex");
    let relative = Regex::new(&format!(r"\b((?:super::)+)({ident}(?:::{ident})*)")).expect("regex");
    let code: String =
        text.lines().map(|l| l.split("//").next().unwrap_or("")).collect::<Vec<_>>().join("\n");
    let mut paths = Vec::new();
    for m in grouped.captures_iter(&code) {
        for item in m[1].split(',') {
            let item = item.split(" as ").next().unwrap_or("");
            let segs: Vec<String> = item.split("::").map(|s| s.trim().to_owned()).collect();
            if segs.first().is_some_and(|s| !s.is_empty()) {
                paths.push(segs);
            }
        }
    }
    for m in plain.captures_iter(&code) {
        paths.push(m[1].split("::").skip(1).map(str::to_owned).collect());
    }
    for m in relative.captures_iter(&code) {
        let up = m[1].matches("super::").count();
        let mut path = module[..module.len().saturating_sub(up)].to_vec();
        path.extend(m[2].split("::").map(str::to_owned));
        paths.push(path);
    }
    paths
}

/// Strongly connected sets of more than one node.
fn circles(graph: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>) -> Vec<Vec<Vec<String>>> {
    let nodes: Vec<&Vec<String>> = graph.keys().collect();
    let reaches = |from: &Vec<String>, to: &Vec<String>| {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from];
        while let Some(n) = todo.pop() {
            for next in graph.get(n).into_iter().flatten() {
                if next == to {
                    return true;
                }
                if seen.insert(next) {
                    todo.push(next);
                }
            }
        }
        false
    };
    let mut found: Vec<Vec<Vec<String>>> = Vec::new();
    for a in &nodes {
        if found.iter().any(|c| c.contains(a)) || !reaches(a, a) {
            continue;
        }
        let circle = nodes.iter().filter(|b| reaches(a, b) && reaches(b, a)).map(|b| (*b).clone());
        found.push(circle.collect());
    }
    found
}

#[test]
fn no_two_modules_use_each_other() {
    // Between the subtrees below one module, uses point one way: an item one module uses
    // from a sibling's subtree never comes back (`a` → `b` → `a`, through any path).
    let mut report = Vec::new();
    for (krate, files) in crate_sources() {
        let modules: BTreeSet<Vec<String>> = files.iter().map(|(f, _)| module_of(f)).collect();
        let mut graph: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
        for (file, text) in &files {
            let from = module_of(file);
            for path in named_paths(&from, text) {
                let Some(to) = (0..=path.len())
                    .rev()
                    .map(|k| path[..k].to_vec())
                    .find(|p| modules.contains(p))
                else {
                    continue;
                };
                if from.starts_with(&to) || to.starts_with(&from) {
                    continue; // a module and its own ancestors or descendants
                }
                let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
                graph.entry(from[..=common].to_vec()).or_default().insert(to[..=common].to_vec());
            }
        }
        for circle in circles(&graph) {
            let names: Vec<String> = circle.iter().map(|m| m.join("::")).collect();
            report.push(format!("{krate}: {}", names.join(" <-> ")));
        }
    }
    assert!(report.is_empty(), "modules that use each other: {report:#?}");
}

#[test]
fn a_dependency_two_crates_share_is_declared_once() {
    let root = root();
    let mut users: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let manifests = std::fs::read_dir(root.join("crates"))
        .expect("crates/")
        .flatten()
        .map(|e| e.path().join("Cargo.toml"))
        .chain([root.join("Cargo.toml")]);
    for manifest in manifests {
        let text = std::fs::read_to_string(&manifest).expect("Cargo.toml");
        let doc: toml::Table = text.parse().expect("Cargo.toml parses");
        let name =
            manifest.parent().and_then(Path::file_name).map(|n| n.to_string_lossy().into_owned());
        for section in ["dependencies", "dev-dependencies", "build-dependencies"] {
            let Some(deps) = doc.get(section).and_then(|d| d.as_table()) else { continue };
            for (dep, spec) in deps {
                let inherited = spec.get("workspace").and_then(|w| w.as_bool()) == Some(true);
                if !inherited {
                    users.entry(dep.clone()).or_default().push(name.clone().unwrap_or_default());
                }
            }
        }
    }
    let shared: Vec<String> = users
        .into_iter()
        .filter(|(_, crates)| crates.len() > 1)
        .map(|(dep, crates)| format!("{dep}: {crates:?}"))
        .collect();
    assert!(shared.is_empty(), "declared with a version in several manifests: {shared:#?}");
}
