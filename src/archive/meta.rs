//! Package metadata in the formats users already ship, reduced to one record.
//! Every field the file had is kept verbatim in `fields`; the common ones are lifted out.

use serde::Serialize;
use serde_json::{Map, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum MetaSource {
    /// Arch `.PKGINFO`
    Pkginfo,
    /// tpm `info/package.json`
    Tpm,
    /// distpac `manifest.yaml`
    Distpac,
    /// Debian `control`
    Deb,
    /// A crate's `Cargo.toml` (as `cargo package` normalizes it)
    Cargo,
    /// npm `package/package.json`
    Npm,
    /// Python core metadata: an sdist's `PKG-INFO` or a wheel's `METADATA`
    Python,
    /// No metadata file: GNU-style `name-version.tar.gz`
    Filename,
}

impl MetaSource {
    pub fn as_str(self) -> &'static str {
        match self {
            MetaSource::Pkginfo => "pkginfo",
            MetaSource::Tpm => "tpm",
            MetaSource::Distpac => "distpac",
            MetaSource::Deb => "deb",
            MetaSource::Cargo => "cargo",
            MetaSource::Npm => "npm",
            MetaSource::Python => "python",
            MetaSource::Filename => "filename",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct PackageMeta {
    pub source: MetaSource,
    pub name: String,
    pub version: Option<String>,
    pub arch: Option<String>,
    pub description: Option<String>,
    /// Dependencies as written by the format (`glibc>=2.3`, `libc6 (>= 2.34)`, ...).
    pub depends: Vec<String>,
    pub fields: Map<String, Value>,
}

impl PackageMeta {
    fn new(source: MetaSource, name: String) -> Self {
        PackageMeta {
            source,
            name,
            version: None,
            arch: None,
            description: None,
            depends: Vec::new(),
            fields: Map::new(),
        }
    }
}

/// Arch `.PKGINFO`: `key = value` lines, keys may repeat.
pub fn from_pkginfo(text: &str) -> Result<PackageMeta, String> {
    let mut fields: Map<String, Value> = Map::new();
    for line in text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let (k, v) = line
            .split_once('=')
            .ok_or_else(|| format!(".PKGINFO: malformed line {line:?}"))?;
        let (k, v) = (k.trim().to_string(), Value::String(v.trim().to_string()));
        match fields.get_mut(&k) {
            Some(Value::Array(a)) => a.push(v),
            Some(old) => *old = Value::Array(vec![old.take(), v]),
            None => {
                fields.insert(k, v);
            }
        }
    }
    let one = |k: &str| match fields.get(k) {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Array(a)) => a.first().and_then(Value::as_str).map(str::to_string),
        _ => None,
    };
    let name = one("pkgname").ok_or(".PKGINFO has no pkgname")?;
    let mut m = PackageMeta::new(MetaSource::Pkginfo, name);
    m.version = Some(one("pkgver").ok_or(".PKGINFO has no pkgver")?);
    m.arch = one("arch");
    m.description = one("pkgdesc");
    m.depends = strings(fields.get("depend"));
    m.fields = fields;
    Ok(m)
}

/// tpm `info/package.json`: Version, Maintainer, Description, Dependencies, Type. The name is
/// taken from a Name/Package field when present, otherwise from the file name.
pub fn from_tpm(text: &str, filename: &str) -> Result<PackageMeta, String> {
    let v: Value = serde_json::from_str(text).map_err(|e| format!("info/package.json: {e}"))?;
    let Value::Object(fields) = v else {
        return Err("info/package.json is not a JSON object".into());
    };
    let get = |keys: &[&str]| {
        fields
            .iter()
            .find(|(k, _)| keys.iter().any(|w| k.eq_ignore_ascii_case(w)))
            .map(|(_, v)| v.clone())
    };
    let text_of = |keys: &[&str]| get(keys).and_then(|v| v.as_str().map(str::to_string));
    let name = text_of(&["Name", "Package"]).unwrap_or_else(|| from_filename(filename).name);
    let mut m = PackageMeta::new(MetaSource::Tpm, name);
    m.version = Some(text_of(&["Version"]).ok_or("info/package.json has no Version")?);
    m.description = text_of(&["Description"]);
    m.arch = text_of(&["Architecture", "Arch"]);
    m.depends = match get(&["Dependencies", "Depends"]) {
        Some(Value::Object(o)) => o
            .iter()
            .map(|(k, v)| dep_with_constraint(k, v.as_str()))
            .collect(),
        Some(Value::String(s)) => split_list(&s, ','),
        other => strings(other.as_ref()),
    };
    m.fields = fields;
    Ok(m)
}

/// distpac `manifest.yaml`: name and (SemVer) version at the top level.
pub fn from_distpac(text: &str) -> Result<PackageMeta, String> {
    let v: Value = serde_norway::from_str(text).map_err(|e| format!("manifest.yaml: {e}"))?;
    let Value::Object(fields) = v else {
        return Err("manifest.yaml is not a mapping".into());
    };
    let text_of = |k: &str| {
        fields.get(k).and_then(|v| match v {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        })
    };
    let mut m = PackageMeta::new(
        MetaSource::Distpac,
        text_of("name").ok_or("manifest.yaml has no name")?,
    );
    m.version = Some(text_of("version").ok_or("manifest.yaml has no version")?);
    m.description = text_of("description");
    m.arch = text_of("arch").or_else(|| text_of("architecture"));
    m.depends = match fields.get("dependencies").or_else(|| fields.get("depends")) {
        Some(Value::Object(o)) => o
            .iter()
            .map(|(k, v)| dep_with_constraint(k, v.as_str()))
            .collect(),
        other => strings(other),
    };
    m.fields = fields;
    Ok(m)
}

/// One deb822 paragraph (`control`, a paragraph of dpkg's `status`): `Key: value` with
/// indented continuation lines, joined with newlines.
pub fn deb822(text: &str) -> Result<Map<String, Value>, String> {
    let mut fields: Map<String, Value> = Map::new();
    let mut last: Option<String> = None;
    for line in text.lines() {
        if line.trim().is_empty() {
            continue;
        }
        if line.starts_with([' ', '\t']) {
            let k = last
                .as_ref()
                .ok_or("control: continuation line before any field")?;
            if let Some(Value::String(s)) = fields.get_mut(k) {
                s.push('\n');
                s.push_str(line.trim());
            }
            continue;
        }
        let (k, v) = line
            .split_once(':')
            .ok_or_else(|| format!("control: malformed line {line:?}"))?;
        fields.insert(k.trim().to_string(), Value::String(v.trim().to_string()));
        last = Some(k.trim().to_string());
    }
    Ok(fields)
}

/// Debian `control`: one deb822 paragraph.
pub fn from_deb_control(text: &str) -> Result<PackageMeta, String> {
    let fields = deb822(text)?;
    let text_of = |k: &str| fields.get(k).and_then(Value::as_str).map(str::to_string);
    let mut m = PackageMeta::new(
        MetaSource::Deb,
        text_of("Package").ok_or("control has no Package")?,
    );
    m.version = Some(text_of("Version").ok_or("control has no Version")?);
    m.arch = text_of("Architecture");
    m.description = text_of("Description").map(|d| d.lines().next().unwrap_or("").to_string());
    m.depends = text_of("Depends")
        .map(|d| split_list(&d, ','))
        .unwrap_or_default();
    m.fields = fields;
    Ok(m)
}

/// A packaged crate's `Cargo.toml`: `cargo package` writes it normalized, so name and version
/// are plain strings in `[package]` (never inherited from a workspace).
pub fn from_cargo_toml(text: &str) -> Result<PackageMeta, String> {
    let doc: toml::Table = toml::from_str(text).map_err(|e| format!("Cargo.toml: {e}"))?;
    let package = doc
        .get("package")
        .and_then(toml::Value::as_table)
        .ok_or("Cargo.toml has no [package]")?;
    let text_of = |k: &str| package.get(k).and_then(toml::Value::as_str);
    let mut m = PackageMeta::new(
        MetaSource::Cargo,
        text_of("name")
            .ok_or("Cargo.toml has no package.name")?
            .to_string(),
    );
    m.version = Some(
        text_of("version")
            .ok_or("Cargo.toml has no package.version")?
            .to_string(),
    );
    m.description = text_of("description").map(str::to_string);
    if let Some(deps) = doc.get("dependencies").and_then(toml::Value::as_table) {
        m.depends = deps
            .iter()
            .filter(|(_, v)| v.get("optional").and_then(toml::Value::as_bool) != Some(true))
            .map(|(name, v)| {
                // `dep = "1"` or `dep = { version = "1", package = "real-name" }`.
                let req = v
                    .as_str()
                    .or_else(|| v.get("version").and_then(toml::Value::as_str));
                let real = v
                    .get("package")
                    .and_then(toml::Value::as_str)
                    .unwrap_or(name);
                dep_with_constraint(real, req)
            })
            .collect();
    }
    m.fields = match serde_json::to_value(package) {
        Ok(Value::Object(o)) => o,
        _ => Map::new(),
    };
    Ok(m)
}

/// npm's `package.json`: name (possibly `@scope/name`) and version are required, as npm
/// itself requires them to publish.
pub fn from_package_json(text: &str) -> Result<PackageMeta, String> {
    let v: Value = serde_json::from_str(text).map_err(|e| format!("package.json: {e}"))?;
    let Value::Object(fields) = v else {
        return Err("package.json is not a JSON object".into());
    };
    let text_of = |k: &str| fields.get(k).and_then(Value::as_str).map(str::to_string);
    let mut m = PackageMeta::new(
        MetaSource::Npm,
        text_of("name").ok_or("package.json has no name")?,
    );
    m.version = Some(text_of("version").ok_or("package.json has no version")?);
    m.description = text_of("description");
    if let Some(Value::Object(deps)) = fields.get("dependencies") {
        m.depends = deps
            .iter()
            .map(|(k, v)| dep_with_constraint(k, v.as_str()))
            .collect();
    }
    m.fields = fields;
    Ok(m)
}

/// Python core metadata (PEP 566/643): RFC 822-style headers up to the first blank line;
/// `Requires-Dist` and other multiple-use fields repeat. `what` names the file in errors.
pub fn from_python_metadata(text: &str, what: &str) -> Result<PackageMeta, String> {
    let mut fields: Map<String, Value> = Map::new();
    let mut last: Option<String> = None;
    for line in text.lines() {
        if line.is_empty() {
            break; // the body (long description) follows
        }
        if line.starts_with([' ', '\t']) {
            if let Some(Value::String(s)) = last.as_ref().and_then(|k| fields.get_mut(k)) {
                s.push('\n');
                s.push_str(line.trim());
            }
            continue;
        }
        let (k, v) = line
            .split_once(':')
            .ok_or_else(|| format!("{what}: malformed line {line:?}"))?;
        let (k, v) = (k.trim().to_string(), Value::String(v.trim().to_string()));
        match fields.get_mut(&k) {
            Some(Value::Array(a)) => a.push(v),
            Some(old) => *old = Value::Array(vec![old.take(), v]),
            None => {
                fields.insert(k.clone(), v);
            }
        }
        last = Some(k);
    }
    let one = |k: &str| match fields.get(k) {
        Some(Value::String(s)) => Some(s.clone()),
        _ => None,
    };
    let mut m = PackageMeta::new(
        MetaSource::Python,
        one("Name").ok_or_else(|| format!("{what} has no Name"))?,
    );
    m.version = Some(one("Version").ok_or_else(|| format!("{what} has no Version"))?);
    m.description = one("Summary");
    m.depends = strings(fields.get("Requires-Dist"))
        .into_iter()
        .filter(|d| !d.contains("extra =="))
        .collect();
    m.fields = fields;
    Ok(m)
}

/// Name, version and architecture from a file name, for files without metadata:
/// `foo-1.2.tar.gz`, Arch `name-ver-rel-arch.pkg.tar.zst`, Debian `name_ver_arch.deb`.
/// Signatures (`.sig`, `.asc`) get their subject's name.
pub fn from_filename(filename: &str) -> PackageMeta {
    let mut stem = filename;
    for sig in [".sig", ".asc"] {
        stem = stem.strip_suffix(sig).unwrap_or(stem);
    }
    const ARCH: &[&str] = &[".pkg.tar.zst", ".pkg.tar.xz", ".pkg.tar.gz", ".pkg.tar"];
    const EXTS: &[&str] = &[
        ".tar.gz",
        ".tar.zst",
        ".tar.xz",
        ".tar.bz2",
        ".tar.lz",
        ".tar.lzma",
        ".tar",
        ".tgz",
        ".tzst",
        ".txz",
        ".tbz2",
        ".crate",
        ".zip",
        ".jar",
        ".gem",
        ".whl",
        ".rpm",
    ];
    let mut m = PackageMeta::new(MetaSource::Filename, stem.to_string());
    if let Some(base) = ARCH.iter().find_map(|e| stem.strip_suffix(e)) {
        let parts: Vec<&str> = base.rsplitn(4, '-').collect();
        if let [arch, rel, ver, name] = parts[..] {
            m.name = name.to_string();
            m.version = Some(format!("{ver}-{rel}"));
            m.arch = Some(arch.to_string());
            return m;
        }
    }
    if let Some(base) = stem.strip_suffix(".deb") {
        let parts: Vec<&str> = base.split('_').collect();
        if let [name, ver, arch] = parts[..] {
            m.name = name.to_string();
            m.version = Some(ver.to_string());
            m.arch = Some(arch.to_string());
            return m;
        }
    }
    let base = EXTS
        .iter()
        .find_map(|e| stem.strip_suffix(e))
        .unwrap_or(stem);
    // The version starts at the last '-' followed by a digit: foo-bar-1.2 -> foo-bar, 1.2.
    let split = base
        .char_indices()
        .rev()
        .find(|&(i, c)| c == '-' && base[i + 1..].starts_with(|d: char| d.is_ascii_digit()))
        .map(|(i, _)| i);
    match split {
        Some(i) if i > 0 => {
            m.name = base[..i].to_string();
            m.version = Some(base[i + 1..].to_string());
        }
        _ => m.name = base.to_string(),
    }
    m
}

fn strings(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|x| x.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    }
}

