//! Reading package archives once, at publish time, into catalog records.
//!
//! Archives are untrusted. One streaming pass over the (decompressed) tar payload checks every
//! entry (no `..`, no absolute paths, no links out of the tree, no device nodes), enforces the
//! unpacked-size and entry-count limits before any bytes are inflated past them, hashes each
//! regular file, records where its data sits in the uncompressed stream, and picks up the
//! package's metadata file. After this, listing a package tree never needs the archive.

pub mod gzindex;
pub mod meta;

use std::cell::Cell;
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;
use std::rc::Rc;

use sha2::{Digest, Sha256};

use crate::config::Limits;
use crate::paths;
use crate::store::to_hex;
pub use meta::{MetaSource, PackageMeta};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Tar,
    TarGz,
    TarZst,
    TarXz,
    Deb,
}

impl Format {
    /// Recognizes archive formats by name. Anything else is published as a plain file.
    pub fn from_filename(name: &str) -> Option<Format> {
        let n = name.to_ascii_lowercase();
        let has = |s: &str| n.ends_with(s);
        if has(".tar") {
            Some(Format::Tar)
        } else if has(".tar.gz") || has(".tgz") || has(".crate") {
            Some(Format::TarGz)
        } else if has(".tar.zst") || has(".tzst") {
            Some(Format::TarZst)
        } else if has(".tar.xz") || has(".txz") {
            Some(Format::TarXz)
        } else if has(".deb") {
            Some(Format::Deb)
        } else {
            None
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Format::Tar => "tar",
            Format::TarGz => "tar.gz",
            Format::TarZst => "tar.zst",
            Format::TarXz => "tar.xz",
            Format::Deb => "deb",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
    Xz,
}

impl Compression {
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
            Compression::Xz => "xz",
        }
    }

    pub fn parse(s: &str) -> Option<Compression> {
        [
            Compression::None,
            Compression::Gzip,
            Compression::Zstd,
            Compression::Xz,
        ]
        .into_iter()
        .find(|c| c.as_str() == s)
    }

    fn from_member_suffix(name: &str) -> Option<Compression> {
        match name.rsplit_once(".tar").map(|(_, ext)| ext) {
            Some("") => Some(Compression::None),
            Some(".gz") => Some(Compression::Gzip),
            Some(".zst") => Some(Compression::Zstd),
            Some(".xz") => Some(Compression::Xz),
            _ => None,
        }
    }

    /// The decompressed stream of `r`.
    pub fn reader<'r, R: Read + 'r>(self, r: R) -> io::Result<Box<dyn Read + 'r>> {
        Ok(match self {
            Compression::None => Box::new(r),
            Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(r)),
            Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(r)?),
            Compression::Xz => Box::new(xz2::read::XzDecoder::new_multi_decoder(r)),
        })
    }
}

/// Where the tar stream sits inside the published file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Payload {
    pub offset: u64,
    pub size: u64,
    pub compression: Compression,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    File,
    Dir,
    Symlink,
    Hardlink,
}

/// One archive member, as the catalog records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub path: String,
    pub kind: EntryKind,
    pub mode: u32,
    pub size: u64,
    pub mtime: i64,
    pub uid: u64,
    pub gid: u64,
    pub link_target: Option<String>,
    /// Offset of the entry's data in the uncompressed tar stream.
    pub data_offset: u64,
    pub sha256: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Inspection {
    pub format: Format,
    pub meta: PackageMeta,
    pub entries: Vec<Entry>,
    pub payload: Payload,
    pub unpacked_size: u64,
    /// Random-access points into a gzip payload (empty for other compressions).
    pub seek_points: Vec<gzindex::SeekPoint>,
}

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("{0}")]
    Unsafe(String),
    #[error("{0}")]
    Corrupt(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("reading archive: {0}")]
    Io(#[from] io::Error),
}

type Result<T> = std::result::Result<T, ArchiveError>;

