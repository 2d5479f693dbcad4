//! `repofs image`: the closure installed into a staging root, then packed reproducibly.
//!
//! The staging root is a normal install (scripts run when the closure brings a `/bin/sh`,
//! as pacstrap and mkosi do, and are skipped with a warning otherwise), made in a temporary
//! directory beside the output. The image holds the installed tree without repofs's own
//! database (`var/lib/repofs/`: receipts with install times, journal, lock); directories
//! that only existed to hold it are left out too. Same inputs, same bytes: entries sorted by
//! path, owner 0/0 with empty names, modes as installed, every mtime clamped to
//! `SOURCE_DATE_EPOCH` or else to the newest package's publication time, a gzip header
//! without name or time. ISO images come from `xorriso -as mkisofs` with the same clamp and
//! fixed volume dates.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::catalog::{Catalog, PackageRow};

use super::{db::DB_DIR, InstallError, Options, Report};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Tar,
    #[value(name = "tar.gz")]
    TarGz,
    #[value(name = "tar.zst")]
    TarZst,
    Iso,
}

impl Format {
    /// From the output name, when no --format is given.
    pub fn from_name(p: &Path) -> Format {
        let n = p.to_string_lossy();
        if n.ends_with(".tar.gz") || n.ends_with(".tgz") {
            Format::TarGz
        } else if n.ends_with(".tar.zst") || n.ends_with(".tzst") {
            Format::TarZst
        } else if n.ends_with(".iso") {
            Format::Iso
        } else {
            Format::Tar
        }
    }
}

pub struct ImageOptions {
    pub format: Format,
    pub output: PathBuf,
    pub mount: PathBuf,
    /// `SOURCE_DATE_EPOCH`; None = the newest package's publication time.
    pub source_date_epoch: Option<i64>,
    pub script_timeout: Duration,
    pub progress: bool,
}

#[derive(Debug, serde::Serialize)]
pub struct ImageReport {
    pub output: PathBuf,
    pub entries: usize,
    pub clamp: i64,
    pub install: Report,
}

struct Node {
    kind: char,
    mode: u32,
    mtime: i64,
    size: u64,
    target: Option<PathBuf>,
}

/// Builds the image of `plan` (install order).
pub fn build(
    cat: &Catalog,
    plan: &[PackageRow],
    o: &ImageOptions,
) -> Result<ImageReport, InstallError> {
    let clamp = o
        .source_date_epoch
        .unwrap_or_else(|| plan.iter().map(|p| p.published_at).max().unwrap_or(0));
    let parent = o
        .output
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let staging = tempfile::Builder::new()
        .prefix(".repofs-image-")
        .tempdir_in(parent)
        .map_err(|e| InstallError::io(parent, e))?;
    let root = staging.path().join("root");
    let report = super::install(
        cat,
        plan,
        &Options {
            root: root.clone(),
            mount: o.mount.clone(),
            overwrite: false,
            script_timeout: o.script_timeout,
            run_scripts: true,
            progress: o.progress,
            installed_at: Some(clamp),
        },
    )?;
    let nodes = walk(&root)?;
    let tmp = staging.path().join("out");
    match o.format {
        Format::Iso => iso(&root, &nodes, clamp, &tmp)?,
        f => {
            let file = BufWriter::with_capacity(
                1 << 20,
                File::create(&tmp).map_err(|e| InstallError::io(&tmp, e))?,
            );
            let io = |e| InstallError::io(&tmp, e);
            match f {
                Format::Tar => pack_tar(&root, &nodes, clamp, file)
                    .and_then(|mut w| w.flush())
                    .map_err(io)?,
                Format::TarGz => {
                    let gz = ParGz::new(file);
                    pack_tar(&root, &nodes, clamp, gz)
                        .and_then(|w| w.finish())
                        .and_then(|mut w| w.flush())
                        .map_err(io)?
                }
                _ => {
                    let z = zstd::Encoder::new(file, 3).map_err(io)?;
                    pack_tar(&root, &nodes, clamp, z)
                        .and_then(|w| w.finish())
                        .and_then(|mut w| w.flush())
                        .map_err(io)?
                }
            }
        }
    }
    fs::rename(&tmp, &o.output).map_err(|e| InstallError::io(&o.output, e))?;
    Ok(ImageReport {
        output: o.output.clone(),
        entries: nodes.len(),
        clamp,
        install: report,
    })
}

