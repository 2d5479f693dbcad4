use super::*;
use Ordering::{Equal, Greater, Less};

/// Checks each pair both ways round.
fn check(scheme: Scheme, cases: &[(&str, &str, Ordering)]) {
    for &(a, b, want) in cases {
        assert_eq!(compare(scheme, a, b), want, "{scheme:?}: {a:?} vs {b:?}");
        let back = compare(scheme, b, a);
        assert_eq!(back, want.reverse(), "{scheme:?}: {b:?} vs {a:?}");
    }
}

/// A small deterministic generator (SplitMix64): the tests need no `rand`.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[self.below(from.len())]
    }
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i + 1));
        }
    }
}

/// Shuffles `sorted` several ways; sorting must give it back.
fn check_sorts(scheme: Scheme, sorted: &[&str]) {
    for seed in 0..20 {
        let mut items = sorted.to_vec();
        Rng(seed).shuffle(&mut items);
        items.sort_by(|a, b| compare(scheme, a, b));
        assert_eq!(items, sorted, "{scheme:?}, shuffle seed {seed}");
    }
}

/// Sorts `items` and checks that `compare` is a total preorder on them: equal items are
/// adjacent and every pair across groups compares Less in list order, both ways round.
fn assert_total_preorder(scheme: Scheme, mut items: Vec<String>) {
    items.sort_by(|a, b| compare(scheme, a, b));
    let mut group = vec![0usize; items.len()];
    for i in 1..items.len() {
        let step = compare(scheme, &items[i - 1], &items[i]) != Equal;
        group[i] = group[i - 1] + usize::from(step);
    }
    for i in 0..items.len() {
        for j in i + 1..items.len() {
            let want = if group[i] == group[j] { Equal } else { Less };
            let (a, b) = (&items[i], &items[j]);
            assert_eq!(compare(scheme, a, b), want, "{scheme:?}: {a:?} vs {b:?}");
            assert_eq!(
                compare(scheme, b, a),
                want.reverse(),
                "{scheme:?}: {b:?} vs {a:?}"
            );
        }
    }
}

/// Every string over `alphabet` up to `max_len` characters.
fn all_strings(alphabet: &[char], max_len: usize) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut layer = vec![String::new()];
    for _ in 0..max_len {
        layer = layer
            .iter()
            .flat_map(|s| alphabet.iter().map(move |c| format!("{s}{c}")))
            .collect();
        out.extend(layer.iter().cloned());
    }
    out
}

