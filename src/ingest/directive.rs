//! GNU upload directives (the verified body of `FILE.directive.asc`), versions 1.1 and 1.2.
//!
//! ```text
//! version: 1.2
//! directory: gnu/hello
//! filename: hello-2.12.tar.gz
//! replace: true
//! symlink: hello-2.12.tar.gz hello-latest.tar.gz
//! comment: free text
//! ```
//! Lines are `key: value` in any order; `symlink`, `rmsymlink` and `archive` run in the order
//! given. Every path is checked here, before anything runs.

use crate::paths;
use crate::reason::{reject, Reason, Rejection};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directive {
    pub version: String,
    pub directory: String,
    /// Set for a triplet; absent for a standalone directive.
    pub filename: Option<String>,
    /// Whether an existing file may be replaced (1.1 always replaces silently).
    pub replace: bool,
    pub actions: Vec<Action>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// `symlink: TARGET LINK`, like `ln -sf TARGET LINK` inside the directory.
    Symlink { target: String, link: String },
    /// `rmsymlink: LINK`
    RmSymlink { link: String },
    /// `archive: FILE`: take FILE (and FILE.sig) offline, keeping them.
    Archive { file: String },
}

pub fn parse(body: &str) -> Result<Directive, Rejection> {
    let (mut version, mut directory, mut filename, mut replace) = (None, None, None, None);
    let mut actions = Vec::new();
    for raw in body.lines() {
        let line = raw.trim();
        if line.is_empty() {
            continue;
        }
        let Some((key, value)) = line.split_once(':') else {
            return reject(
                Reason::BadDirective,
                format!("line without 'key: value': {line:?}"),
            );
        };
        let (key, value) = (key.trim().to_ascii_lowercase(), value.trim());
        let once = |slot: &mut Option<String>| {
            if slot.replace(value.to_string()).is_some() {
                return reject(Reason::BadDirective, format!("'{key}:' given twice"));
            }
            Ok(())
        };
        match key.as_str() {
            "version" => once(&mut version)?,
            "directory" => once(&mut directory)?,
            "filename" => once(&mut filename)?,
            "replace" => once(&mut replace)?,
            "comment" => {}
            "symlink" => {
                let mut parts = value.split_whitespace();
                match (parts.next(), parts.next(), parts.next()) {
                    (Some(t), Some(l), None) => actions.push(Action::Symlink {
                        target: t.into(),
                        link: l.into(),
                    }),
                    _ => {
                        return reject(
                            Reason::BadDirective,
                            format!("'symlink:' needs TARGET LINK, got {value:?}"),
                        )
                    }
                }
            }
            "rmsymlink" => actions.push(Action::RmSymlink {
                link: one_word(&key, value)?,
            }),
            "archive" => actions.push(Action::Archive {
                file: one_word(&key, value)?,
            }),
            _ => return reject(Reason::BadDirective, format!("unknown directive '{key}:'")),
        }
    }

    let version =
        version.ok_or_else(|| Rejection::new(Reason::BadDirective, "missing 'version:'"))?;
    let replace = match (version.as_str(), replace.as_deref()) {
        ("1.1", None) => true,
        ("1.1", Some(_)) => {
            return reject(
                Reason::BadDirective,
                "'replace:' needs directive version 1.2",
            )
        }
        ("1.2", None | Some("false")) => false,
        ("1.2", Some("true")) => true,
        ("1.2", Some(v)) => {
            return reject(
                Reason::BadDirective,
                format!("'replace:' must be true or false, not {v:?}"),
            )
        }
        (v, _) => {
            return reject(
                Reason::BadDirective,
                format!("unsupported directive version {v:?} (1.1 and 1.2 are)"),
            )
        }
    };
    let directory =
        directory.ok_or_else(|| Rejection::new(Reason::BadDirective, "missing 'directory:'"))?;
    let directory = directory.trim_end_matches('/').to_string();
    paths::check_relative(&directory).map_err(|why| {
        Rejection::new(
            Reason::UnsafePath,
            format!("directory {directory:?}: {why}"),
        )
    })?;
    if let Some(f) = &filename {
        paths::check_filename(f)
            .map_err(|why| Rejection::new(Reason::UnsafePath, format!("filename {f:?}: {why}")))?;
    }
    for a in &actions {
        check_action(&directory, a)?;
    }
    if filename.is_none() && actions.is_empty() {
        return reject(
            Reason::BadDirective,
            "standalone directive with nothing to do (no symlink, rmsymlink or archive)",
        );
    }
    Ok(Directive {
        version,
        directory,
        filename,
        replace,
        actions,
    })
}

