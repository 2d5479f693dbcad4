use super::*;
use flate2::write::{DeflateEncoder, GzEncoder};
use flate2::Compression;
use std::io::Write;

/// Moderately compressible text: words from a small vocabulary, picked by xorshift.
fn text(len: usize, seed: u64) -> Vec<u8> {
    const WORDS: &[&str] = &[
        "alpha", "beta", "gamma", "delta", "repo", "fuse", "tar", "deb", "index", "zran", "window",
        "block", "\n", "0123", "xyzzy", "package", "mount", "seek",
    ];
    let mut s = seed | 1;
    let mut out = Vec::with_capacity(len + 16);
    while out.len() < len {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        out.extend_from_slice(WORDS[(s % WORDS.len() as u64) as usize].as_bytes());
        if s & 0x300 == 0 {
            out.push((s >> 20) as u8);
        }
        out.push(b' ');
    }
    out.truncate(len);
    out
}

fn gz(data: &[u8], level: u32) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::new(level));
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn gzip_cmd(data: &[u8]) -> Vec<u8> {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(data).unwrap();
    let out = std::process::Command::new("gzip")
        .args(["-9", "-c"])
        .arg(f.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    out.stdout
}

fn index(gz: &[u8], spacing: u64) -> io::Result<(Vec<u8>, Vec<SeekPoint>, u64)> {
    let mut r = IndexingReader::new(gz, spacing);
    let mut out = Vec::new();
    // Read part through Read and leave the rest to finish(), as the tar walk does.
    let mut chunk = vec![0; 100_003];
    let n = r.read(&mut chunk)?;
    out.extend_from_slice(&chunk[..n]);
    r.read_to_end(&mut out)?;
    let (points, total) = r.finish()?;
    Ok((out, points, total))
}

/// Writes `prefix + gz + suffix` to a file and returns a cursor over the gzip part.
fn cursor(gz: &[u8], points: &[SeekPoint]) -> (GzCursor, tempfile::NamedTempFile) {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(b"!<arch>\nsome prefix").unwrap();
    f.write_all(gz).unwrap();
    f.write_all(b"data.tar.xz trailing ar member").unwrap();
    let file = Arc::new(f.reopen().unwrap());
    let c = GzCursor::new(file, 19, points.to_vec().into()).with_len(gz.len() as u64);
    (c, f)
}

fn check_points(points: &[SeekPoint], spacing: u64, total: u64) {
    let mut last = 0;
    for p in points {
        assert!(p.out >= last + spacing && p.out < total, "{p:?}");
        assert_eq!(p.window.len() as u64, p.out.min(WINDOW as u64));
        assert!(p.bits < 8);
        last = p.out;
    }
}

fn check_reads(c: &mut GzCursor, data: &[u8], points: &[SeekPoint], seed: u64) {
    let len = data.len() as u64;
    let mut offs = vec![0, 1, len - 1, len.saturating_sub(5000), len / 2];
    for p in points {
        offs.extend([p.out - 1, p.out, p.out + 1, p.out.saturating_sub(40_000)]);
    }
    let mut s = seed | 1;
    for _ in 0..60 {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        offs.push(s % len);
    }
    for (i, &o) in offs.iter().enumerate() {
        let want = [1usize, 100, 4096, 70_000, 300_000][i % 5];
        let mut buf = vec![0; want];
        let n = c.read_at(o, &mut buf).unwrap();
        let end = (o as usize + want).min(data.len());
        assert_eq!(n, end - o as usize, "short read at {o}");
        assert!(buf[..n] == data[o as usize..end], "mismatch at {o}");
    }
    let mut buf = [0u8; 10];
    assert_eq!(c.read_at(len, &mut buf).unwrap(), 0);
    assert_eq!(c.read_at(len + 100, &mut buf).unwrap(), 0);
}

#[test]
fn flate2_levels_roundtrip_and_random_reads() {
    let data = text(3 << 20, 7);
    for level in [1, 6, 9] {
        let z = gz(&data, level);
        let spacing = 256 << 10;
        let (out, points, total) = index(&z, spacing).unwrap();
        assert!(out == data);
        assert_eq!(total, data.len() as u64);
        assert!(points.len() >= 4, "level {level}: {} points", points.len());
        check_points(&points, spacing, total);
        // Mid-byte restarts (the `bits` path) are exercised.
        assert!(points.iter().any(|p| p.bits > 0));
        let (mut c, _f) = cursor(&z, &points);
        check_reads(&mut c, &data, &points, level as u64);
    }
}

#[test]
fn gzip_cmd_concatenated_members_with_empty_one() {
    let a = text(1_500_000, 1);
    let b = text(1_200_000, 2);
    let mut z = gzip_cmd(&a);
    z.extend(gzip_cmd(b""));
    let b_start = z.len();
    z.extend(gzip_cmd(&b));
    z.extend(gz(&a[..1000], 6));
    let mut data = [a.clone(), b.clone()].concat();
    data.extend_from_slice(&a[..1000]);

    let spacing = 200_000;
    let (out, points, total) = index(&z, spacing).unwrap();
    assert!(out == data);
    assert_eq!(total, data.len() as u64);
    check_points(&points, spacing, total);
    // A member start is a candidate point too (here the empty member's, which comes
    // first at that offset); restarting there crosses the empty member into the next.
    let (_, at_member, _) = index(&z, a.len() as u64).unwrap();
    assert_eq!(at_member[0].out, a.len() as u64);
    assert_eq!(at_member[0].bits, 0);
    assert!(at_member[0].inp < b_start as u64);
    let (mut c, _f) = cursor(&z, &at_member);
    check_reads(&mut c, &data, &at_member, 3);

    let (mut c, _f) = cursor(&z, &points);
    check_reads(&mut c, &data, &points, 99);
    let edge = a.len() as u64;
    for o in [edge - 10, edge, edge + 1, data.len() as u64 - 1010] {
        let mut buf = vec![0; 3000];
        let n = c.read_at(o, &mut buf).unwrap();
        let end = (o as usize + 3000).min(data.len());
        assert!(buf[..n] == data[o as usize..end]);
    }

    // Without points the cursor inflates from the start, through every member.
    let (mut c, _f) = cursor(&z, &[]);
    check_reads(&mut c, &data, &[], 5);
}

#[test]
fn header_with_all_optional_fields() {
    let data = text(300_000, 3);
    let mut d = DeflateEncoder::new(Vec::new(), Compression::new(6));
    d.write_all(&data).unwrap();
    let body = d.finish().unwrap();
    let mut z = vec![0x1f, 0x8b, 8, 0x04 | 0x08 | 0x10 | 0x02, 1, 2, 3, 4, 0, 3];
    z.extend([5, 0, b'a', b'b', 0, 1, 2]);
    z.extend(b"name.tar\0a comment\0");
    let hcrc = crc32fast::hash(&z) as u16;
    z.extend(hcrc.to_le_bytes());
    z.extend(&body);
    z.extend(crc32fast::hash(&data).to_le_bytes());
    z.extend((data.len() as u32).to_le_bytes());
    let (out, _, _) = index(&z, 1 << 20).unwrap();
    assert!(out == data);

    let mut bad = z.clone();
    bad[12] ^= 1; // inside FEXTRA, covered by the header CRC
    assert!(index(&bad, 1 << 20).is_err());
}

#[test]
fn sequential_reads_continue_inflating() {
    let data = text(6 << 20, 11);
    let z = gz(&data, 6);
    let (_, points, _) = index(&z, 512 << 10).unwrap();
    let (mut c, _f) = cursor(&z, &points);
    let mut buf = vec![0; 128 << 10];
    let mut off = 0;
    loop {
        let n = c.read_at(off as u64, &mut buf).unwrap();
        if n == 0 {
            break;
        }
        assert!(buf[..n] == data[off..off + n], "at {off}");
        off += n;
    }
    assert_eq!(off, data.len());
    // One pass over the input, no restarts.
    assert!(c.compressed_read() <= z.len() as u64 + IN_BUF as u64);
}

#[test]
fn corrupt_truncated_empty_and_garbage_are_errors() {
    let data = text(400_000, 5);
    let z = gz(&data, 6);
    assert!(index(&[], 1000).is_err());
    assert!(index(b"not gzip at all", 1000).is_err());
    let mut trailing = z.clone();
    trailing.extend(b"garbage");
    assert!(index(&trailing, 1000).is_err());
    let mut zeros = z.clone();
    zeros.extend([0u8; 8]);
    assert!(index(&zeros, 1000).is_err());
    for cut in [1, 5, 10, 11, 100, z.len() / 2, z.len() - 8, z.len() - 1] {
        assert!(index(&z[..cut], 1000).is_err(), "cut at {cut}");
    }
    for pos in [
        0,
        1,
        2,
        10,
        11,
        50,
        1000,
        z.len() / 3,
        z.len() - 6,
        z.len() - 2,
    ] {
        for flip in [0x01, 0x80, 0xff] {
            let mut bad = z.clone();
            bad[pos] ^= flip;
            assert!(index(&bad, 1000).is_err(), "flip {flip:#x} at {pos}");
        }
    }
    // Cursor over corrupt data: errors, and keeps erroring, without panicking.
    let (_, points, _) = index(&z, 50_000).unwrap();
    let mut bad = z.clone();
    for i in (z.len() / 2..z.len() / 2 + 64).step_by(3) {
        bad[i] ^= 0x5a;
    }
    let (mut c, _f) = cursor(&bad, &points);
    let mut buf = vec![0; 1 << 20];
    let mut errs = 0;
    for o in [0, 300_000, 390_000] {
        errs += c.read_at(o, &mut buf).is_err() as u32;
    }
    assert!(errs > 0);
    let (mut c, _f) = cursor(&z[..z.len() / 2], &points);
    assert!(c.read_at(390_000, &mut buf).is_err());
    // A malformed point is refused.
    let mut wrong = points.clone();
    wrong[0].window.truncate(10);
    let (mut c, _f) = cursor(&z, &wrong);
    assert!(c.read_at(wrong[0].out + 5, &mut buf).is_err());
}

/// `cargo test --release --lib gzindex -- --ignored --nocapture`
#[test]
#[ignore]
fn speed_vs_flate2() {
    let data = text(256 << 20, 17);
    let z = gz(&data, 6);
    let mb = data.len() as f64 / 1e6;
    let t = std::time::Instant::now();
    let mut r = IndexingReader::new(&z[..], 4 << 20);
    let n = io::copy(&mut r, &mut io::sink()).unwrap();
    let (points, _) = r.finish().unwrap();
    let ours = t.elapsed().as_secs_f64();
    assert_eq!(n, data.len() as u64);
    let t = std::time::Instant::now();
    let mut d = flate2::read::MultiGzDecoder::new(&z[..]);
    io::copy(&mut d, &mut io::sink()).unwrap();
    let theirs = t.elapsed().as_secs_f64();
    let (mut c, _f) = cursor(&z, &points);
    let mut buf = vec![0; 128 << 10];
    let t = std::time::Instant::now();
    let mut off = 0;
    while off < data.len() {
        off += c.read_at(off as u64, &mut buf).unwrap();
    }
    let seq = t.elapsed().as_secs_f64();
    eprintln!(
        "indexing {:.0} MB/s, cursor sequential {:.0} MB/s, flate2 {:.0} MB/s, {} points",
        mb / ours,
        mb / seq,
        mb / theirs,
        points.len()
    );
}

#[test]
fn read_near_end_is_bounded_work() {
    let data = text(64 << 20, 13);
    let z = gz(&data, 1);
    let spacing = 1 << 20;
    let (_, points, total) = index(&z, spacing).unwrap();
    assert_eq!(total, data.len() as u64);
    let max_gap = points
        .windows(2)
        .map(|w| w[1].inp - w[0].inp)
        .max()
        .unwrap();
    let (mut c, _f) = cursor(&z, &points);
    let off = data.len() - 5000;
    let mut buf = vec![0; 100];
    assert_eq!(c.read_at(off as u64, &mut buf).unwrap(), 100);
    assert!(buf[..] == data[off..off + 100]);
    let work = c.compressed_read();
    assert!(
        work < 2 * max_gap + IN_BUF as u64 && work < z.len() as u64 / 16,
        "read {work} of {} compressed bytes (gap {max_gap})",
        z.len()
    );
}