/// Input no scheme accepts, or only barely: none of it may panic or break the order.
fn garbage() -> Vec<String> {
    let mut v: Vec<String> = [
        "",
        " ",
        "\0",
        "é",
        "1é",
        "é1",
        "💥1.0",
        "1:é",
        "-",
        ":",
        "::",
        "1:",
        ":1",
        "1-",
        "-1",
        "~",
        "~~",
        "1.0 ",
        " 1.0",
        "1.0\n",
        "a-b-c",
        "1.0-rc1-é",
        "1:2:3",
        "1:2-3-4",
        ".",
        "1.",
        "1..",
        "a.",
        "a1",
        "a.a",
        "v1.2.3",
        "1.2.3.4",
        "01.2.3",
        "1.2.3-",
        "1.2.3+",
        "1.2.3-α",
        "4294967296:1",
        "2147483648:1",
        "2147483647:1",
        "99999999999999999999:1",
        "1.0-1.",
        "1.0-1.1.1",
        "1.0-a",
        "1.0_rc1",
        "2.0RC1",
        "1.0ÃÃ",
        "\u{fffd}",
        "1.0/2",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.push("9".repeat(100));
    v.push("1.".repeat(1000));
    v.push("1".repeat(60) + ":1.0");
    v
}

#[test]
fn scheme_for_meta_source() {
    assert_eq!(Scheme::for_meta_source("deb"), Scheme::Debian);
    assert_eq!(Scheme::for_meta_source("pkginfo"), Scheme::Alpm);
    assert_eq!(Scheme::for_meta_source("distpac"), Scheme::SemVer);
    assert_eq!(Scheme::for_meta_source("tpm"), Scheme::Generic);
    assert_eq!(Scheme::for_meta_source("filename"), Scheme::Generic);
    assert_eq!(Scheme::for_meta_source("something-new"), Scheme::Generic);
}

#[test]
fn debian_pairs() {
    check(
        Scheme::Debian,
        &[
            ("1.0~rc1", "1.0", Less),
            ("1.0~", "1.0", Less),
            ("1.0~~", "1.0~", Less),
            ("1.0~~a", "1.0~", Less),
            ("1.0~rc1", "1.0~rc2", Less),
            ("1:0.9", "2.0", Greater),
            ("0:1.0", "1.0", Equal),
            ("1:1.0", "1.0", Greater),
            ("2:0.1", "1:9.9", Greater),
            ("1.0a", "1.0", Greater),
            ("1.0+b1", "1.0", Greater),
            ("1.0+dfsg-1", "1.0a-1", Greater),
            ("1.0.1", "1.0+dfsg", Greater),
            ("1.0", "1.00", Equal),
            ("1.0", "1.0-0", Equal),
            ("1.0", "1.0.0", Less),
            ("1.10", "1.9", Greater),
            ("2.30-1", "2.4-1", Greater),
            ("1.0-1", "1.0-2", Less),
            ("1.0-2", "1.0-10", Less),
            ("1.0-1", "1.0-1+b1", Less),
            ("1.0-1~bpo1", "1.0-1", Less),
            ("1.0-1", "1.0a-0", Less),
            ("1.0-a-1", "1.0-1", Greater),
            ("1:1.2:3-1", "1:1.2-1", Greater),
            ("2.36-9+deb12u14", "2.36-9+deb12u7", Greater),
            ("1.0A", "1.0a", Less),
            ("1.0a", "1.0.", Less),
            ("12345678901234567890123", "12345678901234567890124", Less),
            ("2147483647:1", "0:2", Greater),
            // Unparsed versions sit below every parsed one and order among themselves.
            ("abc", "0", Less),
            ("", "0", Less),
            ("1:", "0", Less),
            ("1.0-", "0", Less),
            ("1.0_1", "0", Less),
            ("2147483648:1", "0", Less),
            ("1.0 ", "0.1", Less),
            ("", "abc", Less),
            ("a1", "abc", Less),
        ],
    );
}

#[test]
fn alpm_pairs() {
    // Mostly pacman's own test/util/vercmptest.sh, checked against libalpm 13.
    check(
        Scheme::Alpm,
        &[
            ("1.5.0", "1.5.0", Equal),
            ("1.5.1", "1.5.0", Greater),
            ("1.5.1", "1.5", Greater),
            ("1.0-1", "1.0-2", Less),
            ("1.5.0-1", "1.5.0-2", Less),
            ("1.5.0-1", "1.5.1-1", Less),
            ("1.5.0-2", "1.5.1-1", Less),
            ("1.5-1", "1.5.1-1", Less),
            ("1.5-2", "1.5.1-2", Less),
            ("1.0-1", "1.1", Less),
            ("1.1-1", "1.0", Greater),
            ("1.0-10", "1.0-9", Greater),
            ("1.0-1", "1.0-1.1", Less),
            ("1.0-1.1", "1.0-2", Less),
            ("1.5b-1", "1.5-1", Less),
            ("1.5b", "1.5", Less),
            ("1.5b", "1.5.1", Less),
            ("1.0a", "1.0", Less),
            ("1.0a", "1.0alpha", Less),
            ("1.0alpha", "1.0b", Less),
            ("1.0b", "1.0beta", Less),
            ("1.0beta", "1.0rc", Less),
            ("1.0rc", "1.0", Less),
            ("1.0rc1", "1.0", Less),
            // rpmvercmp: a leftover separated segment wins, numbers beat letters.
            ("1.0.a", "1.0", Greater),
            ("1.5.b", "1.5.a", Greater),
            ("1.5.1", "1.5.b", Greater),
            ("1.5-1", "1.5.b", Less),
            ("2.0", "2_0", Equal),
            ("2.0_a", "2_0.a", Equal),
            ("2.0a", "2.0.a", Less),
            ("2___a", "2_a", Greater),
            ("1.10", "1.9", Greater),
            ("1.01", "1.1", Equal),
            ("0:1.0", "0:1.0", Equal),
            ("0:1.0", "0:1.1", Less),
            ("1:1.0", "0:1.0", Greater),
            ("1:1.0", "0:1.1", Greater),
            ("1:1.0", "2:1.1", Less),
            ("1:1.0", "0:1.0-1", Greater),
            ("1:1.0-1", "0:1.1-1", Greater),
            ("0:1.0", "1.0", Equal),
            ("0:1.0", "1.1", Less),
            ("1:1.1", "1.1", Greater),
            ("1:0.9-1", "2.0-1", Greater),
            ("1.2.3.r45.gabc123-1", "1.2.3-1", Greater),
            // Where pacman says Equal but that would break transitivity.
            ("1.5", "1.5-1", Less),
            ("1.5.b", "1.5.b-1", Less),
            // Unparsed (trailing separator, bad pkgrel, colon, non-ASCII) below parsed.
            ("1.0.", "0", Less),
            ("1.0-", "0", Less),
            ("1.0-a", "0", Less),
            ("1.0-1.2.3", "0", Less),
            ("1:2:3", "0", Less),
            ("1.0é", "0", Less),
            ("a.", "a1", Less),
        ],
    );
}

#[test]
fn semver_pairs() {
    check(
        Scheme::SemVer,
        &[
            ("1.0.0-alpha", "1.0.0-alpha.1", Less),
            ("1.0.0-alpha.1", "1.0.0-alpha.beta", Less),
            ("1.0.0-alpha.beta", "1.0.0-beta", Less),
            ("1.0.0-beta", "1.0.0-beta.2", Less),
            ("1.0.0-beta.2", "1.0.0-beta.11", Less),
            ("1.0.0-beta.11", "1.0.0-rc.1", Less),
            ("1.0.0-rc.1", "1.0.0", Less),
            ("1.0.0-alpha.1", "1.0.0-beta", Less),
            ("1.0.0-beta", "1.0.0", Less),
            ("1.0.0-rc.1", "0.9.9", Greater),
            ("1.0.0+build.5", "1.0.0", Equal),
            ("1.0.0+a", "1.0.0+b", Equal),
            ("1.0.0-rc.1+x", "1.0.0-rc.1", Equal),
            ("1.0.0+build", "1.0.0-rc.1", Greater),
            ("1.10.0", "1.9.0", Greater),
            ("2.0.0", "1.99.99", Greater),
            ("0.0.1", "0.0.0", Greater),
            // Not SemVer: below every SemVer version, Generic among themselves.
            ("1.0", "0.0.1", Less),
            ("v2.0.0", "0.0.1", Less),
            ("01.0.0", "0.0.1", Less),
            ("1.0.0-", "0.0.1", Less),
            ("", "0.0.1", Less),
            ("1.0", "2.0", Less),
            ("2.0", "v1.0.0", Less),
        ],
    );
}

#[test]
fn generic_pairs() {
    check(
        Scheme::Generic,
        &[
            ("1.10", "1.9", Greater),
            ("1.10.2", "1.10.10", Less),
            ("foo-1.10.2", "foo-1.9.9", Greater),
            ("2.0", "10.0", Less),
            ("1.0", "1.00", Equal),
            ("1.0", "1.0.0", Less),
            ("1.0", "1.0.1", Less),
            ("1.0a", "1.0", Greater),
            ("1.0.2a", "1.0.2", Greater),
            ("1.0.2a", "1.0.3", Less),
            ("1.0~rc1", "1.0", Less),
            ("2.0rc1", "2.0", Less),
            ("2.0-rc1", "2.0", Less),
            ("2.0.rc1", "2.0rc1", Equal),
            ("2.0RC1", "2.0rc1", Equal),
            ("2.0rc1", "2.0rc2", Less),
            ("2.0rc10", "2.0rc9", Greater),
            ("2.0alpha", "2.0beta", Less),
            ("2.0beta3", "2.0pre1", Less),
            ("2.0pre1", "2.0rc1", Less),
            ("2.0rc1", "1.9", Greater),
            ("2.0rcx", "2.0", Greater),
            ("2.0-1", "2.0", Greater),
            ("1.2.3-4", "1.2.3-10", Less),
            ("", "0", Equal),
            ("", "1", Less),
            ("rc1", "1", Greater),
        ],
    );
}

#[test]
fn sorting_shuffled_lists() {
    check_sorts(
        Scheme::Debian,
        &[
            "",
            "1.0_1",
            "a1",
            "abc", // unparsed first
            "0.9",
            "1.0~~",
            "1.0~~a",
            "1.0~",
            "1.0~rc1",
            "1.0",
            "1.0-0.1",
            "1.0-1",
            "1.0-1+b1",
            "1.0-2",
            "1.0-10",
            "1.0a",
            "1.0+dfsg-1",
            "1.0.1",
            "1.2",
            "1.10",
            "2.0~beta1",
            "2.0",
            "1:0.9",
            "1:1.0~rc1",
            "2:0.1",
        ],
    );
    check_sorts(
        Scheme::Alpm,
        &[
            "1.0.",
            "a.", // unparsed first
            "0.9-1",
            "1.0a",
            "1.0alpha",
            "1.0b",
            "1.0beta",
            "1.0rc",
            "1.0",
            "1.0-1",
            "1.0-2",
            "1.0.a",
            "1.0.b",
            "1.0.1-1",
            "1.0.1-1.1",
            "1.0.1-2",
            "1.1",
            "1.9",
            "1.10",
            "2.0",
            "1:0.9-1",
            "2:0.1-1",
        ],
    );
    check_sorts(
        Scheme::SemVer,
        &[
            "1.0",
            "garbage",
            "v1.0.0", // unparsed first
            "0.9.0",
            "1.0.0-alpha",
            "1.0.0-alpha.1",
            "1.0.0-alpha.beta",
            "1.0.0-beta",
            "1.0.0-beta.2",
            "1.0.0-beta.11",
            "1.0.0-rc.1",
            "1.0.0",
            "1.0.1",
            "1.2.0",
            "1.10.0",
            "2.0.0",
        ],
    );
    check_sorts(
        Scheme::Generic,
        &[
            "0.9",
            "1.0alpha",
            "1.0alpha2",
            "1.0-beta1",
            "1.0.rc1",
            "1.0rc2",
            "1.0",
            "1.0a",
            "1.0.1",
            "1.2",
            "1.9",
            "1.10",
            "1.10.2",
            "2.0rc1",
            "2.0",
            "10.0",
        ],
    );
}

/// `sort_by` needs a consistent order even on nonsense: every string up to three
/// characters over each scheme's interesting characters, plus [`garbage`]. (Four
/// characters was run once too; it takes half a minute unoptimised.)
#[test]
fn total_preorder_on_all_short_strings_and_garbage() {
    let cases: [(Scheme, &[char]); 4] = [
        (Scheme::Debian, &['0', '1', 'a', '.', '~', '+', '-', ':']),
        (Scheme::Alpm, &['0', '1', 'a', '.', '_', '-', ':', '~']),
        (Scheme::SemVer, &['0', '1', 'a', '.', '-', '+']),
        (Scheme::Generic, &['0', '1', 'r', 'c', '.', '-', '~', 'é']),
    ];
    for (scheme, alphabet) in cases {
        let mut items = all_strings(alphabet, 3);
        items.extend(garbage());
        assert_total_preorder(scheme, items);
    }
    let semvers = [
        "0.0.0",
        "1.0.0",
        "1.0.0-0",
        "1.0.0-a",
        "1.0.0-a.1",
        "1.0.0-1.a",
        "1.0.0+1",
        "1.2.3-rc.1+b",
    ];
    let mut items: Vec<String> = semvers.iter().map(|s| s.to_string()).collect();
    items.extend(all_strings(&['0', '1', '.'], 3));
    assert_total_preorder(Scheme::SemVer, items);
}

/// Random valid Debian versions built from tokens that hit dpkg's corner cases.
fn random_deb(rng: &mut Rng) -> String {
    const DIGITS: &[&str] = &["0", "1", "2", "9", "10", "01", "00", "123"];
    const OTHER: &[&str] = &["a", "b", "z", "A", "rc", "beta", ".", ".", "+", "~", "~~"];
    let mut v = String::new();
    let epoch = rng.chance(25);
    if epoch {
        v += rng.pick(&["0", "1", "2", "10"]);
        v += ":";
    }
    v += rng.pick(DIGITS);
    for _ in 0..rng.below(5) {
        v += if rng.chance(40) {
            rng.pick(DIGITS)
        } else {
            rng.pick(OTHER)
        };
    }
    if epoch && rng.chance(10) {
        v += ":1";
    }
    if rng.chance(50) {
        if rng.chance(10) {
            v += "-1.0"; // a hyphen inside the upstream part
        }
        v += "-";
        v += rng.pick(&["0", "1", "2", "10", "a", "~", "1~bpo1", "1+b1", "0.1"]);
        for _ in 0..rng.below(3) {
            v += if rng.chance(50) {
                rng.pick(DIGITS)
            } else {
                rng.pick(OTHER)
            };
        }
    }
    v
}

/// dpkg's own verdict: `lt`, else `eq`, else greater.
fn dpkg_compare(a: &str, b: &str) -> Ordering {
    let holds = |op: &str| {
        let out = std::process::Command::new("dpkg")
            .args(["--compare-versions", a, op, b])
            .output()
            .expect("run dpkg");
        assert!(
            out.stderr.is_empty(),
            "dpkg complained about {a:?} {op} {b:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        match out.status.code() {
            Some(0) => true,
            Some(1) => false,
            other => panic!("dpkg --compare-versions {a:?} {op} {b:?}: exit {other:?}"),
        }
    };
    if holds("lt") {
        Less
    } else if holds("eq") {
        Equal
    } else {
        Greater
    }
}

#[test]
fn debian_agrees_with_dpkg() {
    if std::process::Command::new("dpkg")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("SKIPPED debian_agrees_with_dpkg: no `dpkg` on this machine to compare with");
        return;
    }
    let mut rng = Rng(0x5eed);
    let mut pairs: Vec<(String, String)> = Vec::new();
    for _ in 0..300 {
        let a = random_deb(&mut rng);
        // Some spelled differently but equal, half near neighbours (so the comparison
        // gets past the first difference), the rest unrelated.
        let b = if rng.chance(20) {
            match (a.contains(':'), a.contains('-')) {
                (false, _) => format!("0:{a}"),
                (true, false) => format!("{a}-0"),
                (true, true) => a.clone(),
            }
        } else if rng.chance(60) {
            let cut = rng.below(a.len() + 1);
            let tail = random_deb(&mut rng);
            let joined = format!("{}{}", &a[..cut], &tail[tail.len().min(1)..]);
            if deb_parse(&joined).is_some() {
                joined
            } else {
                random_deb(&mut rng)
            }
        } else {
            random_deb(&mut rng)
        };
        pairs.push((a, b));
    }
    for (a, b) in [
        ("1.0~rc1", "1.0"),
        ("1:0.9", "2.0"),
        ("1.0", "1.0-0"),
        ("1.0a", "1.0+"),
        ("1.0~", "1.0~~"),
        ("1.0-1", "1.0-1~"),
    ] {
        pairs.push((a.into(), b.into()));
    }
    let mut verdicts = [0usize; 3];
    for (a, b) in &pairs {
        assert!(
            deb_parse(a).is_some() && deb_parse(b).is_some(),
            "{a:?} {b:?}"
        );
        let want = dpkg_compare(a, b);
        verdicts[(want as i8 + 1) as usize] += 1;
        assert_eq!(
            compare(Scheme::Debian, a, b),
            want,
            "{a:?} vs {b:?} (dpkg: {want:?})"
        );
    }
    // A generator drifting to all-one-way pairs would make this test toothless.
    assert!(verdicts.iter().all(|&n| n >= 10), "lt/eq/gt: {verdicts:?}");
}
