//! The house rules, checked: ARCHITECTURE.md's "Layers" list says which module of `src/` may use
//! which, bottom to top, and which module alone may use each heavy outside crate. This test
//! reads every `crate::…` path in `src/` (outside comments) and fails on an arrow that points
//! up or sideways, and on an owned crate used outside its owner, so a new upward import is
//! caught in review rather than found later by drawing the graph. (rust-analyzer's tidy tests
//! keep its architecture the same way.)

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The "Layers" section of ARCHITECTURE.md: numbered lines `N. a, b, c — why`, bottom first,
/// and `- crate: owner, owner` lines for the owned outside crates.
struct Rules {
    layer_of: BTreeMap<String, usize>,
    owners: Vec<(String, Vec<String>)>,
    /// Names that src/lib.rs re-exports (`crate::Repo`), by the module they come from.
    reexports: BTreeMap<String, String>,
}

fn rules() -> Rules {
    let text =
        fs::read_to_string(Path::new(ROOT).join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    let section = text
        .split("\n## ")
        .find(|s| s.starts_with("Layers"))
        .expect("ARCHITECTURE.md has a '## Layers' section");
    let mut layer_of = BTreeMap::new();
    let mut owners = Vec::new();
    for line in section.lines() {
        let line = line.trim();
        if let Some((n, rest)) = line.split_once(". ") {
            let Ok(n) = n.parse::<usize>() else { continue };
            let names = rest.split(" — ").next().unwrap_or(rest);
            for m in names.split(',') {
                let m = m.trim().trim_matches('`');
                assert!(
                    layer_of.insert(m.to_string(), n).is_none(),
                    "{m} is listed twice in Layers"
                );
            }
        } else if let Some(rest) = line.strip_prefix("- crate `") {
            // - crate `rusqlite`: `catalog`
            let (krate, who) = rest.split_once("`:").expect("- crate `NAME`: owners");
            let who = who
                .split(',')
                .map(|w| w.trim().trim_matches('`').to_string())
                .collect();
            owners.push((krate.to_string(), who));
        }
    }
    assert!(
        layer_of.len() > 10,
        "the Layers list was not read: {layer_of:?}"
    );
    assert!(!owners.is_empty(), "the owned crates were not read");
    Rules {
        layer_of,
        owners,
        reexports: reexports(),
    }
}

/// `pub use repo::Repo;` and `pub use config::{Config, Layout};` in src/lib.rs.
fn reexports() -> BTreeMap<String, String> {
    let lib = fs::read_to_string(Path::new(ROOT).join("src/lib.rs")).expect("src/lib.rs");
    let mut out = BTreeMap::new();
    for line in code(&lib).lines() {
        let Some(path) = line.trim().strip_prefix("pub use ") else {
            continue;
        };
        let path = path.trim_end_matches(';');
        let module = ident(path).to_string();
        let names = match path.split_once('{') {
            Some((_, group)) => group.trim_end_matches('}').split(',').collect(),
            None => vec![path.rsplit("::").next().unwrap_or(path)],
        };
        for n in names {
            out.insert(n.trim().to_string(), module.clone());
        }
    }
    out
}

fn rs_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in fs::read_dir(dir).expect("read src/") {
        let p = e.expect("dir entry").path();
        if p.is_dir() {
            rs_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The code of a file without its comments (line and block), so that prose naming a module is
/// not an import. Strings are kept; none of ours spells a `crate::` path.
fn code(src: &str) -> String {
    let mut out = String::with_capacity(src.len());
    let b = src.as_bytes();
    let (mut i, mut depth) = (0, 0usize);
    while i < b.len() {
        if depth == 0 && b[i..].starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i..].starts_with(b"/*") {
            depth += 1;
            i += 2;
        } else if depth > 0 && b[i..].starts_with(b"*/") {
            depth -= 1;
            i += 2;
        } else {
            if depth == 0 {
                out.push(b[i] as char);
            }
            i += 1;
        }
    }
    out
}

fn ident(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

/// The top-level modules a piece of code names through `crate::`, including each first name
/// inside `crate::{a::x, b}`.
fn crate_refs(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        let before = rest[..at].chars().last();
        rest = &rest[at + "crate::".len()..];
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$') {
            continue; // `$crate::`, `mycrate::`
        }
        if let Some(group) = rest.strip_prefix('{') {
            let (mut depth, mut start) = (0usize, 0usize);
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => {
                        out.push(ident(group[start..].trim_start()).to_string());
                        break;
                    }
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        out.push(ident(group[start..].trim_start()).to_string());
                        start = i + 1;
                    }
                    _ => {}
                }
            }
        } else {
            out.push(ident(rest).to_string());
        }
    }
    out.retain(|m| !m.is_empty() && m != "self");
    out
}

