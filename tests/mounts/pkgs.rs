//! Whole-tree and concurrent reads of pkgs/ on archives large enough to span many seek
//! points or frames: the bytes are the archive's, the shared span cache keeps to its budget,
//! and zstd/xz members are read from the seekable twin made at publication, not unpacked.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use crate::common::{process::*, repo::*, site::*, world::*};

/// Span cache budget for these tests: a few gzip spans (1 MiB each, `SEEK_SPACING`).
const BUDGET: u64 = 8 << 20;

/// `root/NAME-1.0/`: `files` text files in nested directories (sizes 0..40 KiB, some of
/// 1-3 MiB), deterministic, `mib` MiB in all, compressible like source code.
fn make_tree(root: &Path, name: &str, files: usize, mib: usize) {
    sh(
        root,
        &format!(
            r##"python3 - <<'PY'
import os, random
random.seed(7)
words = [b"static int", b"return 0;", b"#include <linux/kernel.h>", b"struct file *f;",
         b"EXPORT_SYMBOL", b"if (err)", b"goto out;", b"}}", b"{{", b"\n", b"\t"]
root, n, total = "{name}-1.0", {files}, {mib} << 20
budget = total
for i in range(n):
    d = os.path.join(root, f"d{{i % 7}}", f"s{{(i // 7) % 13}}")
    os.makedirs(d, exist_ok=True)
    size = random.choice([0, 1, 100, 4000, 40000]) if i % 500 else 3 << 20 >> (i % 3)
    if i == n - 1:
        size = max(budget, 0)
    size = min(size, max(budget, 0))
    budget -= size
    out = bytearray()
    while len(out) < size:
        out += random.choice(words) + b" " + str(random.randrange(1 << 20)).encode()
    with open(os.path.join(d, f"f{{i}}.c"), "wb") as f:
        f.write(out[:size])
os.symlink("d0/s0/f0.c", os.path.join(root, "link"))
PY"##
        ),
    );
}

fn status_kib(pid: u32, field: &str) -> u64 {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// Every regular file below `root`, by relative path.
fn files_below(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let t = e.file_type().unwrap();
            if t.is_dir() {
                stack.push(e.path());
            } else if t.is_file() {
                out.push(e.path().strip_prefix(root).unwrap().to_path_buf());
            }
        }
    }
    out.sort();
    out
}

/// A 64 MiB tree (64 spans) as .tar.gz, read whole through pkgs/ by tar -c and diff -r with
/// an 8 MiB span cache: the bytes are the archive's, and the mount's peak memory grows by
/// the budget plus a few spans in flight, not by the payload. Then 8 threads read different
/// files of the package at once, in different orders.
#[test]
fn whole_tree_of_a_large_tar_gz_through_a_bounded_span_cache() {
    let s = Site::with_config(&format!("[mount]\nspan_cache = {BUDGET}\n"));
    let d = s.w.scratch("bigtree");
    make_tree(&d, "big", 3000, 64);
    sh(
        &d,
        "tar --sort=name --format=gnu -cf big-1.0.tar big-1.0 && gzip -6 -k big-1.0.tar \
         && mkdir x && tar -C x -xf big-1.0.tar",
    );
    s.w.repo.add_key("big", &s.w.gpg.export(ALICE, &s.w.work));
    publish(&s, "big", &d.join("big-1.0.tar.gz"));

    let pid = s.mnt.child.id();
    let _ = fs::write(format!("/proc/{pid}/clear_refs"), "5"); // resets the peak RSS
    let before = status_kib(pid, "VmRSS:");
    let tree = s.mnt.path("pkgs/big/1.0");
    sh(
        &d,
        &format!(
            "mkdir y && tar -C {} -cf - big-1.0 | tar -C y -xf - && diff -r x/big-1.0 y/big-1.0 \
             && diff -r x/big-1.0 {}/big-1.0",
            tree.display(),
            tree.display()
        ),
    );
    let grown = status_kib(pid, "VmHWM:").saturating_sub(before) << 10;
    // An unbounded cache would hold all 64 MiB; allow the budget, spans being filled by
    // the 4 FUSE threads, and allocator slack.
    assert!(
        grown < BUDGET + (24 << 20),
        "mount grew by {} MiB reading a 64 MiB payload with an 8 MiB span cache",
        grown >> 20
    );

    let files = files_below(&d.join("x/big-1.0"));
    assert!(files.len() >= 3000, "{}", files.len());
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let (files, tree, x) = (files.clone(), tree.join("big-1.0"), d.join("x/big-1.0"));
            std::thread::spawn(move || {
                let mut mine: Vec<&PathBuf> = files.iter().skip(t).step_by(8).collect();
                if t % 2 == 1 {
                    mine.reverse(); // half the readers walk the archive backwards
                }
                let mut read = BTreeMap::new();
                for f in mine {
                    let got = fs::read(tree.join(f)).unwrap();
                    assert!(
                        got == fs::read(x.join(f)).unwrap(),
                        "{} differs",
                        f.display()
                    );
                    read.insert(f.clone(), got.len());
                }
                read.len()
            })
        })
        .collect();
    let total: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert_eq!(total, files.len());
}

