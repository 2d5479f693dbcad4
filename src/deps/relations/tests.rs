use super::*;
use serde_json::json;

fn fields(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(o) => o,
        _ => panic!("not an object"),
    }
}

fn ok(eco: Eco, v: Value) -> Relations {
    parse(eco, &fields(v), &[]).expect("parses")
}

fn err(eco: Eco, v: Value) -> Bad {
    parse(eco, &fields(v), &[]).expect_err("must not parse")
}

/// The one atom of a single-clause relation set, checked against versions.
fn check(eco: Eco, atom: &Atom, yes: &[&str], no: &[&str]) {
    for v in yes {
        assert!(
            atom.req.matches(eco.scheme(), v),
            "{} should accept {v}",
            atom.text
        );
    }
    for v in no {
        assert!(
            !atom.req.matches(eco.scheme(), v),
            "{} should refuse {v}",
            atom.text
        );
    }
}

#[test]
fn debian_relations() {
    let r = ok(
        Eco::Deb,
        json!({
            "Pre-Depends": "dpkg (>= 1.15)",
            "Depends": "libc6 (>= 2.34), mail-transport-agent | exim4 (>> 4.9) | postfix,\n python3:any (<< 4), zlib1g (= 1:1.2.13-1), old (< 2)",
            "Provides": "mta, libfoo-abi (= 3)",
            "Conflicts": "sendmail",
            "Breaks": "exim4 (<< 4)"
        }),
    );
    let texts: Vec<&str> = r.depends.iter().map(|c| c.text.as_str()).collect();
    assert_eq!(
        texts,
        [
            "dpkg (>= 1.15)",
            "libc6 (>= 2.34)",
            "mail-transport-agent | exim4 (>> 4.9) | postfix",
            "python3:any (<< 4)",
            "zlib1g (= 1:1.2.13-1)",
            "old (< 2)"
        ]
    );
    let alts: Vec<&str> = r.depends[2].alts.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(alts, ["mail-transport-agent", "exim4", "postfix"]);
    check(
        Eco::Deb,
        &r.depends[1].alts[0],
        &["2.34", "2.36-9", "1:0.1"],
        &["2.33", "2.34~rc1"],
    );
    check(
        Eco::Deb,
        &r.depends[2].alts[1],
        &["4.96-1", "4.10"],
        &["4.9", "4.9-0", "4.8"],
    );
    check(
        Eco::Deb,
        &r.depends[3].alts[0],
        &["3.11.2-1"],
        &["4", "4.0-1"],
    );
    assert_eq!(r.depends[3].alts[0].name, "python3");
    check(
        Eco::Deb,
        &r.depends[4].alts[0],
        &["1:1.2.13-1", "1:1.2.13-01"],
        &["1.2.13-1", "1:1.2.13"],
    );
    // Obsolete `<` means <=.
    check(Eco::Deb, &r.depends[5].alts[0], &["2", "1.9"], &["2.1"]);
    assert_eq!(r.provides[0].name, "mta");
    assert_eq!(r.provides[0].version, None);
    assert_eq!(r.provides[1].version.as_deref(), Some("3"));
    let conflicts: Vec<&str> = r.conflicts.iter().map(|a| a.text.as_str()).collect();
    assert_eq!(conflicts, ["sendmail", "exim4 (<< 4)"]);
}

#[test]
fn debian_malformed() {
    for (field, text) in [
        ("Depends", "libc6 (>= )"),
        ("Depends", "libc6 (~> 2)"),
        ("Depends", "libc6 (>= 2"),
        ("Depends", "Libc6"),
        ("Depends", "foo [amd64]"),
        ("Depends", "foo (>= 1 2)"),
        ("Provides", "foo (>= 1)"),
        ("Conflicts", "a | b"),
    ] {
        let e = err(Eco::Deb, json!({ field: text }));
        assert!(!e.unsupported, "{text}");
        assert!(text.contains(e.text.trim()), "{text}: {e:?}");
    }
}

