//! Rooms of a readable size: no source file of `src/` or the binaries over 800 lines unless its
//! module doc says why it is one piece (a sentence starting "One piece:"), and no function
//! over 120 lines. Long files and functions are where catch-alls start; this keeps the next
//! change from growing one silently. The function scan matches braces on rustfmt'd code,
//! which is what `cargo fmt --check` guarantees here.

use std::fs;
use std::path::{Path, PathBuf};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const MAX_FILE_LINES: usize = 800;
const MAX_FN_LINES: usize = 120;

fn rs_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in fs::read_dir(dir).expect("read dir") {
        let p = e.expect("dir entry").path();
        if p.is_dir() {
            rs_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

fn sources() -> Vec<(String, String)> {
    let mut paths = Vec::new();
    for d in ["src", "repofs", "repofsd"] {
        rs_files(&Path::new(ROOT).join(d), &mut paths);
    }
    paths.sort();
    paths
        .into_iter()
        .map(|p| {
            let text = fs::read_to_string(&p).expect("read source");
            let rel = p.strip_prefix(ROOT).unwrap_or(&p).display().to_string();
            (rel, text)
        })
        .collect()
}

/// `name` and length in lines of every `fn` with a body, by its indentation: rustfmt closes a
/// body with `}` at the indentation of the line that opened it.
fn functions(text: &str) -> Vec<(String, usize, usize)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        let sig = trimmed
            .trim_start_matches("pub ")
            .trim_start_matches("pub(crate) ")
            .trim_start_matches("pub(super) ")
            .trim_start_matches("async ")
            .trim_start_matches("unsafe ")
            .trim_start_matches("const ");
        let Some(rest) = sig.strip_prefix("fn ") else {
            i += 1;
            continue;
        };
        let name: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        // The signature ends at the first line ending in `{` (a body) or `;` (none).
        let mut j = i;
        while j < lines.len() && !lines[j].ends_with('{') && !lines[j].ends_with(';') {
            j += 1;
        }
        if j >= lines.len() || lines[j].ends_with(';') {
            i = j + 1;
            continue;
        }
        let close = " ".repeat(indent) + "}";
        let end = (j + 1..lines.len())
            .find(|&k| lines[k] == close)
            .unwrap_or(lines.len() - 1);
        out.push((name, i + 1, end - i + 1));
        i = j + 1;
    }
    out
}

#[test]
fn no_file_is_a_catch_all() {
    let mut bad = Vec::new();
    for (path, text) in sources() {
        let n = text.lines().count();
        let doc: String = text
            .lines()
            .take_while(|l| l.starts_with("//!"))
            .collect::<Vec<_>>()
            .join(" ");
        if n > MAX_FILE_LINES && !doc.contains("One piece:") {
            bad.push(format!(
                "{path}: {n} lines and no \"One piece:\" sentence at its top"
            ));
        }
    }
    assert!(bad.is_empty(), "\n  {}", bad.join("\n  "));
}

#[test]
fn no_function_is_a_catch_all() {
    let mut bad = Vec::new();
    for (path, text) in sources() {
        for (name, line, n) in functions(&text) {
            if n > MAX_FN_LINES {
                bad.push(format!("{path}:{line}: fn {name} is {n} lines"));
            }
        }
    }
    assert!(bad.is_empty(), "\n  {}", bad.join("\n  "));
}

/// The scan itself: it measures a body, skips declarations, and sees nested functions.
#[test]
fn the_function_scan_measures_bodies() {
    let text = "fn a() {\n    1;\n}\n\ntrait T {\n    fn decl(&self);\n    fn b(&self) {\n        let x = {\n            2\n        };\n    }\n}\n";
    assert_eq!(
        functions(text),
        vec![("a".to_string(), 1, 3), ("b".to_string(), 7, 5)]
    );
}