/// Inspects `path` as the archive its `filename` says it is. `Ok(None)` for non-archives.
pub fn inspect(path: &Path, filename: &str, limits: &Limits) -> Result<Option<Inspection>> {
    let Some(format) = Format::from_filename(filename) else {
        return Ok(None);
    };
    let file = File::open(path)?;
    let size = file.metadata()?.len();
    let mut meta_files = MetaFiles::default();
    let (entries, unpacked_size, payload, seek_points) = match format {
        Format::Deb => inspect_deb(file, limits, &mut meta_files)?,
        _ => {
            let compression = match format {
                Format::Tar => Compression::None,
                Format::TarGz => Compression::Gzip,
                Format::TarZst => Compression::Zstd,
                _ => Compression::Xz,
            };
            let input = BufReader::with_capacity(1 << 20, file);
            let (entries, unpacked, points) =
                walk_payload(input, compression, limits, &mut meta_files)?;
            (
                entries,
                unpacked,
                Payload {
                    offset: 0,
                    size,
                    compression,
                },
                points,
            )
        }
    };
    let meta = meta_files
        .into_meta(filename)
        .map_err(ArchiveError::Corrupt)?;
    Ok(Some(Inspection {
        format,
        meta,
        entries,
        payload,
        unpacked_size,
        seek_points,
    }))
}

/// Uncompressed bytes between gzip seek points: a read inside a .tar.gz inflates at most
/// this much before its first byte (~4 ms; the index costs ~0.8% of the unpacked size).
pub const SEEK_SPACING: u64 = 4 << 20;

/// Walks the payload's tar stream; a gzip one is indexed on the way (one inflation serves
/// both the entry list and the seek points).
fn walk_payload<R: Read>(
    input: R,
    compression: Compression,
    limits: &Limits,
    meta: &mut MetaFiles,
) -> Result<(Vec<Entry>, u64, Vec<gzindex::SeekPoint>)> {
    if compression == Compression::Gzip {
        let mut r = gzindex::IndexingReader::new(input, SEEK_SPACING);
        let (entries, unpacked) = walk_tar(&mut r, limits, meta, true)?;
        // Decodes what tar left (the end blocks and trailer), so the CRC is checked too.
        let (points, _) = r.finish().map_err(corrupt)?;
        return Ok((entries, unpacked, points));
    }
    let (entries, unpacked) = walk_tar(
        compression.reader(input).map_err(corrupt)?,
        limits,
        meta,
        true,
    )?;
    Ok((entries, unpacked, Vec::new()))
}

/// Metadata files picked up while walking; which ones count depends on the format.
#[derive(Default)]
struct MetaFiles {
    pkginfo: Option<Vec<u8>>,
    tpm: Option<Vec<u8>>,
    distpac: Option<Vec<u8>>,
    deb_control: Option<Vec<u8>>,
}

impl MetaFiles {
    fn slot(&mut self, path: &str, in_control: bool) -> Option<&mut Option<Vec<u8>>> {
        match (in_control, path) {
            (true, "control") => Some(&mut self.deb_control),
            (false, ".PKGINFO") => Some(&mut self.pkginfo),
            (false, "info/package.json") => Some(&mut self.tpm),
            (false, "manifest.yaml") => Some(&mut self.distpac),
            _ => None,
        }
    }

    fn into_meta(self, filename: &str) -> std::result::Result<PackageMeta, String> {
        let text = |b: Vec<u8>, what: &str| {
            String::from_utf8(b).map_err(|_| format!("{what} is not UTF-8"))
        };
        if let Some(b) = self.deb_control {
            meta::from_deb_control(&text(b, "control")?)
        } else if let Some(b) = self.pkginfo {
            meta::from_pkginfo(&text(b, ".PKGINFO")?)
        } else if let Some(b) = self.tpm {
            meta::from_tpm(&text(b, "info/package.json")?, filename)
        } else if let Some(b) = self.distpac {
            meta::from_distpac(&text(b, "manifest.yaml")?)
        } else {
            Ok(meta::from_filename(filename))
        }
    }
}

fn corrupt(e: io::Error) -> ArchiveError {
    match e.get_ref().and_then(|i| i.downcast_ref::<StreamLimit>()) {
        Some(l) => ArchiveError::TooLarge(l.to_string()),
        None => ArchiveError::Corrupt(format!("corrupt archive: {e}")),
    }
}

