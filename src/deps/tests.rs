//! The resolver over hand-made catalog listings (the integration test `tests/deps.rs` does
//! the same through real packages, the daemon and the CLI).

use std::cell::Cell;

use serde_json::{json, Value};

use super::*;
use crate::catalog::{PackageListing, PackageRow};

thread_local! {
    static NEXT_ID: Cell<i64> = const { Cell::new(1) };
}

/// A live package of ecosystem `source` with metadata `meta` (the fields as the catalog keeps
/// them) and, for crates, the `depends` column.
fn pkg(source: &str, name: &str, version: &str, meta: Value) -> PackageListing {
    let id = NEXT_ID.with(|n| {
        let id = n.get();
        n.set(id + 1);
        id
    });
    PackageListing {
        package: PackageRow {
            file_id: id,
            format: "tar.gz".into(),
            meta_source: source.into(),
            name: name.into(),
            version: Some(version.into()),
            arch: None,
            description: None,
            depends: Vec::new(),
            payload_offset: 0,
            payload_size: 0,
            compression: "gzip".into(),
            unpacked_size: 0,
            entry_count: 0,
            sha256: format!("{id:064x}"),
            published_at: 0,
        },
        directory: name.into(),
        filename: format!("{name}-{version}"),
        metadata: meta.to_string(),
    }
}

fn deb(name: &str, version: &str, meta: Value) -> PackageListing {
    pkg("deb", name, version, meta)
}

fn reqs(rs: &[&str]) -> Vec<Request> {
    rs.iter().map(|r| r.parse().expect("request")).collect()
}

fn run(listings: Vec<PackageListing>, rs: &[&str]) -> Result<Vec<Resolved>, DepsError> {
    resolve_listings(listings, &reqs(rs), &Options::default())
}

/// `name version` of the closure, in install order.
fn labels(r: &[Resolved]) -> Vec<String> {
    r.iter()
        .map(|p| {
            format!(
                "{} {}",
                p.package.name,
                p.package.version.as_deref().unwrap_or("")
            )
        })
        .collect()
}

fn limit(step_limit: u64) -> Options {
    Options {
        step_limit,
        ..Options::default()
    }
}

fn ok(listings: Vec<PackageListing>, rs: &[&str]) -> Vec<String> {
    match run(listings, rs) {
        Ok(r) => labels(&r),
        Err(e) => panic!("{rs:?}: {} {e}", e.code()),
    }
}

fn fails(listings: Vec<PackageListing>, rs: &[&str]) -> DepsError {
    match run(listings, rs) {
        Ok(r) => panic!("{rs:?} resolved: {:?}", labels(&r)),
        Err(e) => e,
    }
}

#[test]
fn requests_parse() {
    let r: Request = "foo=1.0-1".parse().expect("parse");
    assert_eq!(r.name, "foo");
    assert_eq!(r.version.as_deref(), Some("1.0-1"));
    assert_eq!(
        "@scope/x".parse::<Request>().expect("scoped").name,
        "@scope/x"
    );
    for bad in ["", "=1", "foo=", "a b", "foo=1=2", "foo=1 "] {
        let e = bad.parse::<Request>().expect_err(bad);
        assert_eq!(e.code(), "bad-request", "{bad}");
    }
}

#[test]
fn debian_highest_versions_and_install_order() {
    let u = vec![
        deb("foo", "1.0", json!({"Depends": "bar (>= 2) | baz, libc6"})),
        deb("bar", "1.0", json!({})),
        deb("bar", "2.1", json!({"Pre-Depends": "libc6 (>= 2.30)"})),
        deb("bar", "2.0", json!({})),
        deb("baz", "1", json!({})),
        deb("libc6", "2.29", json!({})),
        deb("libc6", "2.36-9", json!({})),
    ];
    assert_eq!(ok(u, &["foo"]), ["libc6 2.36-9", "bar 2.1", "foo 1.0"]);
}

#[test]
fn alternatives_in_order_and_fallback() {
    // bar exists but too old: the second alternative is taken.
    let u = vec![
        deb("foo", "1.0", json!({"Depends": "bar (>= 2) | baz"})),
        deb("bar", "1.0", json!({})),
        deb("baz", "1", json!({})),
    ];
    assert_eq!(ok(u, &["foo"]), ["baz 1", "foo 1.0"]);
    // An alternative already chosen meets the clause.
    let u = vec![
        deb("foo", "1.0", json!({"Depends": "baz, bar | baz"})),
        deb("bar", "1.0", json!({})),
        deb("baz", "1", json!({})),
    ];
    assert_eq!(ok(u, &["foo"]), ["baz 1", "foo 1.0"]);
}

