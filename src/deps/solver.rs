//! The search: backtracking over an agenda of requirements, newest candidates first, so the
//! first complete answer is the one with the highest versions in the order the requirements
//! were met. A failure names the choices it depends on, and the search jumps back past the
//! ones it does not (see [`Fail`]). Every candidate tried counts as a step; past
//! [`STEP_LIMIT`] steps or [`TIME_LIMIT`] the search stops with `too-complex`.
//!
//! The agenda is breadth-first (a request's direct dependencies before theirs), which keeps
//! error chains short and matches npm's placement of shallow dependencies first.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

use super::relations::{self, Atom, Bad, Clause, Eco, Relations, Req};
use super::system::SystemPkg;
use super::{DepsError, Request, Resolved, Why};
use crate::catalog::PackageListing;
use crate::version::compare;

/// Candidates tried before giving up. Real closures need a few per package; this leaves room
/// for deep backtracking yet answers in about a second when it is exhausted.
pub const STEP_LIMIT: u64 = 200_000;

/// Re-checking requirements after a backtrack is work that steps do not count: the clock
/// bounds it.
pub const TIME_LIMIT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub steps: u64,
    pub time: Duration,
}

pub struct Pkg {
    pub listing: PackageListing,
    pub eco: Eco,
    pub version: String,
    pub rel: Result<Relations, Bad>,
}

impl Pkg {
    fn name(&self) -> &str {
        &self.listing.package.name
    }

    fn label(&self) -> String {
        format!("{} {}", self.name(), self.version)
    }

    /// Does this package (by its name, or by what it provides) satisfy `atom` in `eco`?
    fn answers(&self, eco: Eco, atom: &Atom) -> bool {
        if self.eco != eco {
            return false;
        }
        if self.name() == atom.name && atom.req.matches(eco.scheme(), &self.version) {
            return true;
        }
        self.provides(atom)
    }

    /// The names it answers to: its own and what it provides.
    fn names(&self) -> Vec<String> {
        let mut names = vec![self.name().to_string()];
        if let Ok(rel) = &self.rel {
            for p in &rel.provides {
                if !names.contains(&p.name) {
                    names.push(p.name.clone());
                }
            }
        }
        names
    }

    fn provides(&self, atom: &Atom) -> bool {
        let Ok(rel) = &self.rel else { return false };
        rel.provides
            .iter()
            .any(|p| p.meets(self.eco.scheme(), atom))
    }
}

type Key = (Eco, String);

/// Whether a host of architecture `want` installs a package built for `arch`. Debian and
/// pacman spell some the same machine differently; `all`/`any` (and no arch) suit every host.
pub fn arch_fits(arch: Option<&str>, want: &str) -> bool {
    const SAME: &[&[&str]] = &[
        &["amd64", "x86_64"],
        &["arm64", "aarch64"],
        &["i386", "i686", "x86"],
        &["armhf", "armv7h", "arm"],
    ];
    match arch {
        None | Some("all" | "any" | "") => true,
        Some(a) if a == want => true,
        Some(a) => SAME
            .iter()
            .any(|class| class.contains(&a) && class.contains(&want)),
    }
}

/// The machine this runs on, in Rust's spelling (`arch_fits` maps it).
pub fn host_arch() -> &'static str {
    std::env::consts::ARCH
}

pub struct Universe {
    pkgs: Vec<Pkg>,
    /// Debian and Arch packages set aside as built for another architecture, by name, for
    /// messages.
    foreign: HashMap<Key, Vec<String>>,
    /// Real packages by name, newest first; one file per (name, version).
    by_name: HashMap<Key, Vec<usize>>,
    /// Packages providing a name, newest first.
    providers: HashMap<Key, Vec<usize>>,
    /// What the target root's own package manager installed: meets dependencies as it is.
    system: Vec<SystemPkg>,
}

