//! Each ecosystem's dependency syntax, parsed into one model: a package's [`Relations`] are
//! clauses of alternatives ([`Clause`] of [`Atom`]s), the names it provides and the ones it
//! conflicts with. Version constraints stay in their ecosystem's own terms ([`Req`]).
//!
//! * Debian `Depends`/`Pre-Depends` (`a (>= 1) | b, c:any`), `Provides` (`x (= 1)`),
//!   `Conflicts`/`Breaks`: parsed here (deb-control(5)); versions compare by dpkg's rules
//!   ([`crate::version`]). `debian-control`/`debversion` were not used: they pull a
//!   lossless-syntax-tree stack and a regex engine for one line of grammar.
//! * Arch `.PKGINFO` `depend`/`provides`/`conflict` (`name[<>=]ver`): parsed here, compared as
//!   pacman does (a constraint without pkgrel ignores the candidate's pkgrel). `alpm-types`
//!   would add some twenty crates (see `crate::version`).
//! * npm `dependencies`: node-semver ranges by `nodejs-semver` (`^`, `~`, `x`, `||`, hyphen
//!   ranges); `npm:name@range` aliases. Tags, URLs, git and `file:` specs are not resolvable
//!   from a repository and are reported as unsupported.
//! * distpac `manifest.yaml` and crates: SemVer requirements by the `semver` crate (Cargo's
//!   grammar: `^1.2`, `~1`, `>=1, <2`, bare `1.2` = `^1.2`).
//! * tpm `info/package.json` `Dependencies`: `name`, `name (>= 1.0)` or `{name: ">= 1.0"}`,
//!   compared by [`Scheme::Generic`].

use std::cmp::Ordering;

use serde_json::{Map, Value};

use crate::version::{compare, Scheme};

/// An ecosystem: packages only ever satisfy dependencies of their own ecosystem. It is the
/// catalog's `meta_source`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Eco {
    Deb,
    Alpm,
    Npm,
    Distpac,
    Tpm,
    Cargo,
    Python,
    Filename,
    Other,
}

impl Eco {
    pub fn from_source(s: &str) -> Eco {
        match s {
            "deb" => Eco::Deb,
            "pkginfo" => Eco::Alpm,
            "npm" => Eco::Npm,
            "distpac" => Eco::Distpac,
            "tpm" => Eco::Tpm,
            "cargo" => Eco::Cargo,
            "python" => Eco::Python,
            "filename" => Eco::Filename,
            _ => Eco::Other,
        }
    }

    /// The prefix a request may carry to pick an ecosystem (`deb:hello`): the meta source,
    /// plus `arch`/`alpm` for pkginfo.
    pub fn from_prefix(s: &str) -> Option<Eco> {
        match s {
            "arch" | "alpm" => Some(Eco::Alpm),
            _ => match Eco::from_source(s) {
                Eco::Other => None,
                e => Some(e),
            },
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Eco::Deb => "deb",
            Eco::Alpm => "pkginfo",
            Eco::Npm => "npm",
            Eco::Distpac => "distpac",
            Eco::Tpm => "tpm",
            Eco::Cargo => "cargo",
            Eco::Python => "python",
            Eco::Filename => "filename",
            Eco::Other => "other",
        }
    }

    /// npm and Cargo install several versions of one package side by side; the others hold
    /// one version of a name at a time.
    pub fn multi_version(self) -> bool {
        matches!(self, Eco::Npm | Eco::Cargo)
    }