#[test]
fn backtracks_when_the_highest_version_fails() {
    let u = vec![
        deb("foo", "1.0", json!({"Depends": "a, b"})),
        deb("a", "2", json!({"Depends": "c (>= 2)"})),
        deb("a", "1", json!({"Depends": "c (<< 2)"})),
        deb("b", "1", json!({"Depends": "c (<< 2)"})),
        deb("c", "1", json!({})),
        deb("c", "2", json!({})),
    ];
    let got = ok(u, &["foo"]);
    assert_eq!(got.len(), 4, "{got:?}");
    assert!(
        got.contains(&"a 1".to_string()) && got.contains(&"c 1".to_string()),
        "{got:?}"
    );
    assert_eq!(got.last().map(String::as_str), Some("foo 1.0"));
}

#[test]
fn exact_version_requests() {
    let u = vec![deb("foo", "1.0", json!({})), deb("foo", "2.0", json!({}))];
    assert_eq!(ok(u.clone(), &["foo=1.0"]), ["foo 1.0"]);
    assert_eq!(ok(u.clone(), &["foo"]), ["foo 2.0"]);
    let e = fails(u.clone(), &["foo=3"]);
    assert_eq!(e.code(), "unsatisfiable");
    assert_eq!(
        e.to_string(),
        "foo=3: no version satisfies it (available: foo 2.0, foo 1.0)"
    );
    // Two requests for different versions of one name cannot both hold.
    let e = fails(u, &["foo=1.0", "foo=2.0"]);
    assert_eq!(e.code(), "conflict");
    assert!(e.to_string().contains("foo 1.0 is already chosen"), "{e}");
}

#[test]
fn conflicts_and_breaks_are_respected() {
    // x conflicts with y << 2: the only y there is makes it unresolvable...
    let u = vec![
        deb("app", "1", json!({"Depends": "x, y"})),
        deb("x", "1", json!({"Conflicts": "y (<< 2)"})),
        deb("y", "1.5", json!({})),
    ];
    let e = fails(u.clone(), &["app"]);
    assert_eq!(e.code(), "conflict");
    assert_eq!(
        e.to_string(),
        "conflict: app 1 → y: y 1.5 is excluded by x 1 (conflicts with y (<< 2)), which came from app 1 → x 1"
    );
    // ...a y 2 resolves it, and Breaks acts the same the other way round.
    let mut u2 = u.clone();
    u2.push(deb("y", "2", json!({})));
    assert_eq!(ok(u2, &["app"]), ["x 1", "y 2", "app 1"]);
    let u3 = vec![
        deb("app", "1", json!({"Depends": "x, y"})),
        deb("x", "1", json!({})),
        deb("y", "2", json!({"Breaks": "x (<< 2)"})),
        deb("y", "1", json!({})),
    ];
    // y 2 breaks x 1, so the resolver backs off to y 1.
    assert_eq!(ok(u3, &["app"]), ["x 1", "y 1", "app 1"]);
}

#[test]
fn virtual_packages_through_provides() {
    let u = vec![
        deb(
            "mailer",
            "1",
            json!({"Depends": "mail-transport-agent, libabi (>= 3)"}),
        ),
        deb(
            "postfix",
            "3.7",
            json!({"Provides": "mail-transport-agent", "Conflicts": "mail-transport-agent"}),
        ),
        deb(
            "exim4",
            "4.96",
            json!({"Provides": "mail-transport-agent", "Conflicts": "mail-transport-agent"}),
        ),
        deb("libfoo2", "1", json!({"Provides": "libabi (= 2)"})),
        deb("libfoo3", "1", json!({"Provides": "libabi (= 3)"})),
        deb("libbar", "9", json!({"Provides": "libabi"})),
    ];
    let got = ok(u.clone(), &["mailer"]);
    assert_eq!(got.len(), 3, "{got:?}");
    assert!(got.contains(&"libfoo3 1".to_string()), "{got:?}");
    let mtas = got
        .iter()
        .filter(|l| l.starts_with("postfix") || l.starts_with("exim4"));
    assert_eq!(mtas.count(), 1, "one MTA (they conflict): {got:?}");
    // A request may name a virtual package.
    assert_eq!(ok(u.clone(), &["libabi"]).len(), 1);
    // Both MTAs at once: each conflicts with what the other provides.
    let e = fails(u, &["postfix", "exim4"]);
    assert_eq!(e.code(), "conflict", "{e}");
}