impl Universe {
    pub fn new(listings: Vec<PackageListing>, arch: &str) -> Universe {
        let mut foreign: HashMap<Key, Vec<String>> = HashMap::new();
        let mut pkgs: Vec<Pkg> = listings
            .into_iter()
            .filter(|l| {
                let eco = Eco::from_source(&l.package.meta_source);
                let a = l.package.arch.as_deref();
                if matches!(eco, Eco::Deb | Eco::Alpm) && !arch_fits(a, arch) {
                    foreign
                        .entry((eco, l.package.name.clone()))
                        .or_default()
                        .push(format!(
                            "{} {} ({})",
                            l.package.name,
                            l.package.version.as_deref().unwrap_or(""),
                            a.unwrap_or("")
                        ));
                    return false;
                }
                true
            })
            .map(|listing| {
                let eco = Eco::from_source(&listing.package.meta_source);
                let fields = match serde_json::from_str::<Value>(&listing.metadata) {
                    Ok(Value::Object(o)) => o,
                    _ => Map::new(),
                };
                let rel = relations::parse(eco, &fields, &listing.package.depends);
                Pkg {
                    version: listing.package.version.clone().unwrap_or_default(),
                    eco,
                    rel,
                    listing,
                }
            })
            .collect();
        // Newest first; among files of the same version, the latest published.
        pkgs.sort_by(|a, b| {
            (a.eco, a.name())
                .cmp(&(b.eco, b.name()))
                .then_with(|| compare(a.eco.scheme(), &b.version, &a.version))
                .then_with(|| b.version.cmp(&a.version))
                .then_with(|| b.listing.package.file_id.cmp(&a.listing.package.file_id))
        });
        pkgs.dedup_by(|later, earlier| {
            later.eco == earlier.eco
                && later.name() == earlier.name()
                && later.version == earlier.version
        });
        let mut by_name: HashMap<Key, Vec<usize>> = HashMap::new();
        let mut providers: HashMap<Key, Vec<usize>> = HashMap::new();
        for (i, p) in pkgs.iter().enumerate() {
            by_name
                .entry((p.eco, p.name().to_string()))
                .or_default()
                .push(i);
            if let Ok(rel) = &p.rel {
                for pr in &rel.provides {
                    let list = providers.entry((p.eco, pr.name.clone())).or_default();
                    if !list.contains(&i) {
                        list.push(i);
                    }
                }
            }
        }
        for list in providers.values_mut() {
            list.sort_by(|&a, &b| {
                let (a, b) = (&pkgs[a], &pkgs[b]);
                compare(a.eco.scheme(), &b.version, &a.version).then_with(|| a.name().cmp(b.name()))
            });
        }
        Universe {
            pkgs,
            foreign,
            by_name,
            providers,
            system: Vec::new(),
        }
    }

    /// The same universe over a root that already has `system` installed.
    pub fn with_system(mut self, system: Vec<SystemPkg>) -> Universe {
        self.system = system;
        self
    }

    /// Whether an installed system package meets one of `clause`'s alternatives, as apt and
    /// pacman keep an installed package that satisfies a dependency.
    fn system_meets(&self, eco: Eco, clause: &Clause) -> bool {
        clause
            .alts
            .iter()
            .any(|a| self.system.iter().any(|p| p.answers(eco, a)))
    }

    /// Every package that could meet `atom`: the real ones newest first, then providers.
    fn candidates(&self, eco: Eco, atom: &Atom) -> Vec<usize> {
        let key = (eco, atom.name.clone());
        let mut out: Vec<usize> = Vec::new();
        for &i in self.by_name.get(&key).into_iter().flatten() {
            if atom.req.matches(eco.scheme(), &self.pkgs[i].version) {
                out.push(i);
            }
        }
        for &i in self.providers.get(&key).into_iter().flatten() {
            if self.pkgs[i].provides(atom) && !out.contains(&i) {
                out.push(i);
            }
        }
        out
    }

    fn known(&self, eco: Eco, name: &str) -> bool {
        let key = (eco, name.to_string());
        self.by_name.contains_key(&key) || self.providers.contains_key(&key)
    }
}

/// A requirement to meet: a clause of some package (or a request), with the chain above it.
#[derive(Clone)]
struct Task {
    eco: Eco,
    clause: Rc<Clause>,
    /// The package that has it (None: a request).
    parent: Option<usize>,
    /// Labels from the request down to `parent`.
    chain: Rc<Vec<String>>,
}