    pub fn scheme(self) -> Scheme {
        match self {
            Eco::Deb => Scheme::Debian,
            Eco::Alpm => Scheme::Alpm,
            Eco::Npm | Eco::Distpac | Eco::Cargo => Scheme::SemVer,
            _ => Scheme::Generic,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Lt,
    Le,
    Eq,
    Ge,
    Gt,
    Ne,
}

impl Op {
    fn holds(self, o: Ordering) -> bool {
        match self {
            Op::Lt => o == Ordering::Less,
            Op::Le => o != Ordering::Greater,
            Op::Eq => o == Ordering::Equal,
            Op::Ge => o != Ordering::Less,
            Op::Gt => o == Ordering::Greater,
            Op::Ne => o != Ordering::Equal,
        }
    }
}

/// A version constraint in its ecosystem's terms.
#[derive(Debug, Clone)]
pub enum Req {
    Any,
    /// Exactly this version (a `NAME=VERSION` request): same string, or equal in the scheme.
    Exact(String),
    /// Every comparison must hold, in the scheme's order (Debian, Arch, tpm).
    Cmp(Scheme, Vec<(Op, String)>),
    Npm(nodejs_semver::Range),
    SemVer(semver::VersionReq),
}

impl Req {
    pub fn is_any(&self) -> bool {
        matches!(self, Req::Any)
    }

    /// Does `version` (a candidate's, or a versioned Provides') satisfy this?
    pub fn matches(&self, scheme: Scheme, version: &str) -> bool {
        match self {
            Req::Any => true,
            Req::Exact(v) => v == version || compare(scheme, version, v) == Ordering::Equal,
            Req::Cmp(s, ops) => ops.iter().all(|(op, want)| {
                if *s == Scheme::Alpm && !alpm_has_pkgrel(want) {
                    // pacman: `foo>=1.0` is met by `1.0-1`: without a pkgrel the constraint
                    // compares only epoch and pkgver.
                    op.holds(compare(*s, alpm_strip_pkgrel(version), want))
                } else {
                    op.holds(compare(*s, version, want))
                }
            }),
            Req::Npm(range) => {
                nodejs_semver::Version::parse(version).is_ok_and(|v| range.satisfies(&v))
            }
            Req::SemVer(req) => semver::Version::parse(version).is_ok_and(|v| req.matches(&v)),
        }
    }
}

fn alpm_has_pkgrel(v: &str) -> bool {
    v.contains('-')
}

fn alpm_strip_pkgrel(v: &str) -> &str {
    v.rsplit_once('-').map_or(v, |(head, _)| head)
}

/// One name with a constraint: a dependency alternative, a Conflicts entry.
#[derive(Debug, Clone)]
pub struct Atom {
    pub name: String,
    pub req: Req,
    /// As written, for messages.
    pub text: String,
}

/// Alternatives, tried in order (Debian `a | b`); every other format has exactly one.
#[derive(Debug, Clone)]
pub struct Clause {
    pub alts: Vec<Atom>,
    pub text: String,
    /// npm `optionalDependencies`: met if it can be, left out if it cannot.
    pub optional: bool,
}

/// A name a package also answers to, with the version it provides it at, if any.
#[derive(Debug, Clone)]
pub struct Provide {
    pub name: String,
    pub version: Option<String>,
}

impl Provide {
    /// Whether providing this meets `atom`. An unversioned provide never meets a versioned
    /// dependency (Debian, pacman).
    pub fn meets(&self, scheme: Scheme, atom: &Atom) -> bool {
        self.name == atom.name
            && match (&atom.req, &self.version) {
                (Req::Any, _) => true,
                (_, None) => false,
                (req, Some(v)) => req.matches(scheme, v),
            }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Relations {
    pub depends: Vec<Clause>,
    pub provides: Vec<Provide>,
    pub conflicts: Vec<Atom>,
}

/// Why a package's relations could not be read: its text, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bad {
    pub text: String,
    pub why: String,
    /// A form the format allows but a repository cannot resolve (npm git/URL specs, Python).
    pub unsupported: bool,
}

fn bad(text: &str, why: impl Into<String>) -> Bad {
    Bad {
        text: text.to_string(),
        why: why.into(),
        unsupported: false,
    }
}

fn unsupported(text: &str, why: impl Into<String>) -> Bad {
    Bad {
        unsupported: true,
        ..bad(text, why)
    }
}

/// The relations of one package, from its metadata fields (the JSON object the catalog kept)
/// and, where the fields lack them (crates), the `depends` column.
pub fn parse(eco: Eco, fields: &Map<String, Value>, depends: &[String]) -> Result<Relations, Bad> {
    match eco {
        Eco::Deb => deb(fields),
        Eco::Alpm => alpm(fields),
        Eco::Npm => npm(fields),
        Eco::Distpac => distpac(fields),
        Eco::Tpm => tpm(fields),
        Eco::Cargo => cargo(depends),
        Eco::Filename => Ok(Relations::default()),
        Eco::Python | Eco::Other => match depends.first() {
            None => Ok(Relations::default()),
            Some(d) => Err(unsupported(
                d,
                format!("{} dependencies are not resolved", eco.as_str()),
            )),
        },
    }
}

// ---------------------------------------------------------------------------------------------
// Debian

fn deb(fields: &Map<String, Value>) -> Result<Relations, Bad> {
    let field = |k: &str| -> Result<Option<&str>, Bad> {
        match fields.get(k) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(other) => Err(bad(&other.to_string(), format!("{k} is not text"))),
        }
    };
    let mut r = Relations::default();
    for k in ["Pre-Depends", "Depends"] {
        for clause in deb_list(field(k)?) {
            let alts = clause
                .split('|')
                .map(|a| deb_atom(a.trim()))
                .collect::<Result<Vec<_>, _>>()?;
            r.depends.push(Clause {
                optional: false,
                alts,
                text: squash(clause),
            });
        }
    }
    for entry in deb_list(field("Provides")?) {
        let a = deb_atom(entry)?;
        let version = match a.req {
            Req::Any => None,
            Req::Cmp(_, ops) if ops.len() == 1 && ops[0].0 == Op::Eq => Some(ops[0].1.clone()),
            _ => return Err(bad(entry, "Provides allows only `(= VERSION)`")),
        };
        r.provides.push(Provide {
            name: a.name,
            version,
        });
    }
    // For a set to install together, Breaks rules out the same pairs as Conflicts.
    for k in ["Conflicts", "Breaks"] {
        for entry in deb_list(field(k)?) {
            if entry.contains('|') {
                return Err(bad(entry, format!("{k} takes no alternatives")));
            }
            r.conflicts.push(deb_atom(entry)?);
        }
    }
    Ok(r)
}

fn deb_list(field: Option<&str>) -> impl Iterator<Item = &str> {
    field
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// Continuation lines come back joined with `\n`: messages show one line.
fn squash(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `name[:arch] [(op version)]` (deb-control(5) for binary packages: no `[arch]` or
/// `<profile>` restrictions, which only source packages carry).
fn deb_atom(text: &str) -> Result<Atom, Bad> {
    let (head, rel) = match text.split_once('(') {
        Some((h, rest)) => {
            let inner = rest
                .strip_suffix(')')
                .ok_or_else(|| bad(text, "unclosed `(`, or text after `)`"))?;
            (h.trim(), Some(inner.trim()))
        }
        None => (text.trim(), None),
    };
    // `:any`, `:native` or an architecture: this resolver does not model architectures.
    let name = head.split_once(':').map_or(head, |(n, _)| n);
    // Policy wants two characters; dpkg itself accepts one, so this does too.
    let name_ok = name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"+-.".contains(&c));
    if !name_ok {
        return Err(bad(text, format!("{head:?} is not a Debian package name")));
    }
    let req = match rel {
        None => Req::Any,
        Some(rel) => {
            let split = rel
                .find(|c: char| !"<>=".contains(c))
                .ok_or_else(|| bad(text, "a relation without a version"))?;
            let (op, version) = (&rel[..split], rel[split..].trim());
            let op = match op {
                "<<" => Op::Lt,
                "<=" | "<" => Op::Le, // `<` and `>` are dpkg's obsolete spellings of <= and >=
                "=" => Op::Eq,
                ">=" | ">" => Op::Ge,
                ">>" => Op::Gt,
                other => return Err(bad(text, format!("unknown relation {other:?}"))),
            };
            if version.is_empty() || version.contains(char::is_whitespace) {
                return Err(bad(text, "a relation needs one version"));
            }
            Req::Cmp(Scheme::Debian, vec![(op, version.to_string())])
        }
    };
    Ok(Atom {
        name: name.to_string(),
        req,
        text: squash(text),
    })
}

// ---------------------------------------------------------------------------------------------
// Arch

fn strings(fields: &Map<String, Value>, k: &str) -> Vec<String> {
    match fields.get(k) {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    }
}

fn alpm(fields: &Map<String, Value>) -> Result<Relations, Bad> {
    let mut r = Relations::default();
    for d in strings(fields, "depend") {
        let a = alpm_atom(&d)?;
        r.depends.push(Clause {
            optional: false,
            text: a.text.clone(),
            alts: vec![a],
        });
    }
    for p in strings(fields, "provides") {
        let a = alpm_atom(&p)?;
        let version = match a.req {
            Req::Any => None,
            Req::Cmp(_, ops) if ops[0].0 == Op::Eq => Some(ops[0].1.clone()),
            _ => return Err(bad(&p, "provides allows only `name=version`")),
        };
        r.provides.push(Provide {
            name: a.name,
            version,
        });
    }
    for c in strings(fields, "conflict") {
        r.conflicts.push(alpm_atom(&c)?);
    }
    Ok(r)
}

/// `name`, or `name` directly followed by one of `>= <= = > <` and a version (alpm_dep_from_string).
fn alpm_atom(text: &str) -> Result<Atom, Bad> {
    let text = text.trim();
    let split = text.find(['<', '>', '=']);
    let (name, req) = match split {
        None => (text, Req::Any),
        Some(i) => {
            let rest = &text[i..];
            let (op, n) = [
                (">=", Op::Ge),
                ("<=", Op::Le),
                ("=", Op::Eq),
                (">", Op::Gt),
                ("<", Op::Lt),
            ]
            .into_iter()
            .find_map(|(s, op)| rest.starts_with(s).then_some((op, s.len())))
            .ok_or_else(|| bad(text, "unknown comparison"))?;
            let version = &rest[n..];
            if version.is_empty()
                || version.contains(|c: char| c.is_whitespace() || "<>=".contains(c))
            {
                return Err(bad(text, "a comparison needs one version"));
            }
            (
                &text[..i],
                Req::Cmp(Scheme::Alpm, vec![(op, version.to_string())]),
            )
        }
    };
    let name_ok = !name.is_empty()
        && !name.starts_with(['-', '.'])
        && name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"@._+-".contains(&c));
    if !name_ok {
        return Err(bad(text, format!("{name:?} is not a pacman package name")));
    }
    Ok(Atom {
        name: name.to_string(),
        req,
        text: text.to_string(),
    })
}

// ---------------------------------------------------------------------------------------------
// npm

/// `dependencies`, `optionalDependencies` (which win over a same-named dependency, as in npm)
/// and `peerDependencies`, which npm 7+ installs too unless `peerDependenciesMeta` marks them
/// optional.
fn npm(fields: &Map<String, Value>) -> Result<Relations, Bad> {
    let object = |k: &str| -> Result<Vec<(String, String)>, Bad> {
        match fields.get(k) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Object(deps)) => deps
                .iter()
                .map(|(name, spec)| match spec.as_str() {
                    Some(s) => Ok((name.clone(), s.to_string())),
                    None => Err(bad(&format!("{name}: {spec}"), "the range is not a string")),
                })
                .collect(),
            Some(other) => Err(bad(&other.to_string(), format!("{k} is not an object"))),
        }
    };
    let optional = object("optionalDependencies")?;
    let optional_peer = |name: &str| {
        fields
            .get("peerDependenciesMeta")
            .and_then(|m| m.get(name))
            .and_then(|m| m.get("optional"))
            .and_then(Value::as_bool)
            == Some(true)
    };
    let mut r = Relations::default();
    let mut seen: Vec<String> = Vec::new();
    let required = object("dependencies")?
        .into_iter()
        .chain(object("peerDependencies")?)
        .filter(|(name, _)| !optional.iter().any(|(o, _)| o == name) && !optional_peer(name));
    let all = optional
        .iter()
        .cloned()
        .map(|d| (d, true))
        .chain(required.map(|d| (d, false)));
    for ((name, spec), is_optional) in all {
        if seen.contains(&name) {
            continue; // a peer also listed as a dependency
        }
        seen.push(name.clone());
        let a = npm_atom(&name, &spec)?;
        r.depends.push(Clause {
            optional: is_optional,
            text: a.text.clone(),
            alts: vec![a],
        });
    }
    Ok(r)
}

fn npm_atom(name: &str, spec: &str) -> Result<Atom, Bad> {
    let text = format!("{name}@{spec}");
    let spec = spec.trim();
    // `"b": "npm:real@^1"` installs `real` under the name `b`.
    let (real, range) = match spec.strip_prefix("npm:") {
        Some(alias) => match alias.rsplit_once('@') {
            Some((n, r)) if !n.is_empty() => (n, r),
            _ => (alias, "*"),
        },
        None => (name, spec),
    };
    // Ranges never hold `:` or `/`; URLs, `git+…`, `file:`, `github:` and `user/repo` do.
    let looks_like_path_or_url =
        range.contains([':', '/']) || range.starts_with('.') || range.starts_with("~/");
    if looks_like_path_or_url {
        return Err(unsupported(
            &text,
            "not a version range (URL, git, file: or path specs are not resolved from a repository)",
        ));
    }
    let req = if range == "latest" {
        Req::Any
    } else {
        match nodejs_semver::Range::parse(range) {
            Ok(r) => Req::Npm(r),
            Err(_)
                if range
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || b"-_.".contains(&c)) =>
            {
                return Err(unsupported(
                    &text,
                    "a dist-tag, which a repository does not have",
                ))
            }
            Err(_) => return Err(bad(&text, "not an npm version range")),
        }
    };
    Ok(Atom {
        name: real.to_string(),
        req,
        text,
    })
}