#[test]
fn cycles_terminate_in_some_order() {
    let u = vec![
        deb("a", "1", json!({"Depends": "b"})),
        deb("b", "1", json!({"Depends": "c"})),
        deb("c", "1", json!({"Depends": "a"})),
        deb("d", "1", json!({"Depends": "a"})),
    ];
    let got = ok(u, &["d"]);
    assert_eq!(got.len(), 4, "{got:?}");
    assert_eq!(got.last().map(String::as_str), Some("d 1"));
}

#[test]
fn errors_name_the_chain() {
    let u = vec![
        deb("foo", "1.0", json!({"Depends": "bar (>= 2)"})),
        deb("bar", "2.1", json!({"Depends": "baz"})),
    ];
    let e = fails(u, &["foo"]);
    assert_eq!(e.code(), "missing");
    assert_eq!(e.to_string(), "foo 1.0 → bar 2.1 → baz: no package baz");
    assert_eq!(e.chain(), ["foo 1.0", "bar 2.1", "baz"]);
    let e = fails(vec![], &["nothing"]);
    assert_eq!(e.to_string(), "nothing: no package nothing");
    let u = vec![
        deb("foo", "1.0", json!({"Depends": "bar (>= 2) | qux"})),
        deb("bar", "1.0", json!({})),
    ];
    let e = fails(u, &["foo"]);
    assert_eq!(e.code(), "unsatisfiable");
    assert_eq!(
        e.to_string(),
        "foo 1.0 → bar (>= 2) | qux: no version satisfies it (available: bar 1.0)"
    );
}

#[test]
fn malformed_and_unsupported_dependencies_name_the_package() {
    let u = vec![
        deb("foo", "1.0", json!({"Depends": "bar"})),
        deb("bar", "1", json!({"Depends": "libc6 (>= )"})),
    ];
    let e = fails(u, &["foo"]);
    assert_eq!(e.code(), "malformed-dependency");
    assert_eq!(
        e.to_string(),
        "bar 1: malformed dependency \"libc6 (>= )\": a relation without a version"
    );
    let u = vec![pkg(
        "npm",
        "web",
        "1.0.0",
        json!({"dependencies": {"x": "github:u/x"}}),
    )];
    let e = fails(u, &["web"]);
    assert_eq!(e.code(), "unsupported-dependency");
    assert!(
        e.to_string()
            .starts_with("web 1.0.0: unsupported dependency \"x@github:u/x\""),
        "{e}"
    );
    // A malformed package nobody asks for does not matter.
    let u = vec![
        deb("ok", "1", json!({})),
        deb("broken", "1", json!({"Depends": "(("})),
    ];
    assert_eq!(ok(u, &["ok"]), ["ok 1"]);
}

#[test]
fn ecosystems_do_not_mix() {
    let u = vec![
        pkg(
            "npm",
            "web",
            "1.0.0",
            json!({"dependencies": {"left": "^1.0.0"}}),
        ),
        deb("left", "1.0.0", json!({})),
    ];
    let e = fails(u, &["web"]);
    assert_eq!(e.to_string(), "web 1.0.0 → left@^1.0.0: no package left");
    let u = vec![
        pkg("npm", "left", "1.0.0", json!({})),
        deb("left", "1.0.0", json!({})),
    ];
    let e = fails(u.clone(), &["left"]);
    assert_eq!(e.code(), "ambiguous");
    assert_eq!(
        e.to_string(),
        "left: ambiguous, it is a package in deb, npm; prefix one (e.g. deb:left)"
    );
    let got = run(u, &["npm:left"]).expect("prefixed");
    assert_eq!(got[0].package.meta_source, "npm");
}

#[test]
fn npm_reuses_a_fitting_version_and_nests_others() {
    let npm = |n: &str, v: &str, deps: Value| pkg("npm", n, v, json!({ "dependencies": deps }));
    let u = vec![
        npm("app", "1.0.0", json!({"a": "^1.0.0", "b": "~2.0.0"})),
        npm("a", "1.4.0", json!({"c": "^1.0.0"})),
        npm("a", "2.0.0", json!({})),
        npm("b", "2.0.3", json!({"c": "~1.2.0", "a": "1.x"})),
        npm("b", "2.1.0", json!({})),
        npm("c", "1.2.5", json!({})),
        npm("c", "1.5.0", json!({})),
        npm("c", "1.6.0-beta.1", json!({})),
    ];
    let got = ok(u, &["app"]);
    // c ^1 takes 1.5.0 (not the pre-release); b's c ~1.2 cannot use it and gets 1.2.5
    // beside it; b's a 1.x reuses a 1.4.0.
    assert_eq!(
        got,
        ["c 1.5.0", "a 1.4.0", "c 1.2.5", "b 2.0.3", "app 1.0.0"]
    );
}