/// The top-level module a file of `src/` belongs to: `src/fetch/lazy.rs` → `fetch`.
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?;
    let m = first.strip_suffix(".rs").unwrap_or(first);
    (m != "lib").then(|| m.to_string())
}

/// Every arrow that breaks the rules, as `file: from -> to (why)`.
fn violations(rules: &Rules, files: &[(String, String, String)]) -> Vec<String> {
    let mut bad = Vec::new();
    for (path, module, code) in files {
        let Some(&mine) = rules.layer_of.get(module) else {
            bad.push(format!(
                "{path}: module `{module}` is not in ARCHITECTURE.md's Layers"
            ));
            continue;
        };
        let mut targets: Vec<String> = crate_refs(code)
            .into_iter()
            .map(|m| rules.reexports.get(&m).cloned().unwrap_or(m))
            .collect();
        targets.sort();
        targets.dedup();
        for to in targets {
            if &to == module {
                continue;
            }
            match rules.layer_of.get(&to) {
                None => bad.push(format!("{path}: `{to}` is not in ARCHITECTURE.md's Layers")),
                Some(&theirs) if theirs >= mine => bad.push(format!(
                    "{path}: {module} (layer {mine}) -> {to} (layer {theirs}) points {}",
                    if theirs == mine { "sideways" } else { "up" }
                )),
                Some(_) => {}
            }
        }
        for (krate, who) in &rules.owners {
            let used = uses_word(code, krate);
            if used && !who.contains(module) {
                bad.push(format!("{path}: uses {krate}, which only {who:?} may use"));
            }
        }
    }
    bad
}

/// Whether `word` stands in `code` as a whole identifier (`librqbit::x`, `use librqbit as r`,
/// but not `librqbit_core`).
fn uses_word(code: &str, word: &str) -> bool {
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    code.match_indices(word).any(|(i, _)| {
        code[..i].chars().last().is_none_or(|c| !is_ident(c))
            && code[i + word.len()..]
                .chars()
                .next()
                .is_none_or(|c| !is_ident(c))
    })
}

fn source_files() -> Vec<(String, String, String)> {
    let src = Path::new(ROOT).join("src");
    let mut paths = Vec::new();
    rs_files(&src, &mut paths);
    paths.sort();
    paths
        .iter()
        .filter_map(|p| {
            let module = module_of(&src, p)?;
            let text = fs::read_to_string(p).expect("read source");
            let rel = p.strip_prefix(ROOT).unwrap_or(p).display().to_string();
            Some((rel, module, code(&text)))
        })
        .collect()
}

#[test]
fn layers_point_only_down() {
    let rules = rules();
    let bad = violations(&rules, &source_files());
    assert!(
        bad.is_empty(),
        "imports against ARCHITECTURE.md's Layers:\n  {}",
        bad.join("\n  ")
    );
}

#[test]
fn every_module_of_lib_rs_is_in_the_layers() {
    let rules = rules();
    let lib = fs::read_to_string(Path::new(ROOT).join("src/lib.rs")).expect("src/lib.rs");
    for line in code(&lib).lines() {
        if let Some(m) = line
            .trim()
            .strip_prefix("pub mod ")
            .or(line.trim().strip_prefix("mod "))
        {
            let m = m.trim_end_matches(';').trim();
            assert!(
                rules.layer_of.contains_key(m),
                "src/lib.rs declares `{m}`, which ARCHITECTURE.md's Layers does not place"
            );
        }
    }
}

/// The checker itself catches what it is for: an upward import, one hidden in a `use` group,
/// a sideways one, and an owned crate outside its owner — but not prose in a comment.
#[test]
fn the_checker_catches_a_bad_import() {
    let rules = rules();
    let bottom = rules
        .layer_of
        .iter()
        .min_by_key(|(_, &n)| n)
        .map(|(m, _)| m.clone())
        .expect("a bottom layer");
    let top = rules
        .layer_of
        .iter()
        .max_by_key(|(_, &n)| n)
        .map(|(m, _)| m.clone())
        .expect("a top layer");
    let case = |text: &str| violations(&rules, &[("src/x.rs".into(), bottom.clone(), code(text))]);
    assert_eq!(case(&format!("use crate::{top}::Thing;")).len(), 1);
    // One violation per module pair, however many names a group takes from it.
    assert_eq!(
        case(&format!("use crate::{{{top}::x, {top}::y}};")).len(),
        1
    );
    assert_eq!(case(&format!("fn f() {{ crate::{top}::go() }}")).len(), 1);
    assert!(case(&format!(
        "/// see `crate::{top}`\n// crate::{top}\nfn f() {{}}"
    ))
    .is_empty());
    let (krate, _) = &rules.owners[0];
    assert_eq!(case(&format!("use {krate}::Connection;")).len(), 1);
    assert_eq!(crate_refs("use crate::{a::{b, c}, d};"), ["a", "d"]);
}
