//! The properties the fuzz targets check, one function per target, each taking the raw input.
//!
//! Shared by `fuzz/fuzz_targets/*` (libFuzzer) and by `tests/fuzz_regressions.rs`, which
//! includes this file with `#[path]` and replays every kept crash input in `cargo test`.
//! A function panics when a property fails; a parser error is a correct answer, never a
//! failure. Only `repofs`, `flate2`, `sha2` and `tempfile` are used, all main-crate
//! dependencies, so the inclusion compiles there too.

use std::cmp::Ordering;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::sync::Arc;

use repofs::archive::gzindex::{GzCursor, IndexingReader};
use repofs::archive::{self, meta, Compression, EntryKind, Layout};
use repofs::config::Limits;
use repofs::version::{self, Scheme};
use sha2::{Digest, Sha256};

/// Directive bodies are UTF-8 text (the verifier's output); `peek` sees raw bytes.
pub fn directive(data: &[u8]) {
    let _ = repofs::ingest::directive::peek_has_filename(data);
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(d) = repofs::ingest::directive::parse(text) {
        // What the parser promises its callers: every path already checked.
        assert!(repofs::paths::check_relative(&d.directory).is_ok(), "{d:?}");
        if let Some(f) = &d.filename {
            assert!(repofs::paths::check_filename(f).is_ok(), "{d:?}");
        }
        assert!(d.filename.is_some() || !d.actions.is_empty(), "{d:?}");
    }
}

fn text(data: &[u8]) -> Option<&str> {
    std::str::from_utf8(data).ok()
}

pub fn meta_pkginfo(data: &[u8]) {
    if let Some(t) = text(data) {
        let _ = meta::from_pkginfo(t);
    }
}

pub fn meta_tpm(data: &[u8]) {
    if let Some(t) = text(data) {
        let _ = meta::from_tpm(t, "tool-1.0.tar.gz");
    }
}

pub fn meta_distpac(data: &[u8]) {
    if let Some(t) = text(data) {
        let _ = meta::from_distpac(t);
    }
}

pub fn meta_deb_control(data: &[u8]) {
    if let Some(t) = text(data) {
        let _ = meta::from_deb_control(t);
    }
}

pub fn meta_cargo(data: &[u8]) {
    if let Some(t) = text(data) {
        let _ = meta::from_cargo_toml(t);
    }
}

pub fn meta_npm(data: &[u8]) {
    if let Some(t) = text(data) {
        let _ = meta::from_package_json(t);
    }
}

pub fn meta_python(data: &[u8]) {
    if let Some(t) = text(data) {
        let _ = meta::from_python_metadata(t, "METADATA");
    }
}

pub fn meta_filename(data: &[u8]) {
    if let Some(t) = text(data) {
        let _ = meta::from_filename(t);
    }
}

/// Limits small enough that one input is bounded work, as production limits bound a real one.
pub fn fuzz_limits() -> Limits {
    Limits {
        max_unpacked_size: 32 << 20,
        max_entries: 4096,
        max_metadata_size: 64 << 10,
        ..Limits::default()
    }
}

/// `archive::inspect` on `data` as the format its magic bytes say, through a temp file; the
/// file is returned too, for reading the payload back.
pub fn inspect_bytes(
    data: &[u8],
) -> (
    Result<Option<archive::Inspection>, archive::ArchiveError>,
    File,
) {
    let name = match data {
        [0x1f, 0x8b, ..] => "fuzz-1.0.tar.gz",
        [0x28, 0xb5, 0x2f, 0xfd, ..] => "fuzz-1.0.tar.zst",
        [0xfd, b'7', b'z', b'X', b'Z', 0, ..] => "fuzz-1.0.tar.xz",
        [b'!', b'<', b'a', b'r', b'c', b'h', b'>', b'\n', ..] => "fuzz_1.0_all.deb",
        [b'P', b'K', ..] => "fuzz-1.0-py3-none-any.whl",
        [b'B', b'Z', b'h', ..] => "fuzz-1.0.tar.bz2",
        [b'L', b'Z', b'I', b'P', ..] => "fuzz-1.0.tar.lz",
        _ => "fuzz-1.0.tar",
    };
    let mut f = tempfile::tempfile_in(tmp_dir()).expect("temp file");
    f.write_all(data).expect("write temp file");
    let path = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&f));
    let r = archive::inspect(std::path::Path::new(&path), name, &fuzz_limits());
    (r, f)
}