#[test]
fn pacman_relations() {
    let r = ok(
        Eco::Alpm,
        json!({
            "depend": ["glibc>=2.38", "bash", "sh=5.2", "python<3.13", "zlib>1:1.2-1"],
            "provides": ["sh=5.2.026", "awk"],
            "conflict": "oldbash<5"
        }),
    );
    let a = |i: usize| &r.depends[i].alts[0];
    check(
        Eco::Alpm,
        a(0),
        &["2.38-1", "2.39-3", "2.38"],
        &["2.37-9", "2.38rc1-1"],
    );
    check(Eco::Alpm, a(1), &["anything"], &[]);
    check(Eco::Alpm, a(2), &["5.2-1", "5.2-7"], &["5.2.1-1"]);
    check(Eco::Alpm, a(3), &["3.12.1-1"], &["3.13-1", "3.13.1-1"]);
    check(
        Eco::Alpm,
        a(4),
        &["1:1.2-2", "1:1.3-1"],
        &["1:1.2-1", "1.9-1"],
    );
    assert_eq!(r.provides[0].version.as_deref(), Some("5.2.026"));
    assert_eq!(r.provides[1].version, None);
    assert_eq!(r.conflicts[0].name, "oldbash");
    for bad in ["glibc>=", "glibc=>2", "gl ibc", "-x", "a>=1 2"] {
        err(Eco::Alpm, json!({ "depend": bad }));
    }
    err(Eco::Alpm, json!({ "provides": "sh>=5" }));
}

#[test]
fn npm_ranges() {
    let r = ok(
        Eco::Npm,
        json!({ "dependencies": {
            "caret": "^1.2.3", "tilde": "~1.2.3", "x": "1.x", "or": "^1.0.0 || ^3.0.0",
            "hyphen": "1.2.3 - 2.3.4", "both": ">=1.2.0 <2.0.0", "star": "*", "empty": "",
            "alias": "npm:real-pkg@^2.0.0", "latest": "latest", "zero": "^0.2.3",
            "pre": "^1.2.3-beta.2"
        }}),
    );
    let by = |n: &str| {
        r.depends
            .iter()
            .find(|c| c.text.starts_with(&format!("{n}@")))
            .map(|c| &c.alts[0])
            .expect(n)
    };
    check(
        Eco::Npm,
        by("caret"),
        &["1.2.3", "1.9.0"],
        &["1.2.2", "2.0.0", "1.3.0-rc.1"],
    );
    check(
        Eco::Npm,
        by("tilde"),
        &["1.2.3", "1.2.9"],
        &["1.3.0", "1.2.2"],
    );
    check(Eco::Npm, by("x"), &["1.0.0", "1.99.1"], &["2.0.0", "0.9.0"]);
    check(Eco::Npm, by("or"), &["1.5.0", "3.1.0"], &["2.0.0", "4.0.0"]);
    check(
        Eco::Npm,
        by("hyphen"),
        &["1.2.3", "2.3.4"],
        &["2.3.5", "1.2.2"],
    );
    check(
        Eco::Npm,
        by("both"),
        &["1.2.0", "1.99.0"],
        &["2.0.0", "1.1.9"],
    );
    check(Eco::Npm, by("star"), &["0.0.1", "9.9.9"], &[]);
    check(Eco::Npm, by("empty"), &["0.0.1"], &[]);
    check(Eco::Npm, by("zero"), &["0.2.3", "0.2.9"], &["0.3.0"]);
    check(
        Eco::Npm,
        by("pre"),
        &["1.2.3-beta.2", "1.2.3-beta.10", "1.2.3", "1.4.0"],
        &["1.2.3-beta.1", "1.2.4-beta.1"],
    );
    assert_eq!(by("alias").name, "real-pkg");
    check(Eco::Npm, by("alias"), &["2.1.0"], &["1.0.0"]);
    assert!(by("latest").req.is_any());
    for (spec, unsupported) in [
        ("git+https://example.org/x.git", true),
        ("file:../x", true),
        ("user/repo", true),
        ("next", true),
        ("^^1", false),
    ] {
        let e = err(Eco::Npm, json!({ "dependencies": { "dep": spec } }));
        assert_eq!(e.unsupported, unsupported, "{spec}: {e:?}");
        assert_eq!(e.text, format!("dep@{spec}"));
    }
    err(Eco::Npm, json!({ "dependencies": { "dep": 1 } }));
}