/// Everything in the staging root except the database, sorted by path; directories that
/// hold nothing but the database are left out.
fn walk(root: &Path) -> Result<BTreeMap<PathBuf, Node>, InstallError> {
    let mut out = BTreeMap::new();
    let db = Path::new(DB_DIR);
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let dir = root.join(&rel);
        for e in fs::read_dir(&dir).map_err(|e| InstallError::io(&dir, e))? {
            let e = e.map_err(|e| InstallError::io(&dir, e))?;
            let path = rel.join(e.file_name());
            if path == db {
                continue;
            }
            let full = root.join(&path);
            let m = fs::symlink_metadata(&full).map_err(|e| InstallError::io(&full, e))?;
            let ft = m.file_type();
            let kind = if ft.is_dir() {
                stack.push(path.clone());
                'd'
            } else if ft.is_symlink() {
                'l'
            } else if ft.is_file() {
                'f'
            } else {
                continue; // sockets or fifos a script left: not image content
            };
            let target = if kind == 'l' {
                Some(fs::read_link(&full).map_err(|e| InstallError::io(&full, e))?)
            } else {
                None
            };
            out.insert(
                path,
                Node {
                    kind,
                    mode: m.mode() & 0o7777,
                    mtime: m.mtime(),
                    size: m.len(),
                    target,
                },
            );
        }
    }
    // Prune the database's parents (var/lib/repofs, var/lib, var) when nothing else lives
    // in them.
    let mut p = db.parent();
    while let Some(d) = p.filter(|d| !d.as_os_str().is_empty()) {
        let has_children = out
            .range(d.to_path_buf()..)
            .nth(1)
            .is_some_and(|(k, _)| k.starts_with(d));
        if out.get(d).is_some_and(|n| n.kind == 'd') && !has_children {
            out.remove(d);
        }
        p = d.parent();
    }
    Ok(out)
}

fn pack_tar<W: Write>(
    root: &Path,
    nodes: &BTreeMap<PathBuf, Node>,
    clamp: i64,
    w: W,
) -> std::io::Result<W> {
    let mut b = tar::Builder::new(w);
    for (path, n) in nodes {
        let mut h = tar::Header::new_gnu();
        h.set_mode(n.mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(n.mtime.clamp(0, clamp) as u64);
        match n.kind {
            'd' => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_size(0);
                b.append_data(&mut h, path, std::io::empty())?;
            }
            'l' => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_size(0);
                let t = n.target.clone().unwrap_or_default();
                b.append_link(&mut h, path, t)?;
            }
            _ => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(n.size);
                let f = File::open(root.join(path))?;
                b.append_data(&mut h, path, f)?;
            }
        }
    }
    b.into_inner()
}

/// Clamps the staging tree's mtimes in place (children before their directories), drops
/// the database, and lets xorriso pack it with fixed dates.
fn iso(
    root: &Path,
    nodes: &BTreeMap<PathBuf, Node>,
    clamp: i64,
    out: &Path,
) -> Result<(), InstallError> {
    let db = root.join(DB_DIR);
    fs::remove_dir_all(&db).map_err(|e| InstallError::io(&db, e))?;
    for d in ["var/lib/repofs", "var/lib", "var"] {
        if !nodes.contains_key(Path::new(d)) {
            let _ = fs::remove_dir(root.join(d));
        }
    }
    // The root itself last: it becomes the image's root directory, with its time.
    let all = nodes
        .iter()
        .rev()
        .map(|(p, n)| (root.join(p), n.mtime))
        .chain([(root.to_path_buf(), clamp)]);
    for (path, mtime) in all {
        let t = libc::timespec {
            tv_sec: mtime.clamp(0, clamp) as libc::time_t,
            tv_nsec: 0,
        };
        let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
            continue;
        };
        // SAFETY: valid C string; touches only that file's times.
        unsafe {
            libc::utimensat(
                libc::AT_FDCWD,
                c.as_ptr(),
                [t, t].as_ptr(),
                libc::AT_SYMLINK_NOFOLLOW,
            )
        };
    }
    let date = humantime::format_rfc3339_seconds(
        std::time::UNIX_EPOCH + Duration::from_secs(clamp.max(0) as u64),
    )
    .to_string();
    // 2026-11-29T12:00:00Z -> 2026112912000000
    let stamp: String = date
        .chars()
        .filter(char::is_ascii_digit)
        .collect::<String>()
        + "00";
    let res = Command::new("xorriso")
        .env("SOURCE_DATE_EPOCH", clamp.to_string())
        .args([
            "-as",
            "mkisofs",
            "-quiet",
            "-r",
            "-J",
            "-joliet-long",
            "-V",
            "REPOFS",
        ])
        .arg(format!("--modification-date={stamp}"))
        .arg("-o")
        .arg(out)
        .arg(root)
        .output()
        .map_err(|e| {
            InstallError::Image(format!("running xorriso (Debian package xorriso): {e}"))
        })?;
    if !res.status.success() {
        return Err(InstallError::Image(format!(
            "xorriso failed ({}): {}",
            res.status,
            String::from_utf8_lossy(&res.stderr).trim()
        )));
    }
    Ok(())
}

