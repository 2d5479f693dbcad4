//! Walking a tar stream once, at publish time (see `archive` for what is checked). The
//! inflated stream is capped as it is read (`LimitReader`: in total, and per member for
//! headers); each member's headers, pax records and sparse maps are read and its data hashed.
//! A gzip payload is indexed for random access on the way.

use std::cell::Cell;
use std::io::{self, Read};
use std::rc::Rc;

use sha2::{Digest, Sha256};

use super::{
    check_link, corrupt, entry_path, fields, gzindex, hash_entry, sparse, ArchiveError,
    Compression, Entry, EntryKind, EntryList, Layout, MetaFiles, Result, SEEK_SPACING,
};
use crate::config::Limits;

/// Walks the payload's tar stream; a gzip one is indexed on the way (one inflation serves
/// both the entry list and the seek points).
pub(super) fn walk_payload<R: Read>(
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

/// Walks a tar stream; see the `archive` doc for what is checked. `keep_entries` is false for
/// a .deb's control.tar, whose members are read only for metadata.
pub(super) fn walk_tar<R: Read>(
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
    let mut walk = Walk {
        limits,
        meta,
        keep_entries,
        phase,
        entries: EntryList::default(),
        total: 0,
        count: 0,
    };
    for item in ar.entries().map_err(corrupt)? {
        let mut e = item.map_err(corrupt)?;
        // Everything the tar crate read since the last member was headers and extensions.
        walk.phase.start_data();
        if let Some(entry) = walk.member(&mut e)? {
            walk.entries.add(entry);
        }
    }
    // Read what follows the end marker (padding, normally) under the same budget, so the
    // decompressor reaches its stream's end and checks its checksum (zstd, xz; gzip's CRC too).
    walk.phase.start_data();
    drain(&mut ar.into_inner())?;
    Ok((walk.entries.entries, walk.total))
}

/// One walk over a tar stream: what it checks against, and what it found so far.
struct Walk<'a> {
    limits: &'a Limits,
    meta: &'a mut MetaFiles,
    keep_entries: bool,
    phase: Rc<Phase>,
    entries: EntryList,
    /// Unpacked bytes so far.
    total: u64,
    /// Members so far.
    count: u64,
}

impl Walk<'_> {
    /// Reads one member, headers and data. `None`: nothing to record (the archive's root, a
    /// header describing the archive, or any member of a walk that keeps no entries).
    fn member<R: Read>(&mut self, e: &mut tar::Entry<'_, R>) -> Result<Option<Entry>> {
        self.count += 1;
        if self.count > self.limits.max_entries {
            return Err(ArchiveError::TooLarge(format!(
                "more than {} entries",
                self.limits.max_entries
            )));
        }
        let pax = pax_records(e)?;
        let pax_sparse = sparse::PaxSparse::from_records(&pax).map_err(ArchiveError::Corrupt)?;
        let name = member_name(e, pax_sparse.as_ref())?;
        let Some(path) = entry_path(&name)? else {
            return Ok(None);
        };
        let header = e.header().clone();
        let Some(kind) = entry_kind(&header, &name, &path)? else {
            drain(e)?;
            self.phase.start_headers();
            return Ok(None);
        };
        let size = match (kind, &pax_sparse) {
            (EntryKind::File, Some(p)) => p.real_size.unwrap_or(e.size()),
            (EntryKind::File, None) => e.size(),
            _ => 0,
        };
        self.total = self.total.saturating_add(size);
        if self.total > self.limits.max_unpacked_size {
            return Err(ArchiveError::TooLarge(format!(
                "unpacked size exceeds {} bytes",
                self.limits.max_unpacked_size
            )));
        }
        let link_target = link_target(e, &path, kind, &self.entries)?;
        let owner = fields::Owner::read(
            &header,
            pax.iter().map(|(k, v)| (k.as_slice(), v.as_slice())),
        );
        let (data_offset, sha256, layout) = self.read_data(e, &path, kind, pax_sparse, size)?;
        self.phase.start_headers();
        if !self.keep_entries {
            return Ok(None);
        }
        Ok(Some(Entry {
            path,
            kind,
            mode: owner.mode,
            size,
            mtime: owner.mtime,
            uid: owner.uid,
            gid: owner.gid,
            link_target,
            data_offset,
            sha256,
            layout,
        }))
    }

    /// Reads a member's data: a file is hashed (and kept, if it is a metadata file) and a
    /// sparse one laid out; other members' data is drained. Returns where the data starts in
    /// the stream, its SHA-256 and its layout.
    fn read_data<R: Read>(
        &mut self,
        e: &mut tar::Entry<'_, R>,
        path: &str,
        kind: EntryKind,
        pax_sparse: Option<sparse::PaxSparse>,
        size: u64,
    ) -> Result<(u64, Option<String>, Layout)> {
        let data_offset = e.raw_file_position();
        match (kind, pax_sparse) {
            (EntryKind::File, Some(p)) => {
                let (sha, layout) = hash_pax_sparse(e, path, p, data_offset, size)?;
                Ok((data_offset, Some(sha), layout))
            }
            (EntryKind::File, None) => {
                let (data_offset, layout) = if e.header().entry_type() == tar::EntryType::GNUSparse
                {
                    gnu_sparse_layout(e, &self.phase, path, size)?
                } else {
                    (data_offset, Layout::Contiguous)
                };
                let keep = self.meta.slot(path, !self.keep_entries);
                let sha = hash_entry(e, path, keep, self.limits.max_metadata_size)?;
                Ok((data_offset, Some(sha), layout))
            }
            _ => {
                drain(e)?; // data of non-files is ignored, but read under the data budget
                Ok((data_offset, None, Layout::Contiguous))
            }
        }
    }
}

