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
mod tests;