// ---------------------------------------------------------------------------------------------
// distpac, crates

fn semver_atom(name: &str, req: &str, text: String) -> Result<Atom, Bad> {
    let req = req.trim();
    let req = if req.is_empty() || req == "*" {
        Req::Any
    } else {
        Req::SemVer(
            semver::VersionReq::parse(req)
                .map_err(|e| bad(&text, format!("not a SemVer requirement: {e}")))?,
        )
    };
    if name.is_empty() || name.contains(char::is_whitespace) {
        return Err(bad(&text, "no package name"));
    }
    Ok(Atom {
        name: name.to_string(),
        req,
        text,
    })
}

/// `name`, `name REQ` or `nameREQ` where REQ starts with an operator.
fn split_name_req(s: &str) -> (&str, &str) {
    let s = s.trim();
    let i = s
        .find(|c: char| c.is_whitespace() || "<>=^~*".contains(c))
        .unwrap_or(s.len());
    (&s[..i], s[i..].trim())
}

fn distpac(fields: &Map<String, Value>) -> Result<Relations, Bad> {
    let mut r = Relations::default();
    let push = |r: &mut Relations, a: Atom| {
        r.depends.push(Clause {
            optional: false,
            text: a.text.clone(),
            alts: vec![a],
        })
    };
    match fields.get("dependencies").or_else(|| fields.get("depends")) {
        None | Some(Value::Null) => {}
        Some(Value::Object(deps)) => {
            for (name, req) in deps {
                let req = match req {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    Value::Null => String::new(),
                    other => return Err(bad(&format!("{name}: {other}"), "not a requirement")),
                };
                let text = if req.is_empty() {
                    name.clone()
                } else {
                    format!("{name} {req}")
                };
                push(&mut r, semver_atom(name, &req, text)?);
            }
        }
        Some(Value::Array(list)) => {
            for d in list {
                let d = d
                    .as_str()
                    .ok_or_else(|| bad(&d.to_string(), "a dependency is not text"))?;
                let (name, req) = split_name_req(d);
                push(&mut r, semver_atom(name, req, d.to_string())?);
            }
        }
        Some(Value::String(d)) => {
            for d in d.split(',').map(str::trim).filter(|d| !d.is_empty()) {
                let (name, req) = split_name_req(d);
                push(&mut r, semver_atom(name, req, d.to_string())?);
            }
        }
        Some(other) => return Err(bad(&other.to_string(), "dependencies is not a list or map")),
    }
    Ok(r)
}