/// Walks a tar stream; see the module doc for what is checked. `keep_entries` is false for a
/// .deb's control.tar, whose members are read only for metadata.
fn walk_tar<R: Read>(
    reader: R,
    limits: &Limits,
    meta: &mut MetaFiles,
    keep_entries: bool,
) -> Result<(Vec<Entry>, u64)> {
    let budget = limits
        .max_unpacked_size
        .saturating_add(limits.max_entries.saturating_mul(3 * 512));
    let phase = Rc::new(Phase::default());
    let mut ar = tar::Archive::new(LimitReader {
        inner: reader,
        left: budget,
        limit: budget,
        phase: phase.clone(),
    });
    let mut entries: Vec<Entry> = Vec::new();
    // path -> index in `entries`; also what hard links may point at.
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut total: u64 = 0;
    let mut count: u64 = 0;
    for item in ar.entries().map_err(corrupt)? {
        let mut e = item.map_err(corrupt)?;
        // Everything the tar crate read since the last member was headers and extensions.
        phase.start_data();
        count += 1;
        if count > limits.max_entries {
            return Err(ArchiveError::TooLarge(format!(
                "more than {} entries",
                limits.max_entries
            )));
        }
        let raw = e.path_bytes();
        let name = std::str::from_utf8(&raw)
            .map_err(|_| ArchiveError::Corrupt("entry name is not UTF-8".into()))?
            .to_string();
        let Some(path) = paths::normalize_entry(&name).map_err(ArchiveError::Unsafe)? else {
            continue;
        };
        if is_pax_sparse(&mut e)? {
            return Err(sparse(&path));
        }
        let header = e.header();
        let kind = match header.entry_type() {
            // The mount serves a file as one run of the stream; a sparse member is not one.
            tar::EntryType::GNUSparse => return Err(sparse(&path)),
            tar::EntryType::Regular | tar::EntryType::Continuous => EntryKind::File,
            // A pax global header (git archive writes one): archive-wide comments, no member.
            tar::EntryType::XGlobalHeader => {
                drain(&mut e)?;
                phase.start_headers();
                continue;
            }
            tar::EntryType::Directory => EntryKind::Dir,
            tar::EntryType::Symlink => EntryKind::Symlink,
            tar::EntryType::Link => EntryKind::Hardlink,
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                return Err(ArchiveError::Unsafe(format!("{path}: device node or FIFO")));
            }
            other => {
                return Err(ArchiveError::Corrupt(format!(
                    "{path}: unsupported entry type {other:?}"
                )))
            }
        };
        let size = if kind == EntryKind::File { e.size() } else { 0 };
        total = total.saturating_add(size);
        if total > limits.max_unpacked_size {
            return Err(ArchiveError::TooLarge(format!(
                "unpacked size exceeds {} bytes",
                limits.max_unpacked_size
            )));
        }
        let link_target = match kind {
            EntryKind::Symlink | EntryKind::Hardlink => {
                let t = e
                    .link_name_bytes()
                    .ok_or_else(|| ArchiveError::Corrupt(format!("{path}: link without target")))?;
                let t = std::str::from_utf8(&t)
                    .map_err(|_| {
                        ArchiveError::Corrupt(format!("{path}: link target is not UTF-8"))
                    })?
                    .to_string();
                Some(check_link(&path, &t, kind, &seen)?)
            }
            _ => None,
        };
        let mode = header.mode().map_err(|e| corrupt(io::Error::other(e)))? & 0o7777;
        let mtime = header.mtime().map_err(|e| corrupt(io::Error::other(e)))? as i64;
        let uid = header.uid().map_err(|e| corrupt(io::Error::other(e)))?;
        let gid = header.gid().map_err(|e| corrupt(io::Error::other(e)))?;
        let data_offset = e.raw_file_position();
        let sha256 = if kind == EntryKind::File {
            let keep = meta.slot(&path, !keep_entries);
            Some(hash_entry(&mut e, &path, keep, limits.max_metadata_size)?)
        } else {
            drain(&mut e)?; // data of non-files is ignored, but read under the data budget
            None
        };
        phase.start_headers();
        if !keep_entries {
            continue;
        }
        let entry = Entry {
            path,
            kind,
            mode,
            size,
            mtime,
            uid,
            gid,
            link_target,
            data_offset,
            sha256,
        };
        // A later member of the same name replaces the earlier one, as tar extraction does.
        match seen.get(&entry.path) {
            Some(&i) => entries[i] = entry,
            None => {
                seen.insert(entry.path.clone(), entries.len());
                entries.push(entry);
            }
        }
    }
    // Read what follows the end marker (padding, normally) under the same budget, so the
    // decompressor reaches its stream's end and checks its checksum (zstd, xz; gzip's CRC too).
    phase.start_data();
    drain(&mut ar.into_inner())?;
    Ok((entries, total))
}

