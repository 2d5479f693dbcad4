//! Path rules for untrusted names: directives, spool paths and archive entries all go
//! through here, so there is one definition of "stays inside the tree".

/// Checks a relative path below the repository: not absolute, no `.` or `..`, no empty
/// components, no control characters. Returns why not.
pub fn check_relative(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("empty path".into());
    }
    if path.starts_with('/') {
        return Err("absolute path".into());
    }
    if path.chars().any(|c| c.is_control()) {
        return Err("control character in path".into());
    }
    for part in path.split('/') {
        match part {
            "" => return Err("empty path component".into()),
            "." | ".." => return Err(format!("'{part}' component")),
            _ => {}
        }
    }
    Ok(())
}

/// A single file name: a safe relative path of one component.
pub fn check_filename(name: &str) -> Result<(), String> {
    check_relative(name)?;
    if name.contains('/') {
        return Err("file name contains '/'".into());
    }
    Ok(())
}

/// Whether `dir` is `granted` or below it; the empty grant covers everything.
pub fn is_within(dir: &str, granted: &str) -> bool {
    granted.is_empty()
        || dir == granted
        || (dir.len() > granted.len()
            && dir.starts_with(granted)
            && dir.as_bytes()[granted.len()] == b'/')
}

/// A directory grant as given (`--dir`), as stored: `/` (or empty) grants everything and is
/// stored as ""; anything else must be a safe relative directory, stored without leading or
/// trailing slashes. Returns why not.
pub fn grant(directory: &str) -> Result<String, String> {
    let trimmed = directory.trim_matches('/');
    if trimmed.is_empty() {
        return Ok(String::new());
    }
    check_relative(trimmed)?;
    Ok(trimmed.to_string())
}

/// Joins a directory and a relative name (the repository root is the empty directory).
pub fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

/// Lexically resolves a relative symlink `target` found in directory `dir` (both relative to
/// one tree). Returns the resolved path, or None if it is absolute or climbs out of the tree.
pub fn resolve_link(dir: &str, target: &str) -> Option<String> {
    if target.starts_with('/') || target.is_empty() {
        return None;
    }
    let mut parts: Vec<&str> = dir.split('/').filter(|p| !p.is_empty()).collect();
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            p => parts.push(p),
        }
    }
    Some(parts.join("/"))
}

/// Normalizes an archive member name: strips leading `./` and trailing `/`. Returns None for
/// the archive root itself, Err for names that escape the tree.
pub fn normalize_entry(name: &str) -> Result<Option<String>, String> {
    if name.starts_with('/') {
        return Err(format!("absolute path {name:?}"));
    }
    let mut parts = Vec::new();
    for part in name.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(format!("'..' in {name:?}")),
            p if p.chars().any(|c| c.is_control()) => {
                return Err(format!("control character in {name:?}"))
            }
            p => parts.push(p),
        }
    }
    Ok(if parts.is_empty() {
        None
    } else {
        Some(parts.join("/"))
    })
}

/// The directory part of a relative path ("" for top-level names).
pub fn parent(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(d, _)| d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths() {
        assert!(check_relative("gnu/hello").is_ok());
        for bad in ["", "/etc", "a/../b", "a//b", "./a", "a/", "a\nb", ".."] {
            assert!(check_relative(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn grants() {
        assert!(is_within("foo", ""));
        assert!(is_within("foo", "foo"));
        assert!(is_within("foo/bar", "foo"));
        assert!(!is_within("foobar", "foo"));
        assert!(!is_within("fo", "foo"));
    }

    #[test]
    fn links() {
        assert_eq!(resolve_link("a/b", "../c").as_deref(), Some("a/c"));
        assert_eq!(resolve_link("a", "../c").as_deref(), Some("c"));
        assert_eq!(resolve_link("a", "../../c"), None);
        assert_eq!(resolve_link("", "/etc/passwd"), None);
        assert_eq!(resolve_link("", "x/./y").as_deref(), Some("x/y"));
    }

    #[test]
    fn entries() {
        assert_eq!(normalize_entry("./a/b/").unwrap().as_deref(), Some("a/b"));
        assert_eq!(normalize_entry("./").unwrap(), None);
        assert!(normalize_entry("../x").is_err());
        assert!(normalize_entry("a/../../x").is_err());
        assert!(normalize_entry("/etc/passwd").is_err());
    }
}
