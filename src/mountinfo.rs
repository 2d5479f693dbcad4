//! `/proc/self/mountinfo`, read in one place: the mount code asks whether a FUSE mount is
//! already on a path, and `repofs install` looks for the mount that shows a repository.
//!
//! A line is (proc(5)): `ID PARENT MAJ:MIN ROOT MOUNT_POINT OPTIONS [OPTIONAL…] - FSTYPE
//! SOURCE SUPER_OPTIONS`. The optional fields (`shared:1`, `master:2`, …) vary in number, so
//! the fields after them are found by the lone `-`, not by position. Paths and the source
//! escape space, tab, newline and backslash as `\ooo`; the mount point is decoded to raw bytes,
//! since a mount point need not be UTF-8.

use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Where the kernel lists this process's mounts.
pub const PATH: &str = "/proc/self/mountinfo";

/// One mount, as much of it as repofs uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// Where it is mounted (escapes decoded).
    pub mount_point: PathBuf,
    /// `ext4`, `fuse.repofs`, … (`TYPE.SUBTYPE` for FUSE filesystems that name one).
    pub fs_type: String,
    /// What is mounted: a device, `repofs`, `none`, … (escapes decoded, lossily).
    pub source: String,
}

/// Parses one line; None for a line that is not one (too few fields, no `-`).
pub fn parse_line(line: &str) -> Option<Mount> {
    let mut fields = line.split(' ');
    let mount_point = fields.nth(4)?;
    // OPTIONS, then optional fields up to the separator.
    fields.next()?;
    fields.find(|f| *f == "-")?;
    let fs_type = fields.next()?;
    let source = fields.next()?;
    Some(Mount {
        mount_point: PathBuf::from(OsStr::from_bytes(&unescape(mount_point))),
        fs_type: unescape_lossy(fs_type),
        source: unescape_lossy(source),
    })
}

/// Every mount in `text` (a mountinfo file's contents), in its order; bad lines are skipped.
pub fn parse(text: &str) -> Vec<Mount> {
    text.lines().filter_map(parse_line).collect()
}

/// This process's mounts, from [`PATH`].
pub fn read() -> io::Result<Vec<Mount>> {
    Ok(parse(&std::fs::read_to_string(PATH)?))
}

/// Whether some mount's type starts with `fs_type_prefix` and its mount point is exactly
/// `path`, byte for byte.
pub fn mounted_at(mounts: &[Mount], path: &Path, fs_type_prefix: &str) -> bool {
    mounts.iter().any(|m| {
        m.mount_point.as_os_str() == path.as_os_str() && m.fs_type.starts_with(fs_type_prefix)
    })
}

/// Decodes `\ooo` (three octal digits, at most `\377`); anything else is kept as it is.
pub fn unescape(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if let Some(n) = octal(&b[i..]) {
            out.push(n);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

fn unescape_lossy(s: &str) -> String {
    String::from_utf8_lossy(&unescape(s)).into_owned()
}

/// The byte `\ooo` at the start of `b` stands for, if it is one.
fn octal(b: &[u8]) -> Option<u8> {
    let [b'\\', d @ ..] = b.get(..4)? else {
        return None;
    };
    let mut n: u32 = 0;
    for c in d {
        if !(b'0'..=b'7').contains(c) {
            return None;
        }
        n = n * 8 + u32::from(c - b'0');
    }
    u8::try_from(n).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_line() {
        let m = parse_line(
            "36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue",
        )
        .unwrap();
        assert_eq!(m.mount_point, Path::new("/mnt2"));
        assert_eq!(m.fs_type, "ext3");
        assert_eq!(m.source, "/dev/root");
    }

    #[test]
    fn optional_fields_are_skipped_whatever_their_number() {
        for optional in [
            "",
            " shared:1",
            " shared:1 master:2 propagate_from:3 unbindable",
        ] {
            let line = format!("1 2 0:5 / /a rw{optional} - fuse.repofs repofs rw,user_id=0");
            let m = parse_line(&line).unwrap();
            assert_eq!(m.mount_point, Path::new("/a"), "{line}");
            assert_eq!(m.fs_type, "fuse.repofs", "{line}");
            assert_eq!(m.source, "repofs", "{line}");
        }
    }

    #[test]
    fn escapes_are_decoded() {
        let m =
            parse_line(r"1 2 0:5 / /mnt/a\040b\011c\012d\134e rw - tmpfs my\040disk rw").unwrap();
        assert_eq!(m.mount_point, Path::new("/mnt/a b\tc\nd\\e"));
        assert_eq!(m.source, "my disk");
    }

    #[test]
    fn a_mount_point_that_is_not_utf8_keeps_its_bytes() {
        let m = parse_line(r"1 2 0:5 / /mnt/\377 rw - tmpfs tmpfs rw").unwrap();
        assert_eq!(m.mount_point.as_os_str().as_bytes(), b"/mnt/\xff");
    }

    #[test]
    fn what_is_not_an_escape_stays() {
        assert_eq!(unescape(r"a\b"), b"a\\b");
        assert_eq!(unescape(r"\40"), b"\\40");
        assert_eq!(unescape(r"\400"), b"\\400"); // past a byte
        assert_eq!(unescape(r"\08x"), b"\\08x");
        assert_eq!(unescape(r"é\é"), "é\\é".as_bytes());
        assert_eq!(unescape("\\"), b"\\");
    }

    #[test]
    fn bad_lines_are_skipped() {
        assert_eq!(parse_line("1 2 0:5 / /a rw shared:1"), None); // no separator
        assert_eq!(parse_line("1 2 0:5 / /a rw - fuse"), None); // no source
        assert_eq!(parse_line(""), None);
        let text = "garbage\n1 2 0:5 / /a rw - tmpfs t rw\n\n3 2 0:6 / /b rw - fuse x rw\n";
        let all = parse(text);
        assert_eq!(all.len(), 2);
        assert!(mounted_at(&all, Path::new("/b"), "fuse"));
        assert!(!mounted_at(&all, Path::new("/a"), "fuse"));
        assert!(!mounted_at(&all, Path::new("/b/"), "fuse"));
        assert!(!mounted_at(&all, Path::new("/c"), "tmpfs"));
    }
}
