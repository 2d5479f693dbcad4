//! `repofs deps`: the dependency closure of some packages over the catalog, in install order.
//!
//! Each ecosystem's relations are parsed in [`relations`] (Debian, Arch, npm, distpac, tpm,
//! crates) and solved together by [`solver`]: a package satisfies a dependency only within its
//! own ecosystem (the catalog's `meta_source`), directly or through what it provides;
//! alternatives are tried in order; conflicts (and Debian `Breaks`) exclude pairs; the newest
//! satisfying version is tried first and the search backtracks when it leads nowhere, with a
//! bound on the steps so it never hangs. Debian, Arch, distpac and tpm hold one version per
//! name; npm and Cargo install several side by side, so there a dependency reuses a version
//! already chosen when it fits and otherwise takes the newest that does, as npm's tree
//! builder does. Archived files are never candidates (the catalog lists live packages only).
//!
//! Why not `pubgrub`: its model has no alternatives (Debian `a | b`), no virtual packages with
//! several providers and one version per package, which npm and Cargo do not have; each of
//! these would need an encoding on top that loses its explanations anyway.

pub mod relations;
mod solver;
pub mod system;

use std::str::FromStr;

use serde::Serialize;

use crate::catalog::{Catalog, CatalogError, PackageListing, PackageRow};

pub use relations::Eco;

/// One thing asked for: `NAME` or `NAME=VERSION`. NAME may carry an ecosystem prefix when it
/// exists in several (`deb:hello`, `npm:left-pad`; prefixes are the catalog's meta sources,
/// plus `arch` for pkginfo).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub name: String,
    pub version: Option<String>,
}

impl FromStr for Request {
    type Err = DepsError;

    fn from_str(s: &str) -> Result<Request, DepsError> {
        let bad = |why: &str| DepsError::BadRequest {
            request: s.to_string(),
            why: why.to_string(),
        };
        let (name, version) = match s.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (s, None),
        };
        let odd = |t: &str| t.chars().any(|c| c.is_whitespace() || c.is_control());
        if name.is_empty() || odd(name) {
            return Err(bad("expected NAME or NAME=VERSION"));
        }
        if let Some(v) = version {
            if v.is_empty() || odd(v) || v.contains('=') {
                return Err(bad("expected NAME=VERSION with one version"));
            }
        }
        Ok(Request {
            name: name.to_string(),
            version: version.map(str::to_string),
        })
    }
}

impl std::fmt::Display for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.version {
            Some(v) => write!(f, "{}={v}", self.name),
            None => write!(f, "{}", self.name),
        }
    }
}

/// A chain of requirements from a request down to the one that failed, each step a package
/// (`foo 1.0`) or what it asked for (`bar (>= 2)`).
fn path(chain: &[String]) -> String {
    chain.join(" → ")
}

#[derive(Debug, thiserror::Error)]
pub enum DepsError {
    #[error("bad request {request:?}: {why}")]
    BadRequest { request: String, why: String },
    #[error("{name}: ambiguous, it is a package in {}; prefix one (e.g. {}:{name})", .ecosystems.join(", "), .ecosystems[0])]
    Ambiguous {
        name: String,
        ecosystems: Vec<String>,
    },
    #[error("{}: no package {}", path(.chain), .names.join(" or "))]
    Missing {
        chain: Vec<String>,
        names: Vec<String>,
    },
    #[error("{}: no version satisfies it (available: {})", path(.chain), .available.join(", "))]
    Unsatisfiable {
        chain: Vec<String>,
        available: Vec<String>,
    },
    #[error("conflict: {}: {detail}", path(.chain))]
    Conflict { chain: Vec<String>, detail: String },
    #[error("{package}: malformed dependency {text:?}: {why}")]
    Malformed {
        package: String,
        text: String,
        why: String,
    },
    #[error("{package}: unsupported dependency {text:?}: {why}")]
    Unsupported {
        package: String,
        text: String,
        why: String,
    },
    #[error("too complex: no answer within {steps} candidates or {}; ask for fewer packages or pin versions (NAME=VERSION)", humantime::format_duration(*.time_limit))]
    TooComplex {
        steps: u64,
        time_limit: std::time::Duration,
    },
    #[error("catalog: {0}")]
    Catalog(#[from] CatalogError),
}

impl DepsError {
    /// Stable reason code, for scripts and `--json`.
    pub fn code(&self) -> &'static str {
        match self {
            DepsError::BadRequest { .. } => "bad-request",
            DepsError::Ambiguous { .. } => "ambiguous",
            DepsError::Missing { .. } => "missing",
            DepsError::Unsatisfiable { .. } => "unsatisfiable",
            DepsError::Conflict { .. } => "conflict",
            DepsError::Malformed { .. } => "malformed-dependency",
            DepsError::Unsupported { .. } => "unsupported-dependency",
            DepsError::TooComplex { .. } => "too-complex",
            DepsError::Catalog(_) => "catalog",
        }
    }