fn sparse(path: &str) -> ArchiveError {
    ArchiveError::Corrupt(format!("{path}: sparse files are not supported"))
}

/// GNU tar's pax sparse formats (0.0, 0.1, 1.0) mark a member with `GNU.sparse.*` records;
/// its data is then a map and the packed extents, not the file's bytes.
fn is_pax_sparse<R: Read>(e: &mut tar::Entry<R>) -> Result<bool> {
    // A global header's records would be read into memory whole; it is drained instead.
    if e.header().entry_type().is_pax_global_extensions() {
        return Ok(false);
    }
    let Some(records) = e.pax_extensions().map_err(corrupt)? else {
        return Ok(false);
    };
    Ok(records
        .flatten()
        .any(|r| r.key_bytes().starts_with(b"GNU.sparse.")))
}

/// Symlinks must resolve inside the tree; hard links must name an earlier member.
fn check_link(
    path: &str,
    target: &str,
    kind: EntryKind,
    seen: &HashMap<String, usize>,
) -> Result<String> {
    match kind {
        EntryKind::Symlink => {
            if paths::resolve_link(paths::parent(path), target).is_none() {
                return Err(ArchiveError::Unsafe(format!(
                    "{path}: symlink to {target:?} points out of the tree"
                )));
            }
            Ok(target.to_string())
        }
        _ => match paths::normalize_entry(target) {
            Ok(Some(t)) if seen.contains_key(&t) => Ok(t),
            Ok(Some(t)) => Err(ArchiveError::Unsafe(format!(
                "{path}: hard link to {t:?} which is not in the archive"
            ))),
            _ => Err(ArchiveError::Unsafe(format!(
                "{path}: hard link to {target:?} points out of the tree"
            ))),
        },
    }
}

fn hash_entry(
    r: &mut impl Read,
    path: &str,
    mut keep: Option<&mut Option<Vec<u8>>>,
    max_meta: u64,
) -> Result<String> {
    let mut sha = Sha256::new();
    let mut buf = vec![0u8; 256 << 10];
    let mut kept = Vec::new();
    loop {
        let n = r.read(&mut buf).map_err(corrupt)?;
        if n == 0 {
            break;
        }
        sha.update(&buf[..n]);
        if keep.is_some() {
            if (kept.len() + n) as u64 > max_meta {
                return Err(ArchiveError::TooLarge(format!(
                    "metadata file {path} exceeds {max_meta} bytes"
                )));
            }
            kept.extend_from_slice(&buf[..n]);
        }
    }
    if let Some(slot) = keep.as_mut() {
        **slot = Some(kept);
    }
    Ok(to_hex(&sha.finalize()))
}

/// A .deb is an `ar` archive: `debian-binary`, `control.tar.*`, `data.tar.*`. The payload is
/// data.tar; its offset in the .deb is recorded so pkgs/ can read it without parsing `ar`.
fn inspect_deb(
    file: File,
    limits: &Limits,
    meta: &mut MetaFiles,
) -> Result<(Vec<Entry>, u64, Payload, Vec<gzindex::SeekPoint>)> {
    check_deb_members(&file)?;
    let pos = std::rc::Rc::new(std::cell::Cell::new(0u64));
    let counting = Counting {
        inner: BufReader::new(file),
        pos: pos.clone(),
    };
    let mut ar = ar::Archive::new(counting);
    let mut seen_binary = false;
    let mut data = None;
    let mut control = false;
    while let Some(member) = ar.next_entry() {
        let member = member.map_err(|e| ArchiveError::Corrupt(format!("corrupt .deb: {e}")))?;
        let offset = pos.get();
        let name = String::from_utf8_lossy(member.header().identifier())
            .trim_end_matches('/')
            .to_string();
        let size = member.header().size();
        if !seen_binary {
            if name != "debian-binary" {
                return Err(ArchiveError::Corrupt(
                    "not a .deb: first member is not debian-binary".into(),
                ));
            }
            seen_binary = true;
            continue;
        }
        if let Some(c) = name
            .strip_prefix("control.tar")
            .and(Compression::from_member_suffix(&name))
        {
            walk_tar(c.reader(member).map_err(corrupt)?, limits, meta, false)?;
            control = true;
        } else if let Some(c) = name
            .strip_prefix("data.tar")
            .and(Compression::from_member_suffix(&name))
        {
            let (entries, total, points) = walk_payload(member, c, limits, meta)?;
            data = Some((
                entries,
                total,
                Payload {
                    offset,
                    size,
                    compression: c,
                },
                points,
            ));
        }
    }
    if !control {
        return Err(ArchiveError::Corrupt(
            "not a .deb: no control.tar member".into(),
        ));
    }
    data.ok_or_else(|| ArchiveError::Corrupt("not a .deb: no data.tar member".into()))
}

