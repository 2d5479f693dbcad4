//! Tar header fields, read as leniently as GNU tar and libarchive read them where that is
//! harmless, and strictly where it matters.
//!
//! Strict (the `tar` crate checks them, and a wrong value would change what a package holds or
//! where its bytes are): the path, the entry type, the size, the link target, the header
//! checksum, and sparse maps.
//!
//! Lenient (descriptive only: no view or check depends on them being exact): uid, gid, mtime
//! and mode here; uname, gname and device numbers are never read at all (device nodes are
//! refused by type). Real archives get these wrong in many ways that GNU tar accepts: cargo and
//! npm leave uid/gid all NUL, old tars pad with spaces or a leading NUL, big values use GNU's
//! base-256, and some writers put junk after the digits. A pax record (`uid`, `gid`, `mtime`)
//! overrides the header field, as it does for every reader.

/// The value of a numeric header field as GNU tar's `from_header` reads it: one leading NUL
/// and any leading blanks are skipped, octal digits are read up to a NUL, a blank or the end;
/// a field with no digits is 0; a first byte with the high bit set starts a base-256 number
/// (0xff: negative). Unlike GNU tar, junk after the digits is ignored (as libarchive does)
/// rather than turning the value into -1. `None` only for a value that does not fit an i64.
pub fn number(field: &[u8]) -> Option<i64> {
    match field.first() {
        Some(&b) if b & 0x80 != 0 => base256(field),
        _ => Some(octal(field)?),
    }
}

fn octal(field: &[u8]) -> Option<i64> {
    let mut rest = field;
    if rest.first() == Some(&0) {
        rest = &rest[1..];
    }
    let rest = match rest.iter().position(|b| !b.is_ascii_whitespace()) {
        Some(i) => &rest[i..],
        None => return Some(0),
    };
    let mut v: i64 = 0;
    for &b in rest.iter().take_while(|b| (b'0'..=b'7').contains(b)) {
        v = v.checked_mul(8)?.checked_add(i64::from(b - b'0'))?;
    }
    Some(v)
}

/// GNU base-256: big-endian two's complement in the remaining bits of the field.
fn base256(field: &[u8]) -> Option<i64> {
    // The first byte's marker bit is not part of the number; 0xff starts a negative one.
    let mut v: i128 = if field[0] & 0x40 != 0 {
        i128::from(field[0]) - 256
    } else {
        i128::from(field[0] & 0x7f)
    };
    for &b in &field[1..] {
        v = v.checked_mul(256)? | i128::from(b);
        if v > i128::from(i64::MAX) || v < i128::from(i64::MIN) {
            return None;
        }
    }
    i64::try_from(v).ok()
}

/// A pax decimal record: `1700000000.25` (fractions dropped), `-12`.
pub fn pax_number(value: &[u8]) -> Option<i64> {
    let s = std::str::from_utf8(value).ok()?.trim();
    let whole = s.split_once('.').map_or(s, |(w, _)| w);
    whole.parse().ok()
}

/// The lenient fields of one member, pax records first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: i64,
}

impl Owner {
    /// `pax` holds the member's pax records (key, value).
    pub fn read<'a>(
        header: &tar::Header,
        pax: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
    ) -> Owner {
        let old = header.as_old();
        let unsigned = |v: Option<i64>| v.and_then(|v| u64::try_from(v).ok()).unwrap_or(0);
        let mut o = Owner {
            // Permission bits only: type bits some writers add here are the entry type's job.
            mode: number(&old.mode).map_or(0, |m| (m & 0o7777) as u32),
            uid: unsigned(number(&old.uid)),
            gid: unsigned(number(&old.gid)),
            mtime: number(&old.mtime).unwrap_or(0),
        };
        for (k, v) in pax {
            let n = pax_number(v);
            match (k, n) {
                (b"uid", Some(n)) => o.uid = unsigned(Some(n)),
                (b"gid", Some(n)) => o.gid = unsigned(Some(n)),
                (b"mtime", Some(n)) => o.mtime = n,
                _ => {}
            }
        }
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn octal_fields_as_gnu_tar_reads_them() {
        assert_eq!(number(b"0000644\0"), Some(0o644));
        assert_eq!(
            number(b"\0\0\0\0\0\0\0\0"),
            Some(0),
            "cargo and npm leave uid empty"
        );
        assert_eq!(number(b"        "), Some(0));
        assert_eq!(number(b"   644 \0"), Some(0o644), "space padded both sides");
        assert_eq!(
            number(b"\x000644 "),
            Some(0o644),
            "leading NUL from an overflowed field"
        );
        assert_eq!(number(b"0000644\0junk"), Some(0o644));
        assert_eq!(
            number(b"12345678901"),
            Some(0o1234567),
            "stops at a non-octal digit"
        );
        assert_eq!(number(b""), Some(0));
    }

    #[test]
    fn base256_fields() {
        let mut f = [0u8; 8];
        f[0] = 0x80;
        f[4..].copy_from_slice(&5_000_000u32.to_be_bytes());
        assert_eq!(number(&f), Some(5_000_000));
        // -1 as GNU tar writes a negative mtime.
        assert_eq!(number(&[0xff; 12]), Some(-1));
        let mut big = [0u8; 12];
        big[0] = 0x80;
        big[1] = 0x7f;
        assert_eq!(number(&big), None, "past i64");
    }

    #[test]
    fn pax_numbers() {
        assert_eq!(pax_number(b"1700000000.123456789"), Some(1_700_000_000));
        assert_eq!(pax_number(b"-12"), Some(-12));
        assert_eq!(pax_number(b"4294967296"), Some(4_294_967_296));
        assert_eq!(pax_number(b"x"), None);
    }
}