    /// The chain of requirements that led to the failure, where there is one.
    pub fn chain(&self) -> &[String] {
        match self {
            DepsError::Missing { chain, .. }
            | DepsError::Unsatisfiable { chain, .. }
            | DepsError::Conflict { chain, .. } => chain,
            _ => &[],
        }
    }
}

/// Why a package is in the closure: asked for, or the first package found needing it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum Why {
    Requested {
        requested: String,
    },
    Pulled {
        package: String,
        version: String,
        requirement: String,
    },
}

/// One package of the closure, with its file.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub package: PackageRow,
    pub directory: String,
    pub filename: String,
    pub why: Why,
}

/// What `repofs deps --json` prints for each package.
#[derive(Debug, Serialize)]
pub struct ResolvedJson<'a> {
    pub name: &'a str,
    pub version: Option<&'a str>,
    pub ecosystem: &'a str,
    pub format: &'a str,
    /// The file, relative to the mount: `dists/DIR/FILE`.
    pub path: String,
    pub sha256: &'a str,
    pub why: &'a Why,
}

impl Resolved {
    pub fn path(&self) -> String {
        format!(
            "dists/{}",
            crate::paths::join(&self.directory, &self.filename)
        )
    }

    pub fn json(&self) -> ResolvedJson<'_> {
        ResolvedJson {
            name: &self.package.name,
            version: self.package.version.as_deref(),
            ecosystem: &self.package.meta_source,
            format: &self.package.format,
            path: self.path(),
            sha256: &self.package.sha256,
            why: &self.why,
        }
    }
}

/// The closure in install order: every package after the packages it depends on (within a
/// dependency cycle, any order).
pub fn resolve(cat: &Catalog, requests: &[Request]) -> Result<Vec<PackageRow>, DepsError> {
    Ok(resolve_detailed(cat, requests)?
        .into_iter()
        .map(|r| r.package)
        .collect())
}

/// How to resolve: for which machine, and how long to search.
#[derive(Debug, Clone)]
pub struct Options {
    /// Debian and Arch packages built for other machines are not candidates (`all`/`any`
    /// always are). None: this machine. Either spelling works (`amd64` or `x86_64`).
    pub arch: Option<String>,
    /// Candidates tried before `too-complex`.
    pub step_limit: u64,
    /// Time spent searching before `too-complex`, whatever the steps.
    pub time_limit: std::time::Duration,
    /// Packages the target root already has from dpkg or pacman ([`system::read`]): they
    /// meet dependencies and are not installed again.
    pub system: Vec<system::SystemPkg>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            arch: None,
            step_limit: solver::STEP_LIMIT,
            time_limit: solver::TIME_LIMIT,
            system: Vec::new(),
        }
    }
}

/// [`resolve`] with each package's file and why it is there.
pub fn resolve_detailed(cat: &Catalog, requests: &[Request]) -> Result<Vec<Resolved>, DepsError> {
    resolve_with(cat, requests, &Options::default())
}

/// [`resolve_detailed`] with options.
pub fn resolve_with(
    cat: &Catalog,
    requests: &[Request],
    options: &Options,
) -> Result<Vec<Resolved>, DepsError> {
    resolve_listings(cat.packages_for_deps()?, requests, options)
}

/// The resolver over given packages (what the catalog lists).
pub fn resolve_listings(
    listings: Vec<PackageListing>,
    requests: &[Request],
    options: &Options,
) -> Result<Vec<Resolved>, DepsError> {
    let limits = solver::Limits {
        steps: options.step_limit,
        time: options.time_limit,
    };
    let arch = options.arch.as_deref().unwrap_or(solver::host_arch());
    let universe = solver::Universe::new(listings, arch).with_system(options.system.clone());
    // The search recurses once per chosen package: a big stack keeps deep closures safe.
    std::thread::scope(|s| {
        let handle = std::thread::Builder::new()
            .name("deps".into())
            .stack_size(256 << 20)
            .spawn_scoped(s, || solver::solve(&universe, requests, limits));
        match handle {
            Ok(h) => match h.join() {
                Ok(r) => r,
                Err(panic) => std::panic::resume_unwind(panic),
            },
            // No thread (resource limits): solve on this one.
            Err(_) => solver::solve(&universe, requests, limits),
        }
    })
}

#[cfg(test)]
mod tests;