/// Checks the `ar` member headers before the `ar` crate reads them, which trusts two fields
/// it should not: a GNU name reference (`/N`) indexes its name table unchecked (a panic), and
/// a GNU name table (`//`) or BSD long name (`#1/N`) is allocated at its stated size (up to
/// 10 GB) before reading. A .deb needs neither (its member names are short), and a member
/// larger than the rest of the file is truncated: its recorded payload would run past the end.
fn check_deb_members(file: &File) -> Result<()> {
    use std::os::unix::fs::FileExt;
    let bad = |m: &str| ArchiveError::Corrupt(format!("corrupt .deb: {m}"));
    let len = file.metadata()?.len();
    let mut at: u64 = 8; // "!<arch>\n"; the ar crate checks it
    let mut h = [0u8; 60];
    while at < len {
        if file.read_exact_at(&mut h, at).is_err() {
            break; // a short header: the ar crate reports it
        }
        if h[0] == b'/' || h.starts_with(b"#1/") {
            return Err(bad("extended member names (ar symbol or name tables)"));
        }
        let Some(size) = std::str::from_utf8(&h[48..58])
            .ok()
            .and_then(|s| s.trim_end().parse::<u64>().ok())
        else {
            break; // malformed: the ar crate reports it
        };
        at += 60;
        if size > len - at.min(len) {
            return Err(bad("member runs past the end of the file"));
        }
        at += size + size % 2;
    }
    Ok(())
}

/// Tracks how many bytes have been read, to learn where `ar` members start.
struct Counting<R> {
    inner: R,
    pos: std::rc::Rc<std::cell::Cell<u64>>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.pos.set(self.pos.get() + n as u64);
        Ok(n)
    }
}

fn drain(r: &mut impl Read) -> Result<()> {
    io::copy(r, &mut io::sink()).map(drop).map_err(corrupt)
}

#[derive(Debug, thiserror::Error)]
enum StreamLimit {
    #[error("archive inflates past {0} bytes")]
    Total(u64),
    #[error("archive member headers exceed {0} bytes")]
    Headers(u64),
}

/// Most bytes of headers, long names and pax records allowed before one member. The tar crate
/// reads extension records into memory whole, so this also bounds its memory use.
const MAX_HEADER_BYTES: u64 = 1 << 20;

/// Whether the tar crate is reading member headers (between the members it hands us) or we
/// are reading member data, and how much header has been read since the last member.
#[derive(Default)]
struct Phase {
    in_data: Cell<bool>,
    header_bytes: Cell<u64>,
}

impl Phase {
    fn start_data(&self) {
        self.in_data.set(true);
    }
    fn start_headers(&self) {
        self.in_data.set(false);
        self.header_bytes.set(0);
    }
}

/// Caps the inflated stream: in total (bombs), and per member for headers (a small archive
/// whose pax record inflates to gigabytes would otherwise be read into memory).
struct LimitReader<R> {
    inner: R,
    left: u64,
    limit: u64,
    phase: Rc<Phase>,
}

impl<R: Read> Read for LimitReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)? as u64;
        self.left = self
            .left
            .checked_sub(n)
            .ok_or_else(|| io::Error::other(StreamLimit::Total(self.limit)))?;
        if !self.phase.in_data.get() {
            let h = self.phase.header_bytes.get() + n;
            if h > MAX_HEADER_BYTES {
                return Err(io::Error::other(StreamLimit::Headers(MAX_HEADER_BYTES)));
            }
            self.phase.header_bytes.set(h);
        }
        Ok(n as usize)
    }
}