fn cargo(depends: &[String]) -> Result<Relations, Bad> {
    let mut r = Relations::default();
    for d in depends {
        let (name, req) = d.split_once(' ').unwrap_or((d, ""));
        let a = semver_atom(name, req, d.clone())?;
        r.depends.push(Clause {
            optional: false,
            text: a.text.clone(),
            alts: vec![a],
        });
    }
    Ok(r)
}

// ---------------------------------------------------------------------------------------------
// tpm

fn tpm(fields: &Map<String, Value>) -> Result<Relations, Bad> {
    let value = fields
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("Dependencies") || k.eq_ignore_ascii_case("Depends"))
        .map(|(_, v)| v);
    let mut entries: Vec<(String, String)> = Vec::new(); // (name, constraint)
    match value {
        None | Some(Value::Null) => {}
        Some(Value::Object(o)) => {
            for (k, v) in o {
                let c = match v {
                    Value::String(s) => s.clone(),
                    Value::Null => String::new(),
                    other => return Err(bad(&format!("{k}: {other}"), "not a constraint")),
                };
                entries.push((k.clone(), c));
            }
        }
        Some(Value::String(s)) => {
            for d in top_level_commas(s) {
                entries.push(tpm_split(d));
            }
        }
        Some(Value::Array(a)) => {
            for d in a {
                let d = d
                    .as_str()
                    .ok_or_else(|| bad(&d.to_string(), "a dependency is not text"))?;
                entries.push(tpm_split(d));
            }
        }
        Some(other) => return Err(bad(&other.to_string(), "Dependencies is not a list or map")),
    }
    let mut r = Relations::default();
    for (name, c) in entries {
        let text = if c.is_empty() {
            name.clone()
        } else {
            format!("{name} {c}")
        };
        if name.is_empty() || name.contains(|ch: char| ch.is_whitespace() || "()<>=,".contains(ch))
        {
            return Err(bad(&text, "no package name"));
        }
        let req = tpm_req(&c).map_err(|why| bad(&text, why))?;
        r.depends.push(Clause {
            optional: false,
            alts: vec![Atom {
                name,
                req,
                text: text.clone(),
            }],
            text,
        });
    }
    Ok(r)
}

