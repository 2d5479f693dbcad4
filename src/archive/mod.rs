//! Reading package archives once, at publish time, into catalog records.
//!
//! Archives are untrusted. One streaming pass over the (decompressed) tar payload checks every
//! entry (no `..`, no absolute paths, no links out of the tree, no device nodes), enforces the
//! unpacked-size and entry-count limits before any bytes are inflated past them, hashes each
//! regular file, records where its data sits in the uncompressed stream, and picks up the
//! package's metadata file. After this, listing a package tree never needs the archive.
//!
//! The tar walk is in `tarwalk` and zip members in `zipfile`; this module picks the format,
//! unwraps a .deb's `ar` members, and holds what every format shares: entry-name and link
//! checks, hashing, and the metadata files picked up on the way.

pub mod fields;
pub mod gzindex;
pub mod meta;
pub mod sparse;
mod tarwalk;
mod zipfile;

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::Limits;
use crate::paths;
pub use meta::{MetaSource, PackageMeta};
use tarwalk::{walk_payload, walk_tar, StreamLimit};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Tar,
    TarGz,
    TarZst,
    TarXz,
    TarBz2,
    TarLz,
    Deb,
    /// Zip-based: `.zip`, Python wheels, Java archives.
    Zip,
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
        } else if has(".tar.bz2") || has(".tbz2") || has(".tbz") {
            Some(Format::TarBz2)
        } else if has(".tar.lz") {
            Some(Format::TarLz)
        } else if has(".deb") {
            Some(Format::Deb)
        } else if has(".zip") || has(".whl") || has(".jar") {
            Some(Format::Zip)
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
            Format::TarBz2 => "tar.bz2",
            Format::TarLz => "tar.lz",
            Format::Deb => "deb",
            Format::Zip => "zip",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
    Xz,
    Bzip2,
    Lzip,
}

impl Compression {
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
            Compression::Xz => "xz",
            Compression::Bzip2 => "bzip2",
            Compression::Lzip => "lzip",
        }
    }

    pub fn parse(s: &str) -> Option<Compression> {
        [
            Compression::None,
            Compression::Gzip,
            Compression::Zstd,
            Compression::Xz,
            Compression::Bzip2,
            Compression::Lzip,
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
            Some(".bz2") => Some(Compression::Bzip2),
            _ => None,
        }
    }

    /// The decompressed stream of `r`.
    pub fn reader<'r, R: Read + 'r>(self, r: R) -> io::Result<Box<dyn Read + 'r>> {
        Ok(match self {
            Compression::None => Box::new(r),
            Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(r)),
            Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(r)?),
            Compression::Xz => Box::new(liblzma::read::XzDecoder::new_multi_decoder(r)),
            Compression::Bzip2 => Box::new(bzip2::read::MultiBzDecoder::new(r)),
            Compression::Lzip => {
                let stream = liblzma::stream::Stream::new_lzip_decoder(
                    u64::MAX,
                    liblzma::stream::CONCATENATED,
                )
                .map_err(io::Error::other)?;
                Box::new(liblzma::read::XzDecoder::new_stream(r, stream))
            }
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