/// A gzip stream compressed on every core, as pigz and bgzip do: the input is cut into
/// fixed 1 MiB chunks, each becomes a complete gzip member (mtime 0, no name), and the
/// members are written in order. A concatenation of members is one valid gzip file (RFC
/// 1952, 2.2), and the bytes depend only on the input, never on the number of threads.
struct ParGz<W: Write> {
    out: W,
    /// Full chunks waiting for a batch, then the one being filled (never empty).
    chunks: Vec<Vec<u8>>,
    batch: usize,
    members: u64,
}

const GZ_CHUNK: usize = 1 << 20;

impl<W: Write> ParGz<W> {
    fn new(out: W) -> Self {
        let batch = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(1, 8));
        ParGz {
            out,
            chunks: vec![Vec::with_capacity(GZ_CHUNK)],
            batch,
            members: 0,
        }
    }

    /// Compresses `chunks` in parallel and writes the members in order.
    fn emit(&mut self, chunks: &[Vec<u8>]) -> io::Result<()> {
        let members: Vec<io::Result<Vec<u8>>> = std::thread::scope(|sc| {
            let jobs: Vec<_> = chunks
                .iter()
                .map(|c| sc.spawn(move || gzip_member(c)))
                .collect();
            jobs.into_iter()
                .map(|j| {
                    j.join()
                        .unwrap_or_else(|_| Err(io::Error::other("gzip worker panicked")))
                })
                .collect()
        });
        for m in members {
            self.out.write_all(&m?)?;
            self.members += 1;
        }
        Ok(())
    }

    fn finish(mut self) -> io::Result<W> {
        let mut chunks = std::mem::take(&mut self.chunks);
        chunks.retain(|c| !c.is_empty());
        if chunks.is_empty() && self.members == 0 {
            chunks.push(Vec::new()); // an empty input is still a gzip file
        }
        self.emit(&chunks)?;
        Ok(self.out)
    }
}

/// One complete gzip member of `data` at level 6 (gzip's default). libdeflate compresses a
/// whole buffer at once, which is what a member is, about twice as fast as zlib at the same
/// level; its header is fixed (mtime 0, no name), so the bytes depend only on the input.
fn gzip_member(data: &[u8]) -> io::Result<Vec<u8>> {
    let mut c = libdeflater::Compressor::new(libdeflater::CompressionLvl::default());
    let mut out = vec![0u8; c.gzip_compress_bound(data.len())];
    let n = c
        .gzip_compress(data, &mut out)
        .map_err(|e| io::Error::other(format!("gzip: {e:?}")))?;
    out.truncate(n);
    Ok(out)
}

impl<W: Write> Write for ParGz<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let Some(cur) = self.chunks.last_mut() else {
            return Err(io::Error::other("gzip stream already finished"));
        };
        let n = buf.len().min(GZ_CHUNK - cur.len());
        cur.extend_from_slice(&buf[..n]);
        if cur.len() == GZ_CHUNK {
            if self.chunks.len() == self.batch {
                let full = std::mem::take(&mut self.chunks);
                self.emit(&full)?;
            }
            self.chunks.push(Vec::with_capacity(GZ_CHUNK));
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        // Members are only cut at chunk boundaries (the bytes must not depend on flushes).
        self.out.flush()
    }
}

#[cfg(test)]
mod par_gz_tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn members_decode_to_the_input_whatever_the_batch() {
        for len in [0, 1, GZ_CHUNK - 1, GZ_CHUNK, GZ_CHUNK + 1, 5 * GZ_CHUNK + 7] {
            let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
            let mut outs = Vec::new();
            for batch in [1, 2, 5] {
                let mut gz = ParGz::new(Vec::new());
                gz.batch = batch;
                // Odd-sized writes: members are cut by input position, not by write calls.
                for part in data.chunks(100_003) {
                    gz.write_all(part).unwrap();
                }
                let bytes = gz.finish().unwrap();
                let mut back = Vec::new();
                flate2::read::MultiGzDecoder::new(&bytes[..])
                    .read_to_end(&mut back)
                    .unwrap();
                assert_eq!(back, data, "len {len} batch {batch}");
                outs.push(bytes);
            }
            assert!(outs.windows(2).all(|w| w[0] == w[1]), "len {len}");
        }
    }
}