impl Task {
    fn chain_to_clause(&self) -> Vec<String> {
        let mut c = (*self.chain).clone();
        c.push(self.clause.text.clone());
        c
    }
}

struct Chosen {
    parent: Option<usize>,
    requirement: String,
    chain: Rc<Vec<String>>,
}

/// A failure that backtracking may get around (`Soft`), or one that ends the search.
///
/// A soft failure carries its culprits: the chosen packages whose choice it depends on (the
/// package whose requirement failed, and those that excluded its candidates). A choice not
/// among them cannot help, so the search jumps back past it instead of trying its siblings
/// (conflict-directed backjumping): a dependency nothing can meet fails at once instead of
/// after every combination of the unrelated choices made before it.
enum Fail {
    Soft(DepsError, Vec<usize>),
    Hard(DepsError),
}

struct Solver<'u> {
    u: &'u Universe,
    tasks: Vec<Task>,
    order: Vec<usize>,
    chosen: Vec<Option<Chosen>>,
    /// Chosen packages under every name they answer to (own and provided): lookups stay
    /// proportional to what a name has, not to the whole closure.
    named: HashMap<Key, Vec<usize>>,
    /// Chosen packages' Conflicts entries, by the name they conflict with: (package, entry).
    conflicting: HashMap<Key, Vec<(usize, usize)>>,
    /// Which package meets which requirement: (parent, child); parent None is a request.
    edges: Vec<(Option<usize>, usize)>,
    steps: u64,
    limits: Limits,
    deadline: Instant,
    /// Requirements looked at, to read the clock now and then.
    work: u64,
}

pub fn solve(
    u: &Universe,
    requests: &[Request],
    limits: Limits,
) -> Result<Vec<Resolved>, DepsError> {
    let mut s = Solver {
        u,
        tasks: Vec::new(),
        order: Vec::new(),
        chosen: (0..u.pkgs.len()).map(|_| None).collect(),
        named: HashMap::new(),
        conflicting: HashMap::new(),
        edges: Vec::new(),
        steps: 0,
        limits,
        deadline: Instant::now() + limits.time,
        work: 0,
    };
    for r in requests {
        s.tasks.push(root_task(u, r)?);
    }
    match s.run(0) {
        Ok(()) => {}
        Err(Fail::Soft(e, _) | Fail::Hard(e)) => return Err(e),
    }
    Ok(s.install_order()
        .into_iter()
        .map(|i| {
            let p = &u.pkgs[i];
            let why = match s.chosen[i].as_ref() {
                Some(Chosen {
                    parent: Some(parent),
                    requirement,
                    ..
                }) => Why::Pulled {
                    package: u.pkgs[*parent].name().to_string(),
                    version: u.pkgs[*parent].version.clone(),
                    requirement: requirement.clone(),
                },
                Some(Chosen { requirement, .. }) => Why::Requested {
                    requested: requirement.clone(),
                },
                None => Why::Requested {
                    requested: p.name().to_string(),
                },
            };
            Resolved {
                package: p.listing.package.clone(),
                directory: p.listing.directory.clone(),
                filename: p.listing.filename.clone(),
                why,
            }
        })
        .collect())
}