#[test]
fn pacman_provides_conflicts_and_pkgrel() {
    let alpm = |n: &str, v: &str, meta: Value| pkg("pkginfo", n, v, meta);
    let u = vec![
        alpm("app", "1.0-1", json!({"depend": ["sh>=5", "libz=1.3"]})),
        alpm("bash", "5.2.026-2", json!({"provides": "sh=5.2.026"})),
        alpm("dash", "0.5.12-1", json!({"provides": "sh"})),
        alpm("libz", "1.3-2", json!({})),
        alpm("libz", "1.2.13-1", json!({})),
    ];
    assert_eq!(
        ok(u.clone(), &["app"]),
        ["bash 5.2.026-2", "libz 1.3-2", "app 1.0-1"]
    );
    let mut u2 = u.clone();
    u2.push(alpm("zsh", "5.9-5", json!({"conflict": "bash<6"})));
    let e = fails(u2, &["app", "zsh"]);
    assert_eq!(e.code(), "conflict", "{e}");
}

#[test]
fn distpac_tpm_and_cargo() {
    let u = vec![
        pkg(
            "distpac",
            "site",
            "1.0.0",
            json!({"dependencies": {"db": "^1.2"}}),
        ),
        pkg("distpac", "db", "1.3.0", json!({})),
        pkg("distpac", "db", "2.0.0", json!({})),
        pkg(
            "tpm",
            "tool",
            "3.1",
            json!({"Dependencies": {"rt": ">= 1.10"}}),
        ),
        pkg("tpm", "rt", "1.9", json!({})),
        pkg("tpm", "rt", "1.10", json!({})),
    ];
    assert_eq!(ok(u.clone(), &["site"]), ["db 1.3.0", "site 1.0.0"]);
    assert_eq!(ok(u, &["tool"]), ["rt 1.10", "tool 3.1"]);
    let mut c = pkg("cargo", "bin", "0.1.0", json!({}));
    c.package.depends = vec!["serde ^1.0.100".into()];
    let u = vec![
        c,
        pkg("cargo", "serde", "1.0.99", json!({})),
        pkg("cargo", "serde", "1.0.219", json!({})),
    ];
    assert_eq!(ok(u, &["bin"]), ["serde 1.0.219", "bin 0.1.0"]);
}

/// `width` packages of 2 versions each, all independent, then a requirement that fails:
/// chronological backtracking would try all 2^width combinations.
fn wide(width: usize, last: &str) -> Vec<PackageListing> {
    let mut u = Vec::new();
    let mut depends = Vec::new();
    for i in 0..width {
        let n = format!("p{i:02}");
        u.push(deb(&n, "1", json!({})));
        u.push(deb(&n, "2", json!({"Conflicts": "never-there"})));
        depends.push(n);
    }
    depends.push(last.into());
    u.push(deb("zz", "1", json!({})));
    u.push(deb("yy", "1", json!({"Conflicts": "zz"})));
    u.push(deb("root", "1", json!({"Depends": depends.join(", ")})));
    u
}

#[test]
fn failures_jump_back_past_unrelated_choices() {
    // Nothing meets zz (>= 2), whatever the 30 choices before it: answered at once.
    let e =
        resolve_listings(wide(30, "zz (>= 2)"), &reqs(&["root"]), &limit(100)).expect_err("fails");
    assert_eq!(e.code(), "unsatisfiable", "{e}");
    assert_eq!(
        e.to_string(),
        "root 1 → zz (>= 2): no version satisfies it (available: zz 1)"
    );
    // The same for a conflict between two of root's own dependencies.
    let mut u = wide(30, "zz");
    if let Some(root) = u.last_mut() {
        root.metadata = json!({"Depends": format!("zz, {}, yy", (0..30).map(|i| format!("p{i:02}")).collect::<Vec<_>>().join(", "))}).to_string();
    }
    let e = resolve_listings(u, &reqs(&["root"]), &limit(100)).expect_err("fails");
    assert_eq!(e.code(), "conflict", "{e}");
}

