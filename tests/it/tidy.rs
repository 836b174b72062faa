//! Checks that keep the docs and the manifest honest, in the spirit of rust-analyzer's `tidy`:
//! every code name ARCHITECTURE.md mentions exists in the source, and the `rust-version`
//! the workspace declares is one every dependency builds with.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every file a code name may be defined or named in: sources, migrations, scripts, manifests.
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if path.is_dir() {
            if !name.starts_with('.') && name != "target" && name != "fixtures" {
                sources(&path, out);
            }
        } else if ["rs", "sql", "toml", "sh", "py"]
            .iter()
            .any(|ext| name.ends_with(&format!(".{ext}")))
        {
            out.push(path);
        }
    }
}

/// The inline code spans of a Markdown text, fenced blocks left out.
fn code_spans(markdown: &str) -> Vec<String> {
    let mut spans = Vec::new();
    let mut fenced = false;
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        let mut parts = line.split('`');
        parts.next();
        while let (Some(code), Some(_)) = (parts.next(), parts.next()) {
            spans.push(code.to_owned());
        }
    }
    spans
}

fn is_ident(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Whether `word` occurs in `text` as a whole identifier.
fn has_word(text: &str, word: &str) -> bool {
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    text.match_indices(word).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + word.len()..].chars().next();
        !before.is_some_and(ident) && !after.is_some_and(ident)
    })
}

#[test]
fn every_code_name_in_architecture_md_exists() {
    let root = root();
    let doc = std::fs::read_to_string(root.join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    let mut files = Vec::new();
    for dir in ["crates", "tests", "scripts", "bench", ".ci"] {
        sources(&root.join(dir), &mut files);
    }
    files.push(root.join("Cargo.toml"));
    let corpus: String = files.iter().filter_map(|f| std::fs::read_to_string(f).ok()).collect();
    let file_names: Vec<String> = files
        .iter()
        .map(|f| f.strip_prefix(&root).unwrap_or(f).to_string_lossy().into_owned())
        .collect();

    let mut missing = Vec::new();
    for span in code_spans(&doc) {
        let name = span.trim_end_matches("()");
        let in_tree =
            ["crates/", "tests/", "scripts/", "bench/", "src/"].iter().any(|d| name.starts_with(d));
        let source_file = [".rs", ".sql", ".sh", ".py"].iter().any(|e| name.ends_with(e));
        if (in_tree || source_file) && !name.contains(' ') {
            // A file or folder: it is somewhere in the tree under that (trailing) path.
            let trimmed = name.trim_end_matches('/');
            let found = root.join(trimmed).exists()
                || file_names
                    .iter()
                    .any(|f| f.ends_with(trimmed) || f.contains(&format!("{trimmed}/")));
            if !found {
                missing.push(span);
            }
        } else if name.split("::").all(is_ident)
            && !name
                .split("::")
                .all(|seg| has_word(&corpus, seg) || has_word(&corpus, &seg.replace('_', "-")))
        {
            missing.push(span);
        }
    }
    assert!(missing.is_empty(), "ARCHITECTURE.md names code that doesn't exist: {missing:?}");
}

/// Parses "1.94" or "1.94.0" into comparable parts.
fn version(s: &str) -> [u64; 3] {
    let mut parts = s.split('.').map(|p| p.parse().unwrap_or(0));
    [(); 3].map(|()| parts.next().unwrap_or(0))
}

#[test]
fn rust_version_is_one_every_dependency_builds_with() {
    let out = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--locked", "--offline"])
        .current_dir(root())
        .output()
        .expect("cargo metadata");
    assert!(out.status.success(), "cargo metadata: {}", String::from_utf8_lossy(&out.stderr));
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("metadata JSON");
    let packages = meta["packages"].as_array().expect("packages");
    let members: Vec<&str> = meta["workspace_members"]
        .as_array()
        .expect("members")
        .iter()
        .filter_map(|m| m.as_str())
        .collect();
    let declared = packages
        .iter()
        .find(|p| p["name"] == "wharf")
        .and_then(|p| p["rust_version"].as_str())
        .expect("the workspace declares a rust-version");
    let needed = packages
        .iter()
        .filter(|p| !members.contains(&p["id"].as_str().unwrap_or_default()))
        .filter_map(|p| {
            Some((version(p["rust_version"].as_str()?), p["name"].as_str()?.to_owned()))
        })
        .max()
        .expect("dependencies declare rust-versions");
    assert!(
        version(declared) >= needed.0,
        "rust-version = {declared}, but {} needs {:?}",
        needed.1,
        needed.0
    );
    let toolchain = Command::new("rustc").arg("--version").output().expect("rustc --version");
    let toolchain = String::from_utf8_lossy(&toolchain.stdout);
    let toolchain = toolchain.split_whitespace().nth(1).unwrap_or_default();
    assert!(
        version(toolchain) >= version(declared),
        "rustc {toolchain} is older than rust-version {declared}"
    );
}