/// A request as a requirement: its ecosystem from the prefix, or the one ecosystem that has
/// the name.
fn root_task(u: &Universe, r: &Request) -> Result<Task, DepsError> {
    let text = r.to_string();
    let (eco, name) = match r.name.split_once(':') {
        Some((prefix, rest)) if !rest.is_empty() && Eco::from_prefix(prefix).is_some() => {
            (Eco::from_prefix(prefix), rest)
        }
        _ => (None, r.name.as_str()),
    };
    let eco = match eco {
        Some(e) => e,
        None => {
            let mut ecos: Vec<Eco> = u
                .by_name
                .keys()
                .chain(u.providers.keys())
                .chain(u.foreign.keys())
                .filter(|(_, n)| n == name)
                .map(|(e, _)| *e)
                .collect();
            ecos.sort();
            ecos.dedup();
            match ecos[..] {
                [] => {
                    return Err(DepsError::Missing {
                        chain: vec![text],
                        names: vec![name.to_string()],
                    })
                }
                [e] => e,
                _ => {
                    return Err(DepsError::Ambiguous {
                        name: name.to_string(),
                        ecosystems: ecos.iter().map(|e| e.as_str().to_string()).collect(),
                    })
                }
            }
        }
    };
    let atom = Atom {
        name: name.to_string(),
        req: r.version.clone().map_or(Req::Any, Req::Exact),
        text: text.clone(),
    };
    Ok(Task {
        eco,
        clause: Rc::new(Clause {
            optional: false,
            alts: vec![atom],
            text,
        }),
        parent: None,
        chain: Rc::new(Vec::new()),
    })
}

/// Why a candidate cannot join what is chosen.
enum Excluded {
    /// Another version of the same name is chosen.
    Taken(usize),
    /// A chosen package conflicts with it (`atom` is the chosen one's Conflicts entry).
    ConflictedBy(usize, String),
    /// It conflicts with a chosen package.
    Conflicts(usize, String),
}