/// `archive::inspect` on the input (see `inspect_bytes`). Bad content must be a rejection,
/// never `ArchiveError::Io` (retried as internal, so the upload would wait forever). Besides
/// that and not panicking, what the catalog records must hold: every file entry's bytes sit at
/// `data_offset..+size` of the decompressed payload and hash to its `sha256` (the mount reads
/// exactly there), and for gzip the same bytes come back through the recorded seek points.
pub fn archive_inspect(data: &[u8]) {
    let limits = fuzz_limits();
    let (r, mut f) = inspect_bytes(data);
    let insp = match r {
        Ok(Some(insp)) => insp,
        Ok(None) => panic!("not taken for an archive"),
        // Reading a temp file cannot fail; only the content can be bad.
        Err(archive::ArchiveError::Io(e)) => panic!("bad content reported as I/O error: {e}"),
        Err(_) => return,
    };
    assert!(insp.unpacked_size <= limits.max_unpacked_size);
    assert!(insp.entries.len() as u64 <= limits.max_entries);
    let p = insp.payload;
    assert!(p
        .offset
        .checked_add(p.size)
        .is_some_and(|e| e <= data.len() as u64));
    let mut payload = Vec::new();
    f.seek(SeekFrom::Start(p.offset)).expect("seek");
    p.compression
        .reader((&f).take(p.size))
        .expect("payload decoder")
        .take(limits.max_unpacked_size * 2)
        .read_to_end(&mut payload)
        .expect("inspect accepted a payload that does not decompress");
    let mut gz = (p.compression == Compression::Gzip).then(|| {
        let file = Arc::new(f.try_clone().expect("dup"));
        GzCursor::new(file, p.offset, insp.seek_points.clone().into()).with_len(p.size)
    });
    for e in &insp.entries {
        assert!(
            repofs::paths::normalize_entry(&e.path) == Ok(Some(e.path.clone())),
            "{e:?}"
        );
        if e.kind == EntryKind::Symlink {
            let t = e.link_target.as_deref().expect("symlink target");
            let dir = repofs::paths::parent(&e.path);
            assert!(repofs::paths::resolve_link(dir, t).is_some(), "{e:?}");
        }
        let Some(want) = &e.sha256 else {
            continue;
        };
        // The file as an unpacker writes it, from the runs the layout names.
        let expand = |read: &mut dyn FnMut(u64, &mut [u8])| -> Vec<u8> {
            let mut out = vec![0u8; e.size as usize];
            match &e.layout {
                Layout::Contiguous => read(e.data_offset, &mut out),
                Layout::Sparse(runs) => {
                    for r in runs {
                        let end = r.offset.checked_add(r.len).expect("run end");
                        assert!(end <= e.size, "{e:?}: sparse run past the file");
                        read(r.at, &mut out[r.offset as usize..end as usize]);
                    }
                }
                // A zip member: raw deflate of `csize` bytes at `data_offset` in the file
                // (the "payload" of a zip is the file itself).
                Layout::Deflated { csize } => {
                    let mut raw = vec![0u8; e.size as usize + 1];
                    let start = usize::try_from(e.data_offset).expect("offset");
                    let end = start.checked_add(*csize as usize).expect("end");
                    assert!(end <= payload.len(), "{e:?}: deflated member past the file");
                    let mut d = flate2::read::DeflateDecoder::new(&payload[start..end]);
                    let n = read_full(&mut d, &mut raw);
                    assert_eq!(n as u64, e.size, "{e:?}: member inflates to another size");
                    out.copy_from_slice(&raw[..n]);
                }
            }
            out
        };
        let from_payload = expand(&mut |at, buf| {
            let start = usize::try_from(at).expect("offset");
            let end = start.checked_add(buf.len()).expect("end");
            assert!(
                end <= payload.len(),
                "{e:?} ends past the payload ({})",
                payload.len()
            );
            buf.copy_from_slice(&payload[start..end]);
        });
        let got = hex(&Sha256::digest(&from_payload));
        assert_eq!(
            &got, want,
            "{e:?}: bytes where the layout says differ from the hashed content"
        );
        if let Some(c) = gz.as_mut() {
            let through_points = expand(&mut |at, buf| {
                let mut n = 0;
                while n < buf.len() {
                    let k = c.read_at(at + n as u64, &mut buf[n..]).expect("gz read");
                    assert!(k > 0, "{e:?}: seek-point read ended early");
                    n += k;
                }
            });
            assert!(
                through_points == from_payload,
                "{e:?}: seek-point read differs"
            );
        }
    }
}

