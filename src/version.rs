//! Version order per packaging ecosystem, so `pkgs/NAME/latest` points at what that
//! ecosystem's own tools would call the newest release.
//!
//! The catalog's `meta_source` picks a [`Scheme`]; [`compare`] applies it:
//!
//! * [`Scheme::Debian`] (`deb`): `dpkg --compare-versions`. A port of dpkg's `verrevcmp`
//!   (lib/dpkg/version.c), checked against the real `dpkg` by the tests.
//! * [`Scheme::Alpm`] (`pkginfo`): pacman's `vercmp` (`alpm_pkg_vercmp` and its `rpmvercmp`,
//!   lib/libalpm/version.c), ported.
//! * [`Scheme::SemVer`] (`distpac`): SemVer 2.0 precedence from the `semver` crate.
//! * [`Scheme::Generic`] (`tpm`, `filename`, anything unknown): dpkg's `verrevcmp` over the whole
//!   string, with `alpha`/`beta`/`pre`/`rc` tags sorting before the release (see `generic`).
//!
//! Why ports rather than crates for Debian and Arch: `debversion` would add chrono, lazy-regex
//! (with a proc-macro) and num-bigint for a 40-line function, and its comparison slices bytes at
//! char positions (a panic on non-ASCII if fed unvalidated text, which Generic must accept);
//! `alpm-types` pulls some twenty crates (url, icu, spdx, hashes, i18n), `alpmver` has been
//! untouched since 2022 and `rpmvercmp` dlopens librpm. SemVer is the `semver` crate's job.
//!
//! [`compare`] is a total preorder over all strings, as `sort_by` needs (it may panic on an
//! inconsistent order): a version that does not parse under its scheme sorts below every one
//! that does, so a malformed upload never becomes `latest`, and such versions order among
//! themselves by Generic. Distinct strings can be Equal (`1.0` and `1.00` are the same Debian
//! version); callers needing one winner break ties on the string itself.

use std::borrow::Cow;
use std::cmp::Ordering;

/// How one ecosystem orders its versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// Debian `[epoch:]upstream[-revision]`, as `dpkg --compare-versions`: `~` before anything.
    Debian,
    /// Arch Linux `[epoch:]pkgver-pkgrel`, as pacman's `vercmp`: `1.0rc1` < `1.0`.
    Alpm,
    /// SemVer 2.0: pre-releases before their release, build metadata ignored.
    SemVer,
    /// Tarball names like `foo-1.10.2`, `foo-2.0rc1`, and formats with no rules of their own.
    Generic,
}

impl Scheme {
    /// The scheme for a catalog `meta_source`. Unknown sources get Generic so that a new
    /// metadata format still has a sensible `latest`.
    pub fn for_meta_source(source: &str) -> Scheme {
        match source {
            "deb" => Scheme::Debian,
            "pkginfo" => Scheme::Alpm,
            "distpac" => Scheme::SemVer,
            _ => Scheme::Generic,
        }
    }
}

/// Total order usable for sorting: never panics on garbage input; versions that do not parse
/// under the scheme fall back to Generic and sort below all that do (see the module docs).
pub fn compare(scheme: Scheme, a: &str, b: &str) -> Ordering {
    match scheme {
        Scheme::Debian => parsed_first(a, b, deb_parse, deb_cmp),
        Scheme::Alpm => parsed_first(a, b, alpm_parse, alpm_cmp),
        Scheme::SemVer => parsed_first(
            a,
            b,
            |s| semver::Version::parse(s).ok(),
            semver::Version::cmp_precedence,
        ),
        Scheme::Generic => generic(a, b),
    }
}