impl Solver<'_> {
    fn run(&mut self, from: usize) -> Result<(), Fail> {
        let mut i = from;
        while i < self.tasks.len() {
            self.work += 1;
            if self.work.is_multiple_of(1024) && Instant::now() >= self.deadline {
                return Err(self.too_complex());
            }
            let task = self.tasks[i].clone();
            if let Some(c) = self.met_by(&task) {
                self.edges.push((task.parent, c));
                i += 1;
                continue;
            }
            // A dependency (not a request: what is asked for is installed from here) that
            // the root already meets.
            if task.parent.is_some() && self.u.system_meets(task.eco, &task.clause) {
                i += 1;
                continue;
            }
            let mut options: Vec<usize> = Vec::new();
            let mut excluded: Vec<(usize, Excluded)> = Vec::new();
            for atom in &task.clause.alts {
                for c in self.u.candidates(task.eco, atom) {
                    if options.contains(&c) {
                        continue;
                    }
                    match self.excluded(c) {
                        None => options.push(c),
                        Some(why) => excluded.push((c, why)),
                    }
                }
            }
            // What this requirement's failure depends on so far: the package that has it and
            // whatever excluded its other candidates.
            let mut culprits: Vec<usize> = task.parent.into_iter().collect();
            culprits.extend(excluded.iter().map(|(_, why)| match why {
                Excluded::Taken(s) | Excluded::ConflictedBy(s, _) | Excluded::Conflicts(s, _) => *s,
            }));
            if options.is_empty() && !task.clause.optional {
                return Err(Fail::Soft(self.no_option(&task, &excluded), culprits));
            }
            let mut first: Option<DepsError> = None;
            for c in options {
                self.steps += 1;
                if self.steps > self.limits.steps || Instant::now() >= self.deadline {
                    return Err(self.too_complex());
                }
                let mark = (self.tasks.len(), self.order.len(), self.edges.len());
                self.choose(c, &task)?;
                match self.run(i + 1) {
                    Ok(()) => return Ok(()),
                    Err(hard @ Fail::Hard(_)) => return Err(hard),
                    Err(Fail::Soft(e, why)) => {
                        self.undo(mark);
                        if !why.contains(&c) {
                            // Another candidate here would fail the same way.
                            return Err(Fail::Soft(e, why));
                        }
                        first.get_or_insert(e);
                        culprits.extend(why.into_iter().filter(|&x| x != c));
                    }
                }
            }
            if task.clause.optional {
                // The last option of an optional dependency: do without it.
                return match self.run(i + 1) {
                    Err(Fail::Soft(e, why)) => {
                        culprits.extend(why);
                        culprits.sort_unstable();
                        culprits.dedup();
                        Err(Fail::Soft(first.unwrap_or(e), culprits))
                    }
                    other => other,
                };
            }
            culprits.sort_unstable();
            culprits.dedup();
            let e = first.unwrap_or_else(|| self.no_option(&task, &excluded));
            return Err(Fail::Soft(e, culprits));
        }
        Ok(())
    }

    fn too_complex(&self) -> Fail {
        Fail::Hard(DepsError::TooComplex {
            steps: self.limits.steps,
            time_limit: self.limits.time,
        })
    }

    /// A chosen package that already meets the task (npm: the version already installed).
    fn met_by(&self, task: &Task) -> Option<usize> {
        let mut best: Option<usize> = None;
        for atom in &task.clause.alts {
            let key = (task.eco, atom.name.clone());
            for &c in self.named.get(&key).into_iter().flatten() {
                if self.u.pkgs[c].answers(task.eco, atom) {
                    // Prefer the newest among chosen versions, as npm reuses the hoisted one.
                    let newer = best.is_none_or(|b| {
                        compare(
                            task.eco.scheme(),
                            &self.u.pkgs[c].version,
                            &self.u.pkgs[b].version,
                        ) == Ordering::Greater
                    });
                    if newer {
                        best = Some(c);
                    }
                }
            }
            if best.is_some() {
                return best;
            }
        }
        None
    }

    fn excluded(&self, c: usize) -> Option<Excluded> {
        let p = &self.u.pkgs[c];
        let eco = p.eco;
        if !eco.multi_version() {
            let same = self.named.get(&(eco, p.name().to_string()));
            if let Some(&other) = same
                .into_iter()
                .flatten()
                .find(|&&o| o != c && self.u.pkgs[o].name() == p.name())
            {
                return Some(Excluded::Taken(other));
            }
        }
        // A chosen package's Conflicts naming something this one answers to...
        for name in p.names() {
            for &(s, i) in self.conflicting.get(&(eco, name)).into_iter().flatten() {
                let q = &self.u.pkgs[s];
                if let Ok(rel) = &q.rel {
                    let atom = &rel.conflicts[i];
                    if s != c && p.answers(eco, atom) {
                        return Some(Excluded::ConflictedBy(s, atom.text.clone()));
                    }
                }
            }
        }
        // ...or this one's Conflicts naming a chosen package.
        if let Ok(rel) = &p.rel {
            for atom in &rel.conflicts {
                let key = (eco, atom.name.clone());
                for &s in self.named.get(&key).into_iter().flatten() {
                    if s != c && self.u.pkgs[s].answers(eco, atom) {
                        return Some(Excluded::Conflicts(s, atom.text.clone()));
                    }
                }
            }
        }
        None
    }

    fn choose(&mut self, c: usize, task: &Task) -> Result<(), Fail> {
        let p = &self.u.pkgs[c];
        let rel = match &p.rel {
            Ok(rel) => rel,
            Err(bad) => {
                let (package, text, why) = (p.label(), bad.text.clone(), bad.why.clone());
                return Err(Fail::Hard(if bad.unsupported {
                    DepsError::Unsupported { package, text, why }
                } else {
                    DepsError::Malformed { package, text, why }
                }));
            }
        };
        self.chosen[c] = Some(Chosen {
            parent: task.parent,
            requirement: task.clause.text.clone(),
            chain: task.chain.clone(),
        });
        self.order.push(c);
        for name in p.names() {
            self.named.entry((p.eco, name)).or_default().push(c);
        }
        for (i, atom) in rel.conflicts.iter().enumerate() {
            self.conflicting
                .entry((p.eco, atom.name.clone()))
                .or_default()
                .push((c, i));
        }
        self.edges.push((task.parent, c));
        let mut chain = (*task.chain).clone();
        chain.push(p.label());
        let chain = Rc::new(chain);
        for clause in &rel.depends {
            self.tasks.push(Task {
                eco: p.eco,
                clause: Rc::new(clause.clone()),
                parent: Some(c),
                chain: chain.clone(),
            });
        }
        Ok(())
    }

    fn undo(&mut self, (tasks, order, edges): (usize, usize, usize)) {
        self.tasks.truncate(tasks);
        self.edges.truncate(edges);
        for c in self.order.drain(order..) {
            self.chosen[c] = None;
            let p = &self.u.pkgs[c];
            for name in p.names() {
                if let Some(v) = self.named.get_mut(&(p.eco, name)) {
                    v.retain(|&x| x != c);
                }
            }
            if let Ok(rel) = &p.rel {
                for atom in &rel.conflicts {
                    if let Some(v) = self.conflicting.get_mut(&(p.eco, atom.name.clone())) {
                        v.retain(|&(x, _)| x != c);
                    }
                }
            }
        }
    }

    /// `NAME VERSION (request → … → it)`: a chosen package and how it came in.
    fn chosen_path(&self, s: usize) -> String {
        let mut chain: Vec<String> = self.chosen[s]
            .as_ref()
            .map(|c| (*c.chain).clone())
            .unwrap_or_default();
        chain.push(self.u.pkgs[s].label());
        super::path(&chain)
    }

    fn no_option(&self, task: &Task, excluded: &[(usize, Excluded)]) -> DepsError {
        let chain = task.chain_to_clause();
        if let Some((c, why)) = excluded.first() {
            let cand = self.u.pkgs[*c].label();
            let detail = match why {
                Excluded::Taken(o) => format!(
                    "it needs {cand}, but {} is already chosen ({})",
                    self.u.pkgs[*o].label(),
                    self.chosen_path(*o)
                ),
                Excluded::ConflictedBy(s, atom) => format!(
                    "{cand} is excluded by {} (conflicts with {atom}), which came from {}",
                    self.u.pkgs[*s].label(),
                    self.chosen_path(*s)
                ),
                Excluded::Conflicts(s, atom) => format!(
                    "{cand} conflicts with {atom}, which {} is ({})",
                    self.u.pkgs[*s].label(),
                    self.chosen_path(*s)
                ),
            };
            return DepsError::Conflict { chain, detail };
        }
        let names: Vec<String> = task.clause.alts.iter().map(|a| a.name.clone()).collect();
        let mut available: Vec<String> = Vec::new();
        for n in &names {
            if let Some(other) = self.u.foreign.get(&(task.eco, n.clone())) {
                available.extend(other.iter().cloned());
            }
            // Installed in the root, but too old (or the wrong provider) for this relation.
            available.extend(
                self.u
                    .system
                    .iter()
                    .filter(|p| p.eco == task.eco && p.name == *n)
                    .map(SystemPkg::label),
            );
        }
        if available.is_empty() && names.iter().all(|n| !self.u.known(task.eco, n)) {
            return DepsError::Missing { chain, names };
        }
        for n in &names {
            let key = (task.eco, n.clone());
            for &i in self.u.by_name.get(&key).into_iter().flatten() {
                available.push(self.u.pkgs[i].label());
            }
            for &i in self.u.providers.get(&key).into_iter().flatten() {
                available.push(format!("{} (provides {n})", self.u.pkgs[i].label()));
            }
        }
        DepsError::Unsatisfiable { chain, available }
    }

    /// Post-order from the requests: each package after what it depends on; a cycle is cut
    /// where the walk re-enters it.
    fn install_order(&self) -> Vec<usize> {
        let mut children: HashMap<Option<usize>, Vec<usize>> = HashMap::new();
        for &(parent, child) in &self.edges {
            let list = children.entry(parent).or_default();
            if !list.contains(&child) && parent != Some(child) {
                list.push(child);
            }
        }
        let mut seen = vec![false; self.u.pkgs.len()];
        let mut out = Vec::new();
        // Iterative DFS: (node, index of the next child to visit).
        let roots = children.get(&None).cloned().unwrap_or_default();
        for root in roots {
            if seen[root] {
                continue;
            }
            seen[root] = true;
            let mut stack = vec![(root, 0usize)];
            while let Some((node, next)) = stack.pop() {
                let kids = children.get(&Some(node)).map(Vec::as_slice).unwrap_or(&[]);
                match kids.get(next) {
                    Some(&k) => {
                        stack.push((node, next + 1));
                        if !seen[k] {
                            seen[k] = true;
                            stack.push((k, 0));
                        }
                    }
                    None => out.push(node),
                }
            }
        }
        out
    }
}