/// Pigeonhole: `holes + 1` pigeons each need a hole (`hJ (= I)`: hole J held by pigeon I), and
/// a hole holds one version, so one pigeon is always left out; every choice is a real
/// culprit, so the search must go through the arrangements.
fn pigeons(holes: usize) -> Vec<PackageListing> {
    let mut u = Vec::new();
    for j in 0..holes {
        for i in 0..=holes {
            u.push(deb(&format!("h{j}"), &i.to_string(), json!({})));
        }
    }
    let mut all = Vec::new();
    for i in 0..=holes {
        let alts: Vec<String> = (0..holes).map(|j| format!("h{j} (= {i})")).collect();
        u.push(deb(
            &format!("p{i}"),
            "1",
            json!({"Depends": alts.join(" | ")}),
        ));
        all.push(format!("p{i}"));
    }
    u.push(deb("root", "1", json!({"Depends": all.join(", ")})));
    u
}

#[test]
fn the_search_is_bounded() {
    let e = resolve_listings(pigeons(8), &reqs(&["root"]), &limit(50)).expect_err("bounded");
    assert_eq!(e.code(), "too-complex");
    assert_eq!(
        e.to_string(),
        "too complex: no answer within 50 candidates or 30s; ask for fewer packages or pin versions (NAME=VERSION)"
    );
    // The clock bounds it too.
    let quick = Options {
        time_limit: std::time::Duration::ZERO,
        ..Options::default()
    };
    let e = resolve_listings(pigeons(8), &reqs(&["root"]), &quick).expect_err("timed");
    assert_eq!(e.code(), "too-complex");
    // With room enough the real reason comes out.
    let e = resolve_listings(pigeons(3), &reqs(&["root"]), &limit(100_000)).expect_err("conflict");
    assert_eq!(e.code(), "conflict", "{e}");
}

#[test]
fn duplicate_files_of_one_version_count_once() {
    let u = vec![deb("foo", "1.0", json!({})), deb("foo", "1.0", json!({}))];
    assert_eq!(ok(u, &["foo"]), ["foo 1.0"]);
}

#[test]
fn other_architectures_are_not_candidates() {
    let with_arch = |mut l: PackageListing, a: &str| {
        l.package.arch = Some(a.into());
        l
    };
    let u = vec![
        with_arch(deb("hello", "2.0", json!({})), "arm64"),
        with_arch(deb("hello", "1.0", json!({"Depends": "data"})), "amd64"),
        with_arch(deb("data", "1", json!({})), "all"),
        with_arch(pkg("pkginfo", "tool", "1-1", json!({})), "aarch64"),
    ];
    let on = |arch: &str| Options {
        arch: Some(arch.into()),
        ..Options::default()
    };
    let got = resolve_listings(u.clone(), &reqs(&["hello"]), &on("x86_64")).expect("amd64");
    assert_eq!(labels(&got), ["data 1", "hello 1.0"]);
    let got = resolve_listings(u.clone(), &reqs(&["hello"]), &on("arm64")).expect("arm64");
    assert_eq!(labels(&got), ["hello 2.0"]);
    let e = resolve_listings(u, &reqs(&["tool"]), &on("amd64")).expect_err("foreign");
    assert_eq!(
        e.to_string(),
        "tool: no version satisfies it (available: tool 1-1 (aarch64))"
    );
}

/// On demand (`cargo test --lib deps::tests::large -- --ignored --nocapture`): time for a
/// closure over a big repository, against the time to build the universe from the same rows.
#[test]
#[ignore]
fn large_repository_timing() {
    let n = 5000usize;
    let mut u = Vec::new();
    let mut x: u64 = 0x9e3779b97f4a7c15;
    let mut rnd = |m: usize| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x % m as u64) as usize
    };
    for i in 0..n {
        for v in 1..=3 {
            let deps: Vec<String> = if i == 0 {
                vec![]
            } else {
                // The one before keeps the whole chain in the closure.
                (0..3)
                    .map(|_| format!("p{} (>= {})", rnd(i), 1 + rnd(3)))
                    .chain([format!("p{}", i - 1)])
                    .collect()
            };
            u.push(deb(
                &format!("p{i}"),
                &v.to_string(),
                json!({"Depends": deps.join(", ")}),
            ));
        }
    }
    let t = std::time::Instant::now();
    let _ = solver::Universe::new(u.clone(), "amd64");
    let build = t.elapsed();
    let t = std::time::Instant::now();
    let got = run(u, &[&format!("p{}", n - 1)]).expect("resolves");
    let total = t.elapsed();
    eprintln!(
        "{} packages, closure of {}: universe {:?}, resolve incl. universe {:?}, ratio {:.1}",
        3 * n,
        got.len(),
        build,
        total,
        total.as_secs_f64() / build.as_secs_f64()
    );
}