fn split_list(s: &str, sep: char) -> Vec<String> {
    s.split(sep)
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(str::to_string)
        .collect()
}

fn dep_with_constraint(name: &str, constraint: Option<&str>) -> String {
    match constraint.map(str::trim) {
        Some(c) if !c.is_empty() && c != "*" => format!("{name} {c}"),
        _ => name.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gnu_names() {
        let m = from_filename("hello-2.12.1.tar.gz");
        assert_eq!(
            (m.name.as_str(), m.version.as_deref()),
            ("hello", Some("2.12.1"))
        );
        let m = from_filename("gnu-foo-bar-1.0.tar.gz.sig");
        assert_eq!(
            (m.name.as_str(), m.version.as_deref()),
            ("gnu-foo-bar", Some("1.0"))
        );
        let m = from_filename("README");
        assert_eq!((m.name.as_str(), m.version), ("README", None));
    }

    #[test]
    fn arch_and_deb_names() {
        let m = from_filename("zlib-1:1.3-2-x86_64.pkg.tar.zst");
        assert_eq!(m.name, "zlib");
        assert_eq!(m.version.as_deref(), Some("1:1.3-2"));
        assert_eq!(m.arch.as_deref(), Some("x86_64"));
        let m = from_filename("hello_2.10-3_amd64.deb");
        assert_eq!(
            (m.name.as_str(), m.version.as_deref(), m.arch.as_deref()),
            ("hello", Some("2.10-3"), Some("amd64"))
        );
    }

    #[test]
    fn pkginfo_repeats() {
        let m = from_pkginfo("# generated\npkgname = foo\npkgver = 1.0-1\narch = any\ndepend = glibc\ndepend = bash>=5\n").unwrap();
        assert_eq!(m.name, "foo");
        assert_eq!(m.depends, vec!["glibc", "bash>=5"]);
        assert!(from_pkginfo("pkgver = 1\n").is_err());
    }

    #[test]
    fn control_continuations() {
        let m = from_deb_control("Package: hi\nVersion: 1.0\nArchitecture: all\nDepends: libc6 (>= 2.34), bash\nDescription: short\n long text\n").unwrap();
        assert_eq!(m.depends, vec!["libc6 (>= 2.34)", "bash"]);
        assert_eq!(m.description.as_deref(), Some("short"));
    }

    #[test]
    fn tpm_and_distpac() {
        let m = from_tpm(
            r#"{"Version":"2.0","Dependencies":["a","b"],"Type":"Binary"}"#,
            "tool-2.0.tar.gz",
        )
        .unwrap();
        assert_eq!(
            (m.name.as_str(), m.version.as_deref()),
            ("tool", Some("2.0"))
        );
        assert_eq!(m.depends, vec!["a", "b"]);
        let m = from_distpac("name: web\nversion: 1.2.3\ndependencies:\n  - db\n").unwrap();
        assert_eq!(
            (m.name.as_str(), m.version.as_deref()),
            ("web", Some("1.2.3"))
        );
        assert_eq!(m.depends, vec!["db"]);
    }

    #[test]
    fn cargo_npm_and_python_metadata() {
        let m = from_cargo_toml(
            "[package]\nedition = \"2021\"\nname = \"aho-corasick\"\nversion = \"1.1.3\"\n\
             description = \"Fast\"\n[dependencies.memchr]\nversion = \"2.4.0\"\noptional = true\n\
             [dependencies]\nlog = \"0.4\"\nre = { version = \"1\", package = \"regex\" }\n",
        )
        .unwrap();
        assert_eq!(
            (m.name.as_str(), m.version.as_deref()),
            ("aho-corasick", Some("1.1.3"))
        );
        assert_eq!(
            m.depends,
            vec!["log 0.4", "regex 1"],
            "optional ones are left out"
        );
        assert!(from_cargo_toml("[workspace]\n").is_err());

        let m = from_package_json(
            r#"{"name":"@scope/pkg","version":"4.17.21","dependencies":{"a":"^1.0.0","b":"*"}}"#,
        )
        .unwrap();
        assert_eq!(
            (m.name.as_str(), m.version.as_deref()),
            ("@scope/pkg", Some("4.17.21"))
        );
        assert_eq!(m.depends, vec!["a ^1.0.0", "b"]);
        assert!(from_package_json(r#"{"name":"x"}"#).is_err());

        let text = "Metadata-Version: 2.1\nName: six\nVersion: 1.16.0\nSummary: Python 2 and 3\n\
                    Requires-Dist: idna>=2.5\nRequires-Dist: pytest; extra == \"test\"\n\
                    Description: first\n        second\n\nName: not-a-header\n";
        let m = from_python_metadata(text, "METADATA").unwrap();
        assert_eq!(
            (m.name.as_str(), m.version.as_deref()),
            ("six", Some("1.16.0"))
        );
        assert_eq!(m.depends, vec!["idna>=2.5"]);
        assert_eq!(m.fields["Description"], "first\nsecond");
        assert!(from_python_metadata("Version: 1\n", "PKG-INFO").is_err());
    }
}
