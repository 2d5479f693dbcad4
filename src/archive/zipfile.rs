//! Zip-based packages (`.zip`, Python wheels, Java `.jar`).
//!
//! The central directory gives every member's offset, so the catalog records where each
//! member's (stored or deflated) bytes start in the file itself: pkgs/ reads a member by
//! inflating only that member, never the archive. Members are hashed here, which also checks
//! their CRC-32.

use std::fs::File;
use std::io::{self, BufReader, Read};

use zip::CompressionMethod;

use super::{
    check_link, corrupt, entry_path, hash_entry, ArchiveError, Entry, EntryKind, EntryList, Layout,
    MetaFiles, Result,
};
use crate::config::Limits;

const S_IFMT: u32 = 0o170000;
const S_IFLNK: u32 = 0o120000;
const S_IFDIR: u32 = 0o040000;

/// Returns the entry list and the unpacked size.
pub(super) fn inspect_zip(
    file: File,
    limits: &Limits,
    meta: &mut MetaFiles,
) -> Result<(Vec<Entry>, u64)> {
    let mut z = zip::ZipArchive::new(BufReader::new(file)).map_err(zip_error)?;
    if z.len() as u64 > limits.max_entries {
        return Err(ArchiveError::TooLarge(format!(
            "more than {} entries",
            limits.max_entries
        )));
    }
    let mut entries = EntryList::default();
    let mut total: u64 = 0;
    for i in 0..z.len() {
        let mut f = z.by_index(i).map_err(zip_error)?;
        let name = f.name().map_err(zip_error)?.into_owned();
        let Some(path) = entry_path(&name)? else {
            continue;
        };
        let unix = f.unix_mode();
        let kind = match unix.map(|m| m & S_IFMT) {
            Some(S_IFLNK) => EntryKind::Symlink,
            Some(S_IFDIR) => EntryKind::Dir,
            _ if f.is_dir() => EntryKind::Dir,
            _ => EntryKind::File,
        };
        // What unzip gives a member without Unix permissions (under the usual umask 022).
        let mode = unix.map_or(if kind == EntryKind::Dir { 0o755 } else { 0o644 }, |m| {
            m & 0o7777
        });
        let size = f.size();
        let layout = match f.compression() {
            CompressionMethod::Stored => Layout::Contiguous,
            CompressionMethod::Deflated => Layout::Deflated {
                csize: f.compressed_size(),
            },
            other => {
                return Err(ArchiveError::Corrupt(format!(
                    "{path}: zip compression method {other:?} is not supported (only stored and deflate)"
                )))
            }
        };
        let data_offset = f.data_start().ok_or_else(|| {
            ArchiveError::Corrupt(format!("{path}: zip member without a data offset"))
        })?;
        let mut link_target = None;
        let mut sha256 = None;
        // The declared size bounds what is read: a member that inflates past it is corrupt.
        let mut body = (&mut f).take(size.saturating_add(1));
        match kind {
            EntryKind::File => {
                total = total.saturating_add(size);
                if total > limits.max_unpacked_size {
                    return Err(ArchiveError::TooLarge(format!(
                        "unpacked size exceeds {} bytes",
                        limits.max_unpacked_size
                    )));
                }
                let mut counted = Counted {
                    inner: &mut body,
                    n: 0,
                };
                let keep = meta.slot(&path, false);
                sha256 = Some(hash_entry(
                    &mut counted,
                    &path,
                    keep,
                    limits.max_metadata_size,
                )?);
                if counted.n != size {
                    return Err(ArchiveError::Corrupt(format!(
                        "{path}: zip member holds {} bytes, its header says {size}",
                        counted.n
                    )));
                }
            }
            EntryKind::Symlink => {
                let mut t = Vec::new();
                (&mut body)
                    .take(4096)
                    .read_to_end(&mut t)
                    .map_err(corrupt)?;
                let t = String::from_utf8(t).map_err(|_| {
                    ArchiveError::Corrupt(format!("{path}: link target is not UTF-8"))
                })?;
                link_target = Some(check_link(&path, &t, kind, &entries)?);
            }
            _ => {}
        }
        let entry = Entry {
            path,
            kind,
            mode,
            size: if kind == EntryKind::File { size } else { 0 },
            mtime: f.last_modified().map_or(0, dos_to_unix),
            uid: 0,
            gid: 0,
            link_target,
            data_offset,
            sha256,
            layout: if kind == EntryKind::File {
                layout
            } else {
                Layout::Contiguous
            },
        };
        entries.add(entry);
    }
    Ok((entries.entries, total))
}

fn zip_error(e: zip::result::ZipError) -> ArchiveError {
    match e {
        zip::result::ZipError::Io(e) => corrupt(e),
        other => ArchiveError::Corrupt(format!("corrupt zip: {other}")),
    }
}

/// DOS timestamps have no zone; read them as UTC, as a build machine in UTC wrote them.
fn dos_to_unix(t: zip::DateTime) -> i64 {
    let text = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        t.month(),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    humantime::parse_rfc3339(&text)
        .ok()
        .and_then(|s| s.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs() as i64)
}

struct Counted<R> {
    inner: R,
    n: u64,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.n += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dos_times_are_utc_seconds() {
        let t = zip::DateTime::from_date_and_time(2024, 2, 29, 12, 30, 58).unwrap();
        assert_eq!(dos_to_unix(t), 1_709_209_858);
        let t = zip::DateTime::from_date_and_time(1980, 1, 1, 0, 0, 0).unwrap();
        assert_eq!(dos_to_unix(t), 315_532_800);
    }
}
