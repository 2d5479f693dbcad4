//! Sparse tar members: where each run of data sits, so pkgs/ can read them in place.
//!
//! Two families exist. Old GNU (`tar --format=gnu --sparse`, type `S`): the map is in the
//! header and in extension blocks after it; the `tar` crate expands these members when read,
//! but keeps the map to itself, so we read it from the header bytes. Pax (GNU tar's default
//! for `--format=pax --sparse`): a regular member named `GNUSparseFile.N/…` with
//! `GNU.sparse.*` records; version 0.x puts the map in the records, 1.0 at the start of the
//! data. The `tar` crate knows nothing of these, so we expand them ourselves.
//! In both, the data runs are stored back to back; everything between them reads as zeros.
//! Maps are layout, so they are strict: sorted, not overlapping, inside the file.

use std::io::Read;

use serde::{Deserialize, Serialize};

use super::fields;

/// One run of data: `len` bytes at `offset` in the file, stored at `at` in the tar stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    pub offset: u64,
    pub len: u64,
    pub at: u64,
}

/// Most runs one member may have: the map is held in memory and in the catalog.
pub const MAX_SEGMENTS: usize = 1 << 16;

/// `(offset, len)` pairs laid out back to back from `data_at`, checked against `size`.
pub fn lay_out(pairs: &[(u64, u64)], data_at: u64, size: u64) -> Result<Vec<Segment>, String> {
    if pairs.len() > MAX_SEGMENTS {
        return Err(format!("sparse map has more than {MAX_SEGMENTS} runs"));
    }
    let mut out = Vec::with_capacity(pairs.len());
    let (mut at, mut end) = (data_at, 0u64);
    for &(offset, len) in pairs {
        let stop = offset
            .checked_add(len)
            .ok_or("sparse map run past the end of the file")?;
        if offset < end || stop > size {
            return Err("sparse map runs overlap, are out of order or past the file".into());
        }
        if len > 0 {
            out.push(Segment { offset, len, at });
        }
        at += len;
        end = stop;
    }
    Ok(out)
}

/// The map of an old GNU sparse member: four slots in the header at 386, then 21 per
/// extension block while the "is extended" byte is set.
pub fn gnu_pairs(header: &[u8; 512], ext: &[u8]) -> Result<Vec<(u64, u64)>, String> {
    let mut pairs = Vec::new();
    let mut take = |slots: &[u8]| {
        for s in slots.chunks_exact(24) {
            if s[0] == 0 {
                break;
            }
            let n = |f: &[u8]| fields::number(f).and_then(|v| u64::try_from(v).ok());
            match (n(&s[..12]), n(&s[12..])) {
                (Some(o), Some(l)) => pairs.push((o, l)),
                _ => return Err("sparse map value is not a number".to_string()),
            }
        }
        Ok(())
    };
    take(&header[386..482])?;
    let mut extended = header[482] != 0;
    for block in ext.chunks_exact(512) {
        if !extended {
            break;
        }
        take(&block[..504])?;
        extended = block[504] != 0;
    }
    Ok(pairs)
}

/// What a member's `GNU.sparse.*` pax records say.
#[derive(Debug, Default)]
pub struct PaxSparse {
    pub name: Option<Vec<u8>>,
    pub real_size: Option<u64>,
    /// Version 0.x: the map is in the records. Version 1.0: it heads the data.
    pub pairs: Vec<(u64, u64)>,
    pub map_in_data: bool,
}