/// Parsed versions by the scheme's rules, above unparsed ones, which order by Generic: a
/// lexicographic order on (parsed?, key), so it stays total whatever the mix.
fn parsed_first<'s, T>(
    a: &'s str,
    b: &'s str,
    parse: impl Fn(&'s str) -> Option<T>,
    cmp: impl Fn(&T, &T) -> Ordering,
) -> Ordering {
    match (parse(a), parse(b)) {
        (Some(x), Some(y)) => cmp(&x, &y),
        (Some(_), None) => Ordering::Greater,
        (None, Some(_)) => Ordering::Less,
        (None, None) => generic(a, b),
    }
}

// ---------------------------------------------------------------------------------------------
// Debian

/// A version dpkg accepts without complaint (deb-version(7), dpkg's `parseversion`).
struct Deb<'a> {
    epoch: u32,
    upstream: &'a str,
    revision: &'a str,
}

/// Strict on purpose: what dpkg only warns about (`a1`, `1.0_1`) counts as unparsed, so it
/// cannot outrank a well-formed version.
fn deb_parse(s: &str) -> Option<Deb<'_>> {
    let (epoch, rest) = match s.split_once(':') {
        Some((e, rest)) => {
            if e.is_empty() || !e.bytes().all(|c| c.is_ascii_digit()) {
                return None;
            }
            // dpkg keeps the epoch in an int.
            let e: u32 = e.parse().ok().filter(|&e| e <= i32::MAX as u32)?;
            (e, rest)
        }
        None => (0, s),
    };
    let (upstream, revision) = match rest.rsplit_once('-') {
        Some((_, "")) => return None,
        Some((u, r)) => (u, r),
        None => (rest, ""),
    };
    let upstream_ok = upstream.starts_with(|c: char| c.is_ascii_digit())
        && upstream
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || b".+~-:".contains(&c));
    let revision_ok = revision
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || b".+~".contains(&c));
    (upstream_ok && revision_ok).then_some(Deb {
        epoch,
        upstream,
        revision,
    })
}

/// dpkg's `dpkg_version_compare`: epoch numerically, then upstream, then revision (a missing
/// revision is the empty string, which equals `0`).
fn deb_cmp(a: &Deb, b: &Deb) -> Ordering {
    a.epoch
        .cmp(&b.epoch)
        .then_with(|| verrevcmp(a.upstream.as_bytes(), b.upstream.as_bytes()))
        .then_with(|| verrevcmp(a.revision.as_bytes(), b.revision.as_bytes()))
}

/// Weight of a byte in the non-digit parts: `~` before the end of the string, which is before
/// letters, which are before everything else. Bytes above 0x7f weigh as dpkg's signed `char`
/// gives them on x86 (between letters and punctuation), so Generic agrees with dpkg there too.
fn order(c: Option<u8>) -> i32 {
    match c {
        None => 0,
        Some(c) if c.is_ascii_digit() => 0,
        Some(c) if c.is_ascii_alphabetic() => i32::from(c),
        Some(b'~') => -1,
        Some(c) => i32::from(c as i8) + 256,
    }
}

/// dpkg's `verrevcmp`: alternate non-digit runs (compared by [`order`]) and digit runs
/// (compared as numbers of any length, leading zeros ignored).
fn verrevcmp(a: &[u8], b: &[u8]) -> Ordering {
    let digit = |s: &[u8], i: usize| s.get(i).is_some_and(u8::is_ascii_digit);
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        while (i < a.len() && !digit(a, i)) || (j < b.len() && !digit(b, j)) {
            let (ac, bc) = (order(a.get(i).copied()), order(b.get(j).copied()));
            if ac != bc {
                return ac.cmp(&bc);
            }
            i += 1;
            j += 1;
        }
        while a.get(i) == Some(&b'0') {
            i += 1;
        }
        while b.get(j) == Some(&b'0') {
            j += 1;
        }
        // Same length so far: the first differing digit decides, unless one number is longer.
        let mut first_diff = Ordering::Equal;
        while digit(a, i) && digit(b, j) {
            if first_diff == Ordering::Equal {
                first_diff = a[i].cmp(&b[j]);
            }
            i += 1;
            j += 1;
        }
        if digit(a, i) {
            return Ordering::Greater;
        }
        if digit(b, j) {
            return Ordering::Less;
        }
        if first_diff != Ordering::Equal {
            return first_diff;
        }
    }
    Ordering::Equal
}