fn one_word(key: &str, value: &str) -> Result<String, Rejection> {
    match value.split_whitespace().collect::<Vec<_>>()[..] {
        [w] => Ok(w.to_string()),
        _ => reject(
            Reason::BadDirective,
            format!("'{key}:' takes one name, got {value:?}"),
        ),
    }
}

/// Link names and archived files stay inside the directory; link targets may point anywhere
/// inside the repository but not out of it.
fn check_action(directory: &str, a: &Action) -> Result<(), Rejection> {
    let unsafe_path = |what: &str, p: &str, why: String| {
        Rejection::new(Reason::UnsafePath, format!("{what} {p:?}: {why}"))
    };
    match a {
        Action::Symlink { target, link } => {
            paths::check_relative(link).map_err(|w| unsafe_path("symlink", link, w))?;
            let link_dir = paths::join(directory, paths::parent(link));
            if paths::resolve_link(&link_dir, target).is_none() {
                return Err(unsafe_path(
                    "symlink target",
                    target,
                    "points out of the repository".into(),
                ));
            }
        }
        Action::RmSymlink { link } => {
            paths::check_relative(link).map_err(|w| unsafe_path("rmsymlink", link, w))?
        }
        Action::Archive { file } => {
            paths::check_relative(file).map_err(|w| unsafe_path("archive", file, w))?
        }
    }
    Ok(())
}

/// Cheap look at an *unverified* directive to learn whether it belongs to a triplet (has a
/// `filename:` line), so the spool knows what to wait for. Never used for decisions.
pub fn peek_has_filename(raw: &[u8]) -> bool {
    String::from_utf8_lossy(raw)
        .lines()
        .any(|l| l.trim_start().to_ascii_lowercase().starts_with("filename:"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gnupload_triplet() {
        let d = parse("version: 1.2\ndirectory: gnu/hello\ncomment: gnupload v. 2024\nfilename: hello-1.0.tar.gz\nsymlink: hello-1.0.tar.gz hello-latest.tar.gz\n").unwrap();
        assert_eq!(d.directory, "gnu/hello");
        assert_eq!(d.filename.as_deref(), Some("hello-1.0.tar.gz"));
        assert!(!d.replace);
        assert_eq!(d.actions.len(), 1);
    }

    #[test]
    fn versions() {
        assert!(
            parse("version: 1.1\ndirectory: a\nfilename: f\n")
                .unwrap()
                .replace
        );
        assert_eq!(
            parse("version: 1.1\ndirectory: a\nfilename: f\nreplace: true\n")
                .unwrap_err()
                .reason,
            Reason::BadDirective
        );
        assert_eq!(
            parse("version: 1.0\ndirectory: a\nfilename: f\n")
                .unwrap_err()
                .reason,
            Reason::BadDirective
        );
        assert_eq!(
            parse("directory: a\nfilename: f\n").unwrap_err().reason,
            Reason::BadDirective
        );
    }

    #[test]
    fn unsafe_paths() {
        for d in ["../etc", "/etc", "a//b", "a/./b"] {
            let r = parse(&format!("version: 1.2\ndirectory: {d}\nfilename: f\n")).unwrap_err();
            assert_eq!(r.reason, Reason::UnsafePath, "{d}");
        }
        let r = parse("version: 1.2\ndirectory: a\nsymlink: ../../etc/passwd x\n").unwrap_err();
        assert_eq!(r.reason, Reason::UnsafePath);
        assert!(parse("version: 1.2\ndirectory: a/b\nsymlink: ../c/f x\n").is_ok());
    }

    #[test]
    fn malformed() {
        for body in [
            "version: 1.2\ndirectory: a\nfilename: f\nfilename: g\n",
            "version: 1.2\ndirectory: a\nbogus: 1\n",
            "version: 1.2\ndirectory: a\n",
            "version: 1.2\ndirectory: a\nsymlink: onlyone\n",
            "just text\n",
        ] {
            assert_eq!(
                parse(body).unwrap_err().reason,
                Reason::BadDirective,
                "{body}"
            );
        }
    }
}