/// .tar.zst and .tar.xz members are read from the seekable twin made at publication: the
/// first read of a file works and the unpack cache stays empty; the twin survives the
/// daemon's start-up GC (it is referenced) and the tree still reads whole afterwards.
#[test]
fn zstd_and_xz_members_read_from_the_seekable_twin_without_unpacking() {
    let mut s = Site::new();
    let d = s.w.scratch("twin");
    make_tree(&d, "tw", 400, 9);
    sh(
        &d,
        "tar --sort=name -cf tw-1.0.tar tw-1.0 && zstd -q -19 tw-1.0.tar -o tw-1.1.tar.zst \
         && xz -k -c tw-1.0.tar > tw-1.2.tar.xz && mkdir x && tar -C x -xf tw-1.0.tar",
    );
    s.w.repo.add_key("tw", &s.w.gpg.export(ALICE, &s.w.work));
    publish(&s, "tw", &d.join("tw-1.1.tar.zst"));
    publish(&s, "tw", &d.join("tw-1.2.tar.xz"));
    let cache = s.w.repo.root.join("cache");
    let unpacked = || {
        fs::read_dir(&cache)
            .map(|r| r.filter_map(Result::ok).count())
            .unwrap_or(0)
    };
    // The last file sits past several 2 MiB frames.
    let files = files_below(&d.join("x/tw-1.0"));
    let deep = files.last().unwrap();
    for v in ["1.1", "1.2"] {
        let tree = s.mnt.path(&format!("pkgs/tw/{v}/tw-1.0"));
        assert!(
            fs::read(tree.join(deep)).unwrap() == fs::read(d.join("x/tw-1.0").join(deep)).unwrap()
        );
        assert_eq!(unpacked(), 0, "version {v} was unpacked into the cache");
    }
    // The twin is an object of its own in the store, beside hello-1.0.tar.gz, the two
    // packages and their signatures; one, as both hold the same tar stream.
    let objects = || {
        fs::read_dir(s.w.repo.root.join("store/objects"))
            .unwrap()
            .flat_map(|p| fs::read_dir(p.unwrap().path()).unwrap())
            .count()
    };
    assert_eq!(objects(), 2 + 2 * 2 + 1);
    s.daemon.terminate();
    s.daemon = Daemon::start(&s.w.repo, &[]);
    for v in ["1.1", "1.2"] {
        let tree = s.mnt.path(&format!("pkgs/tw/{v}"));
        sh(&d, &format!("diff -r x/tw-1.0 {}/tw-1.0", tree.display()));
    }
    assert_eq!(unpacked(), 0);
    assert_eq!(
        objects(),
        2 + 2 * 2 + 1,
        "start-up GC kept every referenced object"
    );
}