// ---------------------------------------------------------------------------------------------
// Arch Linux

/// An Arch version split as pacman's `parseEVR` does: leading digits then `:` are the epoch
/// (default `0`), the last `-` after that starts the pkgrel.
struct Evr<'a> {
    epoch: &'a str,
    pkgver: &'a str,
    pkgrel: Option<&'a str>,
}

/// pacman orders any string, but `rpmvercmp` is only consistent on parts that do not end in a
/// separator (`a1` < `a.a` < `a.` < `a1`). So, as makepkg requires: a pkgver without `:`, `/`,
/// `-` or spaces, ending in a letter or digit, and a pkgrel (optional, as in pacman's own
/// dependency versions) of the form `N` or `N.N`.
fn alpm_parse(s: &str) -> Option<Evr<'_>> {
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    let (epoch, rest) = match s.as_bytes().get(digits) {
        Some(b':') if digits > 0 => (&s[..digits], &s[digits + 1..]),
        _ => ("0", s),
    };
    let (pkgver, pkgrel) = match rest.rsplit_once('-') {
        Some((v, r)) => (v, Some(r)),
        None => (rest, None),
    };
    let pkgver_ok = pkgver.ends_with(|c: char| c.is_ascii_alphanumeric())
        && pkgver
            .bytes()
            .all(|c| c.is_ascii_graphic() && !b":/-".contains(&c));
    let pkgrel_ok = pkgrel.is_none_or(|r| {
        let number = |n: &str| !n.is_empty() && n.bytes().all(|c| c.is_ascii_digit());
        match r.split_once('.') {
            Some((major, minor)) => number(major) && number(minor),
            None => number(r),
        }
    });
    (pkgver_ok && pkgrel_ok).then_some(Evr {
        epoch,
        pkgver,
        pkgrel,
    })
}

/// pacman's `alpm_pkg_vercmp`. One change: where only one side has a pkgrel and all else is
/// equal, pacman says Equal (`1.0` = `1.0-1` = `1.0-2`), which is not transitive since
/// `1.0-1` < `1.0-2`; here the side without a pkgrel is the lower one.
fn alpm_cmp(a: &Evr, b: &Evr) -> Ordering {
    rpmvercmp(a.epoch.as_bytes(), b.epoch.as_bytes())
        .then_with(|| rpmvercmp(a.pkgver.as_bytes(), b.pkgver.as_bytes()))
        .then_with(|| match (a.pkgrel, b.pkgrel) {
            (Some(x), Some(y)) => rpmvercmp(x.as_bytes(), y.as_bytes()),
            (x, y) => x.is_some().cmp(&y.is_some()),
        })
}