#[test]
fn npm_optional_and_peer_dependencies() {
    let u = vec![
        pkg(
            "npm",
            "ui",
            "1.0.0",
            json!({
                "dependencies": {"core": "^1.0.0", "fsevents": "^2.0.0"},
                "optionalDependencies": {"fsevents": "^2.0.0", "absent": "^1.0.0"},
                "peerDependencies": {"react": ">=17 <19", "ghost": "^1", "core": "^1.0.0"},
                "peerDependenciesMeta": {"ghost": {"optional": true}}
            }),
        ),
        pkg("npm", "core", "1.2.0", json!({})),
        pkg("npm", "fsevents", "2.3.3", json!({})),
        pkg("npm", "react", "18.3.1", json!({})),
        pkg("npm", "react", "19.0.0", json!({})),
        pkg("npm", "ghost", "1.0.0", json!({})),
    ];
    let got = ok(u.clone(), &["ui"]);
    // fsevents (optional, there) is in; absent (optional, missing) and ghost (optional peer)
    // are not; react is a peer, so it is installed, within its range.
    let set: std::collections::BTreeSet<&str> = got.iter().map(String::as_str).collect();
    assert_eq!(
        set,
        ["core 1.2.0", "fsevents 2.3.3", "react 18.3.1", "ui 1.0.0"]
            .into_iter()
            .collect(),
        "{got:?}"
    );
    // A missing required peer is an error like any dependency.
    let u: Vec<_> = u
        .into_iter()
        .filter(|l| l.package.name != "react")
        .collect();
    let e = fails(u, &["ui"]);
    assert_eq!(e.to_string(), "ui 1.0.0 → react@>=17 <19: no package react");
}

/// On demand: how long the default bound takes to say `too-complex` on a search that must
/// go through its choices (pigeonhole, 10 pigeons in 9 holes).
#[test]
#[ignore]
fn worst_case_timing() {
    let t = std::time::Instant::now();
    let e = run(pigeons(9), &["root"]).expect_err("too complex");
    eprintln!("{} after {:?}", e.code(), t.elapsed());
    assert_eq!(e.code(), "too-complex");
}

#[test]
fn packages_installed_in_the_root_meet_dependencies() {
    let status = "Package: libc6\nStatus: install ok installed\nVersion: 2.36-9\n\n\
                  Package: mawk\nStatus: install ok installed\nVersion: 1.3.4\nProvides: awk\n\n\
                  Package: gone\nStatus: deinstall ok config-files\nVersion: 1\n";
    let with_root = Options {
        system: crate::deps::system::dpkg_status(status),
        ..Options::default()
    };
    let u = vec![
        deb(
            "app",
            "1.0",
            json!({"Depends": "libc6 (>= 2.34), awk, helper"}),
        ),
        deb("helper", "1", json!({"Depends": "libc6"})),
        deb("toonew", "1", json!({"Depends": "libc6 (>= 2.40)"})),
        deb("needsgone", "1", json!({"Depends": "gone"})),
        // The repository has a newer mawk: the installed one still meets `awk`.
        deb("mawk", "9", json!({"Provides": "awk"})),
    ];
    let got = resolve_listings(u.clone(), &reqs(&["app"]), &with_root).expect("resolves");
    assert_eq!(labels(&got), ["helper 1", "app 1.0"]);
    // Without the root's database, libc6 is missing from the repository.
    assert_eq!(fails(u.clone(), &["app"]).code(), "missing");
    // Too old an installed version is named, not called missing.
    let e = resolve_listings(u.clone(), &reqs(&["toonew"]), &with_root).expect_err("too old");
    assert_eq!(e.code(), "unsatisfiable");
    assert_eq!(
        e.to_string(),
        "toonew 1 → libc6 (>= 2.40): no version satisfies it (available: libc6 2.36-9 (installed))"
    );
    // Only installed packages count, not removed ones that left their config files.
    let e = resolve_listings(u.clone(), &reqs(&["needsgone"]), &with_root).expect_err("gone");
    assert_eq!(e.code(), "missing");
    // A request is installed from the repository even when the root has that name.
    let got = resolve_listings(u, &reqs(&["mawk"]), &with_root).expect("resolves");
    assert_eq!(labels(&got), ["mawk 9"]);
}