impl PaxSparse {
    /// `None` when the member is not a pax sparse one.
    pub fn from_records(records: &[(Vec<u8>, Vec<u8>)]) -> Result<Option<PaxSparse>, String> {
        let mut p = PaxSparse::default();
        let mut sparse = false;
        let mut pending_offset = None;
        let num = |v: &[u8]| {
            std::str::from_utf8(v)
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .ok_or_else(|| format!("bad sparse record value {:?}", String::from_utf8_lossy(v)))
        };
        for (k, v) in records {
            match k.as_slice() {
                b"GNU.sparse.name" => p.name = Some(v.clone()),
                b"GNU.sparse.realsize" | b"GNU.sparse.size" => {
                    sparse = true;
                    p.real_size = Some(num(v)?);
                }
                b"GNU.sparse.major" => {
                    sparse = true;
                    p.map_in_data = num(v)? == 1;
                }
                b"GNU.sparse.map" => {
                    sparse = true;
                    let vals = std::str::from_utf8(v)
                        .map_err(|_| "sparse map is not text")?
                        .split(',')
                        .map(|x| num(x.as_bytes()))
                        .collect::<Result<Vec<u64>, String>>()?;
                    if vals.len() % 2 != 0 || vals.len() / 2 > MAX_SEGMENTS {
                        return Err("sparse map has an odd or huge number of values".into());
                    }
                    p.pairs = vals.chunks_exact(2).map(|c| (c[0], c[1])).collect();
                }
                b"GNU.sparse.offset" => {
                    sparse = true;
                    pending_offset = Some(num(v)?);
                }
                b"GNU.sparse.numbytes" => {
                    let o = pending_offset
                        .take()
                        .ok_or("sparse numbytes without offset")?;
                    if p.pairs.len() >= MAX_SEGMENTS {
                        return Err(format!("sparse map has more than {MAX_SEGMENTS} runs"));
                    }
                    p.pairs.push((o, num(v)?));
                }
                _ => {}
            }
        }
        if !sparse {
            return Ok(None);
        }
        if p.real_size.is_none() {
            return Err("sparse member without a real size".into());
        }
        Ok(Some(p))
    }
}

/// Reads a 1.0 map from the head of the member's data: a count, then offset and length
/// lines, padded to a 512-byte block. Returns the pairs and the bytes the map took.
pub fn read_data_map(r: &mut impl Read, stored: u64) -> Result<(Vec<(u64, u64)>, u64), String> {
    let mut used = 0u64;
    let mut line = || -> Result<u64, String> {
        let mut digits = Vec::new();
        loop {
            let mut b = [0u8];
            r.read_exact(&mut b)
                .map_err(|e| format!("reading sparse map: {e}"))?;
            used += 1;
            if used > stored || digits.len() > 20 {
                return Err("sparse map is longer than its member".into());
            }
            match b[0] {
                b'\n' => break,
                d @ b'0'..=b'9' => digits.push(d),
                _ => return Err("sparse map holds a non-digit".into()),
            }
        }
        std::str::from_utf8(&digits)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| "sparse map value is not a number".to_string())
    };
    let count = line()?;
    if count > MAX_SEGMENTS as u64 {
        return Err(format!("sparse map has more than {MAX_SEGMENTS} runs"));
    }
    let mut pairs = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let o = line()?;
        let l = line()?;
        pairs.push((o, l));
    }
    let padded = used.div_ceil(512) * 512;
    if padded > stored {
        return Err("sparse map is longer than its member".into());
    }
    std::io::copy(&mut r.take(padded - used), &mut std::io::sink())
        .map_err(|e| format!("reading sparse map: {e}"))?;
    Ok((pairs, padded))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_are_laid_back_to_back() {
        let s = lay_out(&[(0, 10), (100, 5), (200, 0)], 1000, 200).unwrap();
        assert_eq!(
            s,
            vec![
                Segment {
                    offset: 0,
                    len: 10,
                    at: 1000
                },
                Segment {
                    offset: 100,
                    len: 5,
                    at: 1010
                }
            ]
        );
        assert!(
            lay_out(&[(100, 5), (0, 10)], 0, 200).is_err(),
            "out of order"
        );
        assert!(lay_out(&[(0, 10), (5, 10)], 0, 200).is_err(), "overlap");
        assert!(lay_out(&[(195, 10)], 0, 200).is_err(), "past the end");
    }

    #[test]
    fn a_data_map_is_read_and_its_padding_skipped() {
        let mut data = b"2\n0\n3\n8192\n4\n".to_vec();
        data.resize(512, 0);
        data.extend_from_slice(b"abcdefg");
        let mut r = &data[..];
        let (pairs, used) = read_data_map(&mut r, data.len() as u64).unwrap();
        assert_eq!((pairs, used), (vec![(0, 3), (8192, 4)], 512));
        assert_eq!(r, b"abcdefg");
        assert!(read_data_map(&mut &b"1\nx\n"[..], 512).is_err());
        assert!(read_data_map(&mut &b"99999999\n"[..], 512).is_err());
    }
}