/// A member's pax records. A pax global header's own records would be read into memory whole
/// (whatever their size); it describes no member and is drained instead.
fn pax_records<R: Read>(e: &mut tar::Entry<'_, R>) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    if e.header().entry_type().is_pax_global_extensions() {
        return Ok(Vec::new());
    }
    match e.pax_extensions().map_err(corrupt)? {
        Some(records) => records
            .map(|r| r.map(|r| (r.key_bytes().to_vec(), r.value_bytes().to_vec())))
            .collect::<io::Result<_>>()
            .map_err(corrupt),
        None => Ok(Vec::new()),
    }
}

/// The member's name as written: a pax sparse member's real name, else the header's.
fn member_name<R: Read>(
    e: &tar::Entry<'_, R>,
    pax_sparse: Option<&sparse::PaxSparse>,
) -> Result<String> {
    let raw = match pax_sparse.and_then(|p| p.name.clone()) {
        Some(name) => name,
        None => e.path_bytes().into_owned(),
    };
    Ok(std::str::from_utf8(&raw)
        .map_err(|_| ArchiveError::Corrupt("entry name is not UTF-8".into()))?
        .to_string())
}

/// What a member is; `None` for headers that describe the archive rather than a member.
/// Device nodes and FIFOs are refused.
fn entry_kind(header: &tar::Header, name: &str, path: &str) -> Result<Option<EntryKind>> {
    Ok(Some(match header.entry_type() {
        // Before ustar, a directory was a regular member whose name ends in '/'.
        tar::EntryType::Regular if name.ends_with('/') => EntryKind::Dir,
        tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
            EntryKind::File
        }
        // A pax global header (git archive writes one): archive-wide comments, no member.
        // A GNU volume label (`tar --label`) names the archive, not a member.
        t if t == tar::EntryType::XGlobalHeader || t.as_byte() == b'V' => return Ok(None),
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
    }))
}

/// A link's checked target (see `check_link`); `None` for members that are not links.
fn link_target<R: Read>(
    e: &tar::Entry<'_, R>,
    path: &str,
    kind: EntryKind,
    seen: &EntryList,
) -> Result<Option<String>> {
    if !matches!(kind, EntryKind::Symlink | EntryKind::Hardlink) {
        return Ok(None);
    }
    let t = e
        .link_name_bytes()
        .ok_or_else(|| ArchiveError::Corrupt(format!("{path}: link without target")))?;
    let t = std::str::from_utf8(&t)
        .map_err(|_| ArchiveError::Corrupt(format!("{path}: link target is not UTF-8")))?
        .to_string();
    Ok(Some(check_link(path, &t, kind, seen)?))
}

/// A pax sparse member: its map (in the records, or heading the data), its runs laid out
/// from `data_offset`, and its hash as it unpacks.
fn hash_pax_sparse<R: Read>(
    e: &mut tar::Entry<'_, R>,
    path: &str,
    p: sparse::PaxSparse,
    data_offset: u64,
    size: u64,
) -> Result<(String, Layout)> {
    let stored = e.size();
    let sparse_err = |m: String| ArchiveError::Corrupt(format!("{path}: {m}"));
    let (pairs, skip) = if p.map_in_data {
        sparse::read_data_map(e, stored).map_err(sparse_err)?
    } else {
        (p.pairs, 0)
    };
    let segments = sparse::lay_out(&pairs, data_offset + skip, size).map_err(sparse_err)?;
    if segments.iter().map(|s| s.len).sum::<u64>() + skip > stored {
        return Err(sparse_err("sparse runs exceed the member's data".into()));
    }
    let sha = hash_sparse(e, &segments, size)?;
    Ok((sha, Layout::Sparse(segments)))
}