#[test]
fn distpac_and_cargo_semver() {
    let r = ok(
        Eco::Distpac,
        json!({ "dependencies": { "db": ">=1.2, <2", "log": "1.4", "any": null, "n": 2 } }),
    );
    let by = |n: &str| {
        &r.depends
            .iter()
            .find(|c| c.alts[0].name == n)
            .expect(n)
            .alts[0]
    };
    check(
        Eco::Distpac,
        by("db"),
        &["1.2.0", "1.9.9"],
        &["2.0.0", "1.1.0", "1.2.0-rc.1"],
    );
    check(
        Eco::Distpac,
        by("log"),
        &["1.4.0", "1.9.0"],
        &["2.0.0", "1.3.9"],
    );
    check(Eco::Distpac, by("n"), &["2.5.0"], &["3.0.0"]);
    assert!(by("any").req.is_any());
    let r = ok(
        Eco::Distpac,
        json!({ "depends": ["db >=1.2", "log^1.4", "core"] }),
    );
    let names: Vec<&str> = r.depends.iter().map(|c| c.alts[0].name.as_str()).collect();
    assert_eq!(names, ["db", "log", "core"]);
    check(Eco::Distpac, &r.depends[1].alts[0], &["1.5.0"], &["2.0.0"]);
    let e = err(Eco::Distpac, json!({ "dependencies": { "db": ">>1" } }));
    assert_eq!(e.text, "db >>1");
    err(Eco::Distpac, json!({ "dependencies": ["db 1 2"] }));

    let r = parse(
        Eco::Cargo,
        &Map::new(),
        &["serde ^1.0.100".into(), "libc".into()],
    )
    .expect("cargo");
    check(
        Eco::Cargo,
        &r.depends[0].alts[0],
        &["1.0.219"],
        &["1.0.99", "2.0.0"],
    );
    assert!(r.depends[1].alts[0].req.is_any());
}

#[test]
fn tpm_forms() {
    let r = ok(
        Eco::Tpm,
        json!({ "Dependencies": { "a": ">= 1.2", "b": "", "c": "2.0" } }),
    );
    check(
        Eco::Tpm,
        &r.depends[0].alts[0],
        &["1.2", "1.10"],
        &["1.1", "1.2rc1"],
    );
    assert!(r.depends[1].alts[0].req.is_any());
    check(Eco::Tpm, &r.depends[2].alts[0], &["2.0"], &["2.0.1"]);
    let r = ok(Eco::Tpm, json!({ "Depends": "a (>= 1.0, < 2), b" }));
    assert_eq!(r.depends.len(), 2);
    check(
        Eco::Tpm,
        &r.depends[0].alts[0],
        &["1.0", "1.9"],
        &["2", "0.9"],
    );
    assert_eq!(r.depends[1].alts[0].name, "b");
    let r = ok(Eco::Tpm, json!({ "Dependencies": ["a (>= 1.0)", "b!=2"] }));
    check(Eco::Tpm, &r.depends[0].alts[0], &["1.0"], &["0.9"]);
    check(Eco::Tpm, &r.depends[1].alts[0], &["1", "3"], &["2"]);
    err(Eco::Tpm, json!({ "Dependencies": { "a": "~> 1" } }));
    err(Eco::Tpm, json!({ "Dependencies": ["a (>= )"] }));
}

#[test]
fn python_is_unsupported_not_dropped() {
    let e = parse(Eco::Python, &Map::new(), &["idna>=2.5".into()]).expect_err("python");
    assert!(e.unsupported);
    assert_eq!(e.text, "idna>=2.5");
    assert!(parse(Eco::Python, &Map::new(), &[]).is_ok());
}