/// Differential check of the gzip indexer. Input: two bytes of parameters, then the stream.
/// Indexing must accept exactly what flate2's `MultiGzDecoder` accepts and yield the same
/// bytes; then reads at offsets taken from the input, through the recorded seek points,
/// must equal that plain inflate.
pub fn gzindex(data: &[u8]) {
    let [a, b, gz @ ..] = data else {
        return;
    };
    let spacing = 1 + u64::from(u16::from_le_bytes([*a, *b]) & 0x3fff) * 8;
    let mut plain = Vec::new();
    let reference = flate2::read::MultiGzDecoder::new(gz)
        .take(64 << 20)
        .read_to_end(&mut plain)
        .map(|_| plain);
    let mut r = IndexingReader::new(gz, spacing);
    // Read part of it, as the tar walk does, and let `finish` inflate the rest.
    let mut out = vec![0; usize::from(*a) * 97];
    let ours = read_some(&mut r, &mut out).and_then(|n| {
        out.truncate(n);
        r.read_to_end(&mut out)?;
        r.finish()
    });
    let (points, total) = match (ours, reference) {
        (Ok((points, total)), Ok(plain)) => {
            assert!(out == plain, "indexer output differs from flate2");
            assert_eq!(total, out.len() as u64);
            (points, total)
        }
        (Err(_), Err(_)) => return,
        (Ok(_), Err(e)) => panic!("indexer accepted what flate2 refuses: {e}"),
        (Err(e), Ok(_)) => panic!("indexer refused what flate2 accepts: {e}"),
    };
    let mut last = 0;
    for p in &points {
        assert!(
            p.out >= last + spacing && p.out < total.max(1) + 1 && p.bits < 8,
            "{p:?}"
        );
        assert_eq!(p.window.len() as u64, p.out.min(32 << 10), "{p:?}");
        last = p.out;
    }
    // The stream sits inside a larger file, as a .deb's data member does.
    let mut f = tempfile::tempfile_in(tmp_dir()).expect("temp file");
    let base = u64::from(*b % 7);
    f.write_all(&b"!<arch>\n"[..base as usize]).expect("write");
    f.write_all(gz).expect("write");
    f.write_all(b"trailing member").expect("write");
    let mut c = GzCursor::new(Arc::new(f), base, points.into()).with_len(gz.len() as u64);
    let mut s = u64::from_le_bytes([*a, *b, 1, 2, 3, 4, 5, 6]) | 1;
    for i in 0..24u64 {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        let off = match i {
            0 => 0,
            1 => total,
            2 => total.saturating_sub(1),
            _ => s % (total + 2),
        };
        let len = [1usize, 7, 512, 40_000][(s >> 32) as usize % 4];
        let mut buf = vec![0; len];
        let n = c
            .read_at(off, &mut buf)
            .expect("cursor read of an accepted stream");
        let start = (off as usize).min(out.len());
        let end = (start + len).min(out.len());
        assert_eq!(n, end - start, "short read at {off}");
        assert!(buf[..n] == out[start..end], "cursor bytes differ at {off}");
    }
}

fn read_some(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// `version::compare` must be a total preorder under every scheme: reflexive, antisymmetric,
/// transitive. Input: up to three versions separated by newlines.
pub fn version_order(data: &[u8]) {
    let s = String::from_utf8_lossy(data);
    let mut it = s.split('\n');
    let v: Vec<&str> = (0..3).map(|_| it.next().unwrap_or("")).collect();
    for scheme in [
        Scheme::Debian,
        Scheme::Alpm,
        Scheme::SemVer,
        Scheme::Generic,
    ] {
        let cmp = |x: &str, y: &str| version::compare(scheme, x, y);
        for x in &v {
            assert_eq!(
                cmp(x, x),
                Ordering::Equal,
                "{scheme:?}: {x:?} not equal to itself"
            );
        }
        for (i, j, k) in [
            (0, 1, 2),
            (0, 2, 1),
            (1, 0, 2),
            (1, 2, 0),
            (2, 0, 1),
            (2, 1, 0),
        ] {
            let (x, y, z) = (v[i], v[j], v[k]);
            let (xy, yz, xz) = (cmp(x, y), cmp(y, z), cmp(x, z));
            assert_eq!(
                cmp(y, x),
                xy.reverse(),
                "{scheme:?}: {x:?} vs {y:?} not antisymmetric"
            );
            let want = match (xy, yz) {
                (o, Ordering::Equal) => Some(o),
                (Ordering::Equal, o) => Some(o),
                (o1, o2) if o1 == o2 => Some(o1),
                _ => None,
            };
            if let Some(w) = want {
                assert_eq!(
                    xz, w,
                    "{scheme:?}: {x:?} {xy:?} {y:?} {yz:?} {z:?} but {xz:?}"
                );
            }
        }
    }
}

fn tmp_dir() -> &'static std::path::Path {
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir() {
        shm
    } else {
        std::path::Path::new("/tmp")
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A target's check by name, for the regression test's table of directories.
pub fn check_for(target: &str) -> Option<fn(&[u8])> {
    Some(match target {
        "directive" => directive,
        "meta_pkginfo" => meta_pkginfo,
        "meta_tpm" => meta_tpm,
        "meta_distpac" => meta_distpac,
        "meta_deb_control" => meta_deb_control,
        "meta_filename" => meta_filename,
        "meta_cargo" => meta_cargo,
        "meta_npm" => meta_npm,
        "meta_python" => meta_python,
        "archive_inspect" => archive_inspect,
        "gzindex" => gzindex,
        "version_order" => version_order,
        _ => return None,
    })
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> usize {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) => panic!("a member inspect accepted does not inflate: {e}"),
        }
    }
    n
}
