//! What the target root already has from its own package manager: dpkg's status database
//! (`var/lib/dpkg/status`) and pacman's local database (`var/lib/pacman/local/*/desc`).
//!
//! apt and pacman leave a dependency alone when an installed package meets it; so does
//! `repofs install --into ROOT` (and `repofs deps --into ROOT`). Without this, a `.deb` built
//! for Debian could never be installed on Debian: its `libc6` dependency is not in our
//! repository, but it is on the machine. Only what meets dependencies is read (name, version,
//! provides); conflicts with installed packages stay the package manager's business.

use std::fs;
use std::io;
use std::path::Path;

use serde_json::{Map, Value};

use super::relations::{self, Atom, Eco, Provide};
use crate::archive::meta::deb822;

/// One package the root's own package manager installed.
#[derive(Debug, Clone)]
pub struct SystemPkg {
    pub eco: Eco,
    pub name: String,
    pub version: String,
    pub provides: Vec<Provide>,
}

impl SystemPkg {
    /// Whether it meets `atom` of `eco`, by its name or by what it provides.
    pub fn answers(&self, eco: Eco, atom: &Atom) -> bool {
        self.eco == eco
            && (self.name == atom.name && atom.req.matches(eco.scheme(), &self.version)
                || self.provides.iter().any(|p| p.meets(eco.scheme(), atom)))
    }

    pub fn label(&self) -> String {
        format!("{} {} (installed)", self.name, self.version)
    }
}

/// The installed packages of `root` (none when it has neither database). An unreadable
/// database is an error, not an empty one: a missing dependency must not go unnoticed.
pub fn read(root: &Path) -> io::Result<Vec<SystemPkg>> {
    let mut out = Vec::new();
    let status = root.join("var/lib/dpkg/status");
    match fs::read_to_string(&status) {
        Ok(text) => out.extend(dpkg_status(&text)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(io::Error::new(
                e.kind(),
                format!("{}: {e}", status.display()),
            ))
        }
    }
    let local = root.join("var/lib/pacman/local");
    match fs::read_dir(&local) {
        Ok(dir) => {
            for e in dir {
                let desc = e?.path().join("desc");
                match fs::read_to_string(&desc) {
                    Ok(text) => out.extend(pacman_desc(&text)),
                    // ALPM_DB_VERSION and other plain files sit beside the package dirs.
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                        ) => {}
                    Err(e) => {
                        return Err(io::Error::new(e.kind(), format!("{}: {e}", desc.display())))
                    }
                }
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(io::Error::new(
                e.kind(),
                format!("{}: {e}", local.display()),
            ))
        }
    }
    Ok(out)
}

/// Installed packages in dpkg's status file: paragraphs whose `Status` ends in `installed`
/// (not `config-files`, `half-installed`, ...). A paragraph whose Provides does not parse
/// still meets dependencies on its own name.
pub fn dpkg_status(text: &str) -> Vec<SystemPkg> {
    let mut out = Vec::new();
    for para in text.split("\n\n") {
        // dpkg writes this file; a paragraph it could not have written is skipped.
        let Ok(fields) = deb822(para) else { continue };
        let get = |k: &str| fields.get(k).and_then(Value::as_str).unwrap_or("");
        if !get("Status").ends_with(" installed") || get("Package").is_empty() {
            continue;
        }
        let mut only_provides = Map::new();
        if let Some(p) = fields.get("Provides") {
            only_provides.insert("Provides".into(), p.clone());
        }
        out.push(SystemPkg {
            eco: Eco::Deb,
            name: get("Package").to_string(),
            version: get("Version").to_string(),
            provides: relations::parse(Eco::Deb, &only_provides, &[])
                .map(|r| r.provides)
                .unwrap_or_default(),
        });
    }
    out
}

/// One package of pacman's local database (`%NAME%`, `%VERSION%`, `%PROVIDES%` sections).
pub fn pacman_desc(text: &str) -> Option<SystemPkg> {
    let mut section = "";
    let (mut name, mut version, mut provides) = (None, None, Vec::new());
    for line in text.lines() {
        if line.starts_with('%') && line.ends_with('%') {
            section = line;
            continue;
        }
        if line.is_empty() {
            continue;
        }
        match section {
            "%NAME%" => name = Some(line.to_string()),
            "%VERSION%" => version = Some(line.to_string()),
            "%PROVIDES%" => provides.push(Value::String(line.to_string())),
            _ => {}
        }
    }
    let mut only_provides = Map::new();
    only_provides.insert("provides".into(), Value::Array(provides));
    Some(SystemPkg {
        eco: Eco::Alpm,
        name: name?,
        version: version?,
        provides: relations::parse(Eco::Alpm, &only_provides, &[])
            .map(|r| r.provides)
            .unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dpkg_status_keeps_installed_packages_and_their_provides() {
        let text = "Package: libc6\nStatus: install ok installed\nVersion: 2.36-9+deb12u4\n\
                    Provides: libc-abi (= 2.36)\nDescription: GNU C Library\n more text\n\n\
                    Package: old\nStatus: deinstall ok config-files\nVersion: 1.0\n\n\
                    Package: mawk\nStatus: install ok installed\nVersion: 1.3.4\nProvides: awk\n";
        let pkgs = dpkg_status(text);
        let names: Vec<_> = pkgs.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["libc6", "mawk"]);
        assert_eq!(pkgs[0].provides[0].name, "libc-abi");
        assert_eq!(pkgs[0].provides[0].version.as_deref(), Some("2.36"));
        assert_eq!(pkgs[1].provides[0].version, None);
    }

    #[test]
    fn pacman_desc_reads_name_version_provides() {
        let text = "%NAME%\nbash\n\n%VERSION%\n5.2.026-2\n\n%PROVIDES%\nsh\n\n%DEPENDS%\nglibc\n";
        let p = pacman_desc(text).expect("a package");
        assert_eq!((p.name.as_str(), p.version.as_str()), ("bash", "5.2.026-2"));
        assert_eq!(p.provides[0].name, "sh");
        assert!(pacman_desc("%NAME%\nx\n").is_none(), "no version");
    }
}