/// pacman's `rpmvercmp`: runs of digits or letters, split by anything else. Numbers compare
/// numerically and beat letters (`1.0.1` > `1.0.a`); a longer separator wins (`1..1` > `1.1`);
/// at the end, leftover letters lose (`1.0a` < `1.0`) and any other leftover wins (`1.0.a` >
/// `1.0`). Bytes above 0x7f are separators (C locale).
fn rpmvercmp(a: &[u8], b: &[u8]) -> Ordering {
    if a == b {
        return Ordering::Equal;
    }
    // one/two: start of the current segment; end1/end2: end of the previous one.
    let (mut one, mut two, mut end1, mut end2) = (0, 0, 0, 0);
    while one < a.len() && two < b.len() {
        while a.get(one).is_some_and(|c| !c.is_ascii_alphanumeric()) {
            one += 1;
        }
        while b.get(two).is_some_and(|c| !c.is_ascii_alphanumeric()) {
            two += 1;
        }
        if one >= a.len() || two >= b.len() {
            break;
        }
        if one - end1 != two - end2 {
            return (one - end1).cmp(&(two - end2));
        }
        let numeric = a[one].is_ascii_digit();
        let same_kind = |c: &u8| {
            if numeric {
                c.is_ascii_digit()
            } else {
                c.is_ascii_alphabetic()
            }
        };
        end1 = one + a[one..].iter().take_while(|c| same_kind(c)).count();
        end2 = two + b[two..].iter().take_while(|c| same_kind(c)).count();
        if end2 == two {
            // Different kinds: numbers are newer than letters.
            return if numeric {
                Ordering::Greater
            } else {
                Ordering::Less
            };
        }
        let (mut s1, mut s2) = (&a[one..end1], &b[two..end2]);
        if numeric {
            while let [b'0', rest @ ..] = s1 {
                s1 = rest;
            }
            while let [b'0', rest @ ..] = s2 {
                s2 = rest;
            }
            if s1.len() != s2.len() {
                return s1.len().cmp(&s2.len());
            }
        }
        match s1.cmp(s2) {
            Ordering::Equal => {}
            unequal => return unequal,
        }
        one = end1;
        two = end2;
    }
    let (rest1, rest2) = (&a[one.min(a.len())..], &b[two.min(b.len())..]);
    match (rest1.first(), rest2.first()) {
        (None, None) => Ordering::Equal,
        (None, Some(c)) if !c.is_ascii_alphabetic() => Ordering::Less,
        (Some(c), _) if c.is_ascii_alphabetic() => Ordering::Less,
        _ => Ordering::Greater,
    }
}

// ---------------------------------------------------------------------------------------------
// Generic

/// Pre-release words of GNU-style tarballs; alphabetical order happens to be release order.
const PRE_RELEASE: &[&str] = &["alpha", "beta", "pre", "rc"];

/// Generic: dpkg's `verrevcmp` over the whole string (no epoch or revision), so numbers compare
/// numerically (`1.10` > `1.9`), letters sort before other characters and `~` before the end.
/// Tarballs seldom use `~`, so first a letter run that is exactly `alpha`, `beta`, `pre` or
/// `rc` (any case) right after a digit, or after one of `.-_+` that follows a digit, becomes
/// `~word`, dropping that separator: `2.0alpha` < `2.0-beta1` < `2.0.rc1` < `2.0` < `2.0a`
/// (a letter suffix such as openssl's `1.0.2a` stays a later release).
fn generic(a: &str, b: &str) -> Ordering {
    verrevcmp(
        &mark_pre_releases(a.as_bytes()),
        &mark_pre_releases(b.as_bytes()),
    )
}

fn mark_pre_releases(s: &[u8]) -> Cow<'_, [u8]> {
    let is_sep = |c: u8| b".-_+".contains(&c);
    let mut out: Vec<u8> = Vec::new();
    let mut changed = false;
    let mut i = 0;
    while i < s.len() {
        if !s[i].is_ascii_alphabetic() {
            out.push(s[i]);
            i += 1;
            continue;
        }
        let start = i;
        while i < s.len() && s[i].is_ascii_alphabetic() {
            i += 1;
        }
        let word = &s[start..i];
        let after_digit = match start {
            0 => false,
            1 => s[0].is_ascii_digit(),
            _ => {
                s[start - 1].is_ascii_digit()
                    || (is_sep(s[start - 1]) && s[start - 2].is_ascii_digit())
            }
        };
        let pre = PRE_RELEASE
            .iter()
            .any(|p| p.as_bytes().eq_ignore_ascii_case(word));
        if pre && after_digit {
            if is_sep(s[start - 1]) {
                out.pop();
            }
            out.push(b'~');
            out.extend(word.iter().map(u8::to_ascii_lowercase));
            changed = true;
        } else {
            out.extend_from_slice(word);
        }
    }
    if changed {
        Cow::Owned(out)
    } else {
        Cow::Borrowed(s)
    }
}

#[cfg(test)]
mod tests {
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
}