/// How an entry's bytes are laid out, beyond its `data_offset` and `size`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Layout {
    /// `size` bytes at `data_offset` of the uncompressed stream.
    #[default]
    Contiguous,
    /// A sparse file: these runs hold data, the rest reads as zeros.
    Sparse(Vec<sparse::Segment>),
    /// A deflated zip member: `csize` bytes of raw deflate at `data_offset` in the file.
    Deflated { csize: u64 },
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
    pub layout: Layout,
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
    let mut meta_files = MetaFiles::for_file(filename);
    let (entries, unpacked_size, payload, seek_points) = match format {
        Format::Deb => inspect_deb(file, limits, &mut meta_files)?,
        Format::Zip => {
            let (entries, unpacked) = zipfile::inspect_zip(file, limits, &mut meta_files)?;
            // Members are read in place: the "stream" is the file itself.
            let payload = Payload {
                offset: 0,
                size,
                compression: Compression::None,
            };
            (entries, unpacked, payload, Vec::new())
        }
        _ => {
            let compression = match format {
                Format::Tar => Compression::None,
                Format::TarGz => Compression::Gzip,
                Format::TarZst => Compression::Zstd,
                Format::TarBz2 => Compression::Bzip2,
                Format::TarLz => Compression::Lzip,
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

/// Uncompressed bytes between gzip seek points: a first read inside a .tar.gz inflates at
/// most this much (a few ms; 4 MiB took 20-30 ms on a loaded 2-core machine). Each point
/// keeps its 32 KiB window deflated, ~8 KiB for source trees: the index costs ~0.8% of the
/// unpacked size. Packages published with another spacing keep theirs (the points say).
pub const SEEK_SPACING: u64 = 1 << 20;

/// Metadata files picked up while walking; which ones count depends on the format.
#[derive(Default)]
struct MetaFiles {
    pkginfo: Option<Vec<u8>>,
    tpm: Option<Vec<u8>>,
    distpac: Option<Vec<u8>>,
    deb_control: Option<Vec<u8>>,
    /// `NAME-VERSION/Cargo.toml`, in a `.crate` only (elsewhere it describes sources).
    cargo: Option<Vec<u8>>,
    /// `package/package.json`, where `npm pack` puts it.
    npm: Option<Vec<u8>>,
    /// `NAME-VERSION/PKG-INFO` of a Python sdist.
    python_sdist: Option<Vec<u8>>,
    /// `NAME-VERSION.dist-info/METADATA` of a wheel.
    python_wheel: Option<Vec<u8>>,
    is_crate: bool,
}

impl MetaFiles {
    fn for_file(filename: &str) -> MetaFiles {
        MetaFiles {
            is_crate: filename.to_ascii_lowercase().ends_with(".crate"),
            ..MetaFiles::default()
        }
    }

    fn slot(&mut self, path: &str, in_control: bool) -> Option<&mut Option<Vec<u8>>> {
        let top = path.split_once('/').filter(|(_, rest)| !rest.contains('/'));
        let slot = match (in_control, path, top) {
            (true, "control", _) => &mut self.deb_control,
            (true, ..) => return None,
            (_, ".PKGINFO", _) => &mut self.pkginfo,
            (_, "info/package.json", _) => &mut self.tpm,
            (_, "manifest.yaml", _) => &mut self.distpac,
            (_, "package/package.json", _) => &mut self.npm,
            (_, _, Some((_, "Cargo.toml"))) if self.is_crate => &mut self.cargo,
            (_, _, Some((_, "PKG-INFO"))) => &mut self.python_sdist,
            (_, _, Some((dir, "METADATA"))) if dir.ends_with(".dist-info") => {
                &mut self.python_wheel
            }
            _ => return None,
        };
        // The first of a kind counts (a tree may hold several top directories).
        if slot.is_some() {
            return None;
        }
        Some(slot)
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
        } else if let Some(b) = self.cargo {
            meta::from_cargo_toml(&text(b, "Cargo.toml")?)
        } else if let Some(b) = self.npm {
            meta::from_package_json(&text(b, "package/package.json")?)
        } else if let Some(b) = self.python_wheel {
            meta::from_python_metadata(&text(b, "METADATA")?, "METADATA")
        } else if let Some(b) = self.python_sdist {
            meta::from_python_metadata(&text(b, "PKG-INFO")?, "PKG-INFO")
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

/// Entries in archive order; a later member of the same name replaces the earlier one, as
/// extraction does. Hard links may point only at what is already here.
#[derive(Default)]
struct EntryList {
    entries: Vec<Entry>,
    index: HashMap<String, usize>,
}

impl EntryList {
    fn add(&mut self, entry: Entry) {
        match self.index.get(&entry.path) {
            Some(&i) => self.entries[i] = entry,
            None => {
                self.index.insert(entry.path.clone(), self.entries.len());
                self.entries.push(entry);
            }
        }
    }

    fn has(&self, path: &str) -> bool {
        self.index.contains_key(path)
    }
}

/// Longest entry name: Linux's PATH_MAX, so nothing accepted is unextractable, and a million
/// entries cannot hold gigabytes of names in memory.
pub const MAX_PATH: usize = 4096;

/// An entry's normalized path (`None` for the archive's root), refusing unsafe and overlong
/// names.
fn entry_path(name: &str) -> Result<Option<String>> {
    if name.len() > MAX_PATH {
        return Err(ArchiveError::TooLarge(format!(
            "entry name of {} bytes (at most {MAX_PATH})",
            name.len()
        )));
    }
    paths::normalize_entry(name).map_err(ArchiveError::Unsafe)
}

/// Symlinks must resolve inside the tree; hard links must name an earlier member.
fn check_link(path: &str, target: &str, kind: EntryKind, seen: &EntryList) -> Result<String> {
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
            Ok(Some(t)) if seen.has(&t) => Ok(t),
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
    Ok(hex::encode(sha.finalize()))
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