/// An old GNU sparse member: where its data starts and its runs. The extension blocks are
/// everything read after the header; the `tar` crate's file position does not count them, so
/// the data starts after.
fn gnu_sparse_layout<R: Read>(
    e: &tar::Entry<'_, R>,
    phase: &Phase,
    path: &str,
    size: u64,
) -> Result<(u64, Layout)> {
    let sparse_err = |m: String| ArchiveError::Corrupt(format!("{path}: {m}"));
    let after_header = e.raw_header_position() + 512;
    let ext = phase.header_bytes_between(after_header, phase.pos.get());
    let data_offset = after_header + ext.len() as u64;
    let pairs = sparse::gnu_pairs(e.header().as_bytes(), &ext).map_err(sparse_err)?;
    let layout = Layout::Sparse(sparse::lay_out(&pairs, data_offset, size).map_err(sparse_err)?);
    Ok((data_offset, layout))
}

/// Hashes a pax sparse member as it unpacks: its runs in order, zeros between them.
fn hash_sparse(r: &mut impl Read, segments: &[sparse::Segment], size: u64) -> Result<String> {
    let mut sha = Sha256::new();
    let zeros = vec![0u8; 64 << 10];
    let mut buf = vec![0u8; 256 << 10];
    let mut pos = 0u64;
    let hash_zeros = |sha: &mut Sha256, mut n: u64| {
        while n > 0 {
            let k = n.min(zeros.len() as u64) as usize;
            sha.update(&zeros[..k]);
            n -= k as u64;
        }
    };
    for s in segments {
        hash_zeros(&mut sha, s.offset - pos);
        let mut left = s.len;
        while left > 0 {
            let k = left.min(buf.len() as u64) as usize;
            r.read_exact(&mut buf[..k]).map_err(corrupt)?;
            sha.update(&buf[..k]);
            left -= k as u64;
        }
        pos = s.offset + s.len;
    }
    hash_zeros(&mut sha, size - pos);
    drain(r)?;
    Ok(hex::encode(sha.finalize()))
}

fn drain(r: &mut impl Read) -> Result<()> {
    io::copy(r, &mut io::sink()).map(drop).map_err(corrupt)
}

#[derive(Debug, thiserror::Error)]
pub(super) enum StreamLimit {
    #[error("archive inflates past {0} bytes")]
    Total(u64),
    #[error("archive member headers exceed {0} bytes")]
    Headers(u64),
}

/// Most bytes of headers, long names and pax records allowed before one member. The tar crate
/// reads extension records into memory whole, so this also bounds its memory use.
const MAX_HEADER_BYTES: u64 = 1 << 20;

/// Whether the tar crate is reading member headers (between the members it hands us) or we
/// are reading member data, and the header bytes read since the last member (kept: old GNU
/// sparse maps continue in blocks the `tar` crate reads but does not hand out).
#[derive(Default)]
struct Phase {
    in_data: Cell<bool>,
    /// Stream offset of what has been read so far, and of `headers[0]`.
    pos: Cell<u64>,
    headers_at: Cell<u64>,
    headers: std::cell::RefCell<Vec<u8>>,
}

impl Phase {
    fn start_data(&self) {
        self.in_data.set(true);
    }
    fn start_headers(&self) {
        self.in_data.set(false);
        self.headers.borrow_mut().clear();
        self.headers_at.set(self.pos.get());
    }
    /// Header bytes at stream offsets `start..end` (empty if they were not kept).
    fn header_bytes_between(&self, start: u64, end: u64) -> Vec<u8> {
        let at = self.headers_at.get();
        let h = self.headers.borrow();
        match (start.checked_sub(at), end.checked_sub(at)) {
            (Some(a), Some(b)) if a <= b && b <= h.len() as u64 => {
                h[a as usize..b as usize].to_vec()
            }
            _ => Vec::new(),
        }
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
        self.phase.pos.set(self.phase.pos.get() + n);
        if !self.phase.in_data.get() {
            let mut h = self.phase.headers.borrow_mut();
            if h.len() as u64 + n > MAX_HEADER_BYTES {
                return Err(io::Error::other(StreamLimit::Headers(MAX_HEADER_BYTES)));
            }
            h.extend_from_slice(&buf[..n as usize]);
        }
        Ok(n as usize)
    }
}