/// `a (>= 1, < 2), b` → `a (>= 1, < 2)`, `b`: commas inside parentheses belong to a constraint.
fn top_level_commas(s: &str) -> Vec<&str> {
    let (mut out, mut depth, mut start) = (Vec::new(), 0i32, 0);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(s[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(s[start..].trim());
    out.retain(|d| !d.is_empty());
    out
}

fn tpm_split(d: &str) -> (String, String) {
    let d = d.trim();
    let i = d
        .find(|c: char| c.is_whitespace() || "(<>=!".contains(c))
        .unwrap_or(d.len());
    (d[..i].to_string(), d[i..].trim().to_string())
}

/// `""`/`*` (any), `1.0` (exactly), or comparisons `>= 1.0, < 2` / `(>= 1.0)`.
fn tpm_req(c: &str) -> Result<Req, String> {
    let c = c.trim();
    let c = c
        .strip_prefix('(')
        .and_then(|c| c.strip_suffix(')'))
        .unwrap_or(c)
        .trim();
    if c.is_empty() || c == "*" {
        return Ok(Req::Any);
    }
    let mut ops = Vec::new();
    for part in c.split(',').map(str::trim) {
        let split = part
            .find(|ch: char| !"<>=!".contains(ch))
            .ok_or("a comparison without a version")?;
        let op = match &part[..split] {
            "" | "=" | "==" => Op::Eq,
            ">=" => Op::Ge,
            "<=" => Op::Le,
            ">" | ">>" => Op::Gt,
            "<" | "<<" => Op::Lt,
            "!=" => Op::Ne,
            other => return Err(format!("unknown comparison {other:?}")),
        };
        let v = part[split..].trim();
        if v.is_empty() || v.contains(char::is_whitespace) {
            return Err("a comparison needs one version".into());
        }
        ops.push((op, v.to_string()));
    }
    Ok(Req::Cmp(Scheme::Generic, ops))
}

#[cfg(test)]
mod tests;
