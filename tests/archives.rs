//! Archive inspection on archives other tools made, compared with what those tools unpack.
//!
//! Each archive is made by the tool that makes it in the wild (GNU tar in each --format,
//! bsdtar, busybox tar, zip, lzip, cargo's own .crate files) and unpacked by the matching
//! unpacker; `archive::inspect` must list the same entries with the same type, mode, size,
//! link target and content hash. Hand-made headers cover the numeric fields real writers get
//! wrong, which must read as GNU tar reads them, and the strict fields, which must not.

pub mod common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use common::{digest::*, process::*};
use repofs::archive::{self, EntryKind, Inspection, Layout};
use repofs::config::Limits;

#[derive(Debug, PartialEq, Eq)]
struct Seen {
    kind: &'static str,
    mode: u32,
    size: u64,
    link: Option<String>,
    sha256: Option<String>,
}

fn inspect(path: &Path) -> Inspection {
    let name = path.file_name().unwrap().to_str().unwrap();
    archive::inspect(path, name, &Limits::default())
        .unwrap_or_else(|e| panic!("{name}: {e}"))
        .unwrap_or_else(|| panic!("{name}: not taken for an archive"))
}

/// The inspected entries, hard links resolved to their target's content (as an unpacker
/// writes them).
fn listed(i: &Inspection) -> BTreeMap<String, Seen> {
    let by_path: BTreeMap<&str, &archive::Entry> =
        i.entries.iter().map(|e| (e.path.as_str(), e)).collect();
    i.entries
        .iter()
        .map(|e| {
            let data = match e.kind {
                EntryKind::Hardlink => by_path[e.link_target.as_deref().unwrap()],
                _ => e,
            };
            let seen = Seen {
                kind: match e.kind {
                    EntryKind::Dir => "dir",
                    EntryKind::Symlink => "symlink",
                    _ => "file",
                },
                mode: data.mode,
                size: data.size,
                link: (e.kind == EntryKind::Symlink).then(|| e.link_target.clone().unwrap()),
                sha256: data.sha256.clone(),
            };
            (e.path.clone(), seen)
        })
        .collect()
}

/// What an unpacker left in `dir`, in the same terms.
fn on_disk(dir: &Path) -> BTreeMap<String, Seen> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Seen>) {
        for e in fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(root).unwrap().to_str().unwrap().to_string();
            let m = fs::symlink_metadata(&p).unwrap();
            let seen = if m.file_type().is_symlink() {
                Seen {
                    kind: "symlink",
                    mode: 0o777,
                    size: 0,
                    link: Some(fs::read_link(&p).unwrap().to_str().unwrap().to_string()),
                    sha256: None,
                }
            } else if m.is_dir() {
                walk(root, &p, out);
                Seen {
                    kind: "dir",
                    mode: m.mode() & 0o7777,
                    size: 0,
                    link: None,
                    sha256: None,
                }
            } else {
                Seen {
                    kind: "file",
                    mode: m.mode() & 0o7777,
                    size: m.len(),
                    link: None,
                    sha256: Some(sha256_file(&p)),
                }
            };
            out.insert(rel, seen);
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// Compares, ignoring symlink modes (always 0777 on Linux) and the directories an unpacker
/// creates for members whose parents the archive does not list.
fn assert_same(archive: &Path, listed: BTreeMap<String, Seen>, unpacked: BTreeMap<String, Seen>) {
    let norm = |m: BTreeMap<String, Seen>, other: &BTreeMap<String, Seen>| {
        m.into_iter()
            .filter(|(p, s)| s.kind != "dir" || other.contains_key(p))
            .map(|(p, mut s)| {
                if s.kind == "symlink" {
                    s.mode = 0o777;
                }
                (p, s)
            })
            .collect::<BTreeMap<_, _>>()
    };
    let listed_n = norm(listed, &unpacked);
    let unpacked_n = norm(unpacked, &listed_n);
    let diff: Vec<String> = listed_n
        .keys()
        .chain(unpacked_n.keys())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .filter(|k| listed_n.get(*k) != unpacked_n.get(*k))
        .map(|k| {
            format!(
                "{k}: inspected {:?}, unpacked {:?}",
                listed_n.get(k),
                unpacked_n.get(k)
            )
        })
        .collect();
    assert!(
        diff.is_empty(),
        "{}:\n{}",
        archive.display(),
        diff.join("\n")
    );
}

/// Unpacks `archive` with `cmd` (run in an empty directory; `{}` is the archive) as root
/// would, keeping modes, and compares.
fn check_against(archive: &Path, cmd: &str) -> Inspection {
    let out = archive.with_extension("unpacked");
    let _ = fs::remove_dir_all(&out);
    fs::create_dir_all(&out).unwrap();
    sh(&out, &cmd.replace("{}", archive.to_str().unwrap()));
    let i = inspect(archive);
    assert_same(archive, listed(&i), on_disk(&out));
    i
}

fn tree(d: &Path) -> PathBuf {
    sh(
        d,
        "rm -rf src && mkdir -p src/pkg-1.0/sub/deeper src/pkg-1.0/empty && cd src/pkg-1.0 \
         && head -c 300000 /dev/urandom > sub/deeper/random && printf 'text\\n' > README \
         && : > sub/zero && printf '#!/bin/sh\\n' > run && chmod 755 run && chmod 600 sub/zero \
         && ln -s sub/deeper/random link && ln README hard \
         && mkdir -p a-directory-name-that-is-long/another-directory-name-that-is-long \
         && printf 'deep\\n' > a-directory-name-that-is-long/another-directory-name-that-is-long/a-file-name-long-enough-to-pass-one-hundred-bytes.txt \
         && printf 'utf8\\n' > 'caf\u{e9}-\u{65e5}\u{672c}.txt'",
    );
    d.join("src")
}

#[test]
fn gnu_tar_formats_and_compressors() {
    let tmp = scratch_dir("formats");
    let d = tmp.path();
    let src = tree(d);
    let mut made = Vec::new();
    for format in ["gnu", "ustar", "pax", "v7"] {
        // v7 and ustar cannot hold the long names, the UTF-8 name or (v7) directories' type:
        // give them a tree they can hold.
        let what = if format == "v7" || format == "ustar" {
            "pkg-1.0/sub pkg-1.0/README pkg-1.0/run pkg-1.0/link pkg-1.0/hard pkg-1.0/empty"
        } else {
            "pkg-1.0"
        };
        let tar = d.join(format!("{format}-1.0.tar"));
        sh(
            &src,
            &format!("tar --format={format} -cf {} {what}", tar.display()),
        );
        made.push(tar);
    }
    let gnu = d.join("gnu-1.0.tar");
    for (ext, cmd) in [
        ("tar.gz", "gzip -9c"),
        ("tar.bz2", "bzip2 -c"),
        ("tar.xz", "xz -c"),
        ("tar.zst", "zstd -qc"),
        ("tar.lz", "lzip -c"),
    ] {
        let out = d.join(format!("gnu-1.0.{ext}"));
        sh(d, &format!("{cmd} < {} > {}", gnu.display(), out.display()));
        made.push(out);
    }
    for archive in &made {
        check_against(archive, "tar --no-same-owner -xpf {}");
    }
}

#[test]
fn bsdtar_busybox_python_and_git_archives() {
    let tmp = scratch_dir("writers");
    let d = tmp.path();
    let src = tree(d);
    let mut made = vec![];
    for (file, cmd) in [
        ("bsd-1.0.tar.gz", "bsdtar -czf {} pkg-1.0"),
        ("bsdpax-1.0.tar", "bsdtar --format=pax -cf {} pkg-1.0"),
        (
            "busybox-1.0.tar",
            "busybox tar -cf {} pkg-1.0/README pkg-1.0/run pkg-1.0/sub pkg-1.0/link",
        ),
        (
            "python-1.0.tar.gz",
            "python3 -c 'import tarfile,sys; t=tarfile.open(sys.argv[1],\"w:gz\"); t.add(\"pkg-1.0\"); t.close()' {}",
        ),
    ] {
        let out = d.join(file);
        sh(&src, &cmd.replace("{}", out.to_str().unwrap()));
        made.push(out);
    }
    for archive in &made {
        check_against(archive, "tar --no-same-owner -xpf {}");
        check_against(archive, "bsdtar -xpf {}");
    }
    // git archive: a pax global header holding the commit id, then ustar members.
    sh(
        &src,
        "cd pkg-1.0 && git init -q && git add -A && git -c user.email=a@b -c user.name=a commit -qm x \
         && git archive --prefix=pkg-1.0/ -o ../../git-1.0.tar.gz HEAD && rm -rf .git",
    );
    check_against(&d.join("git-1.0.tar.gz"), "tar --no-same-owner -xpf {}");
}

/// Sparse members in each encoding GNU tar writes: the entry list gives the real size and the
/// hash of the unpacked bytes, and the data runs are recorded so pkgs/ can read in place.
#[test]
fn sparse_members_in_every_gnu_encoding() {
    let tmp = scratch_dir("sparse");
    let d = tmp.path();
    sh(
        d,
        "mkdir -p src/sp-1.0 && cd src/sp-1.0 && truncate -s 3M holes \
         && printf 'start' | dd of=holes conv=notrunc status=none \
         && head -c 70000 /dev/urandom | dd of=holes bs=1 seek=1048576 conv=notrunc status=none \
         && printf 'end' | dd of=holes bs=1 seek=3145725 conv=notrunc status=none \
         && truncate -s 1M allhole && printf 'plain\\n' > plain",
    );
    for (name, args) in [
        ("gnu-1.0.tar", "--format=gnu --sparse"),
        (
            "pax10-1.0.tar",
            "--format=pax --sparse --sparse-version=1.0",
        ),
        (
            "pax01-1.0.tar",
            "--format=pax --sparse --sparse-version=0.1",
        ),
        (
            "pax00-1.0.tar",
            "--format=pax --sparse --sparse-version=0.0",
        ),
    ] {
        let tar = d.join(name);
        sh(
            &d.join("src"),
            &format!("tar {args} -cf {} sp-1.0", tar.display()),
        );
        let i = check_against(&tar, "tar --no-same-owner -xpf {}");
        let holes = i.entries.iter().find(|e| e.path == "sp-1.0/holes").unwrap();
        assert!(
            matches!(&holes.layout, Layout::Sparse(runs) if !runs.is_empty()),
            "{name}: {:?}",
            holes.layout
        );
    }
    // Many runs: past the four slots of the old GNU header, into extension blocks.
    sh(
        d,
        "cd src/sp-1.0 && rm -f holes allhole && truncate -s 40M many \
         && for i in $(seq 0 39); do printf \"run$i\" | dd of=many bs=1 seek=$((i*1048576+4096)) conv=notrunc status=none; done",
    );
    let tar = d.join("many-1.0.tar");
    sh(
        &d.join("src"),
        &format!("tar --format=gnu --sparse -cf {} sp-1.0", tar.display()),
    );
    let i = check_against(&tar, "tar --no-same-owner -xpf {}");
    let many = i.entries.iter().find(|e| e.path == "sp-1.0/many").unwrap();
    assert!(matches!(&many.layout, Layout::Sparse(runs) if runs.len() >= 40));
}

#[test]
fn zip_packages_as_unzip_unpacks_them() {
    let tmp = scratch_dir("zip");
    let d = tmp.path();
    let src = tree(d);
    // zip: deflated and stored members, a symlink kept as one (-y), directories.
    sh(
        &src,
        "zip -qry ../z-1.0.zip pkg-1.0 && zip -q0ry ../stored-1.0.zip pkg-1.0 -x 'pkg-1.0/hard'",
    );
    for z in ["z-1.0.zip", "stored-1.0.zip"] {
        let i = check_against(&d.join(z), "unzip -q {}");
        assert_eq!(i.format, archive::Format::Zip);
    }
    let i = inspect(&d.join("z-1.0.zip"));
    let random = i
        .entries
        .iter()
        .find(|e| e.path == "pkg-1.0/sub/deeper/random")
        .unwrap();
    // Incompressible data may be stored by zip; the README is deflated.
    let readme = i
        .entries
        .iter()
        .find(|e| e.path == "pkg-1.0/README")
        .unwrap();
    assert!(
        matches!(readme.layout, Layout::Deflated { .. } | Layout::Contiguous),
        "{:?}",
        readme.layout
    );
    assert_eq!(random.size, 300000);
}

#[test]
fn crates_from_cargos_cache_publish_with_their_cargo_toml() {
    // Whatever this build pulled in: real .crate files written by cargo (uid/gid left empty).
    let cache = Path::new(
        &std::env::var("CARGO_HOME")
            .unwrap_or_else(|_| format!("{}/.cargo", std::env::var("HOME").unwrap())),
    )
    .join("registry/cache");
    let crates: Vec<PathBuf> = fs::read_dir(&cache)
        .unwrap()
        .flat_map(|d| fs::read_dir(d.unwrap().path()).unwrap())
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_str().unwrap();
            n.starts_with("aho-corasick-") || n.starts_with("serde_json-") || n.starts_with("tar-")
        })
        .collect();
    assert!(
        crates.len() >= 3,
        "crates in {}: {crates:?}",
        cache.display()
    );
    let tmp = scratch_dir("crates");
    let d = tmp.path();
    for c in crates {
        let copy = d.join(c.file_name().unwrap());
        fs::copy(&c, &copy).unwrap();
        let i = check_against(&copy, "tar --no-same-owner -xpzf {}");
        // What cargo itself says: the normalized Cargo.toml's [package].
        let stem = copy.file_stem().unwrap().to_str().unwrap();
        let toml = fs::read_to_string(
            copy.with_extension("unpacked")
                .join(stem)
                .join("Cargo.toml"),
        )
        .unwrap();
        let field = |k: &str| {
            toml.lines()
                .skip_while(|l| l.trim() != "[package]")
                .find_map(|l| l.strip_prefix(&format!("{k} = \"")))
                .map(|v| v.trim_end_matches('"').to_string())
        };
        assert_eq!(Some(i.meta.name.clone()), field("name"), "{stem}");
        assert_eq!(i.meta.version, field("version"), "{stem}");
        assert_eq!(i.meta.source, archive::MetaSource::Cargo);
    }
}

/// One ustar header with the given numeric fields, a 5-byte member "hello" and the end.
fn hand_made(name: &str, fields: &[(usize, &[u8])], size_field: &[u8]) -> Vec<u8> {
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    h[100..108].copy_from_slice(b"0000644\0");
    h[108..116].copy_from_slice(b"0000000\0");
    h[116..124].copy_from_slice(b"0000000\0");
    h[124..124 + size_field.len()].copy_from_slice(size_field);
    h[136..148].copy_from_slice(b"14000000000\0");
    h[156] = b'0';
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    for (at, v) in fields {
        h[*at..*at + v.len()].copy_from_slice(v);
    }
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    let mut out = h.to_vec();
    let mut data = b"hello".to_vec();
    data.resize(512, 0);
    out.extend(data);
    out.extend([0u8; 1024]);
    out
}

#[test]
fn odd_numeric_fields_read_as_gnu_tar_reads_them() {
    let tmp = scratch_dir("numeric");
    let d = tmp.path();
    let mut base256 = [0u8; 8];
    base256[0] = 0x80;
    base256[4..].copy_from_slice(&3_000_000u32.to_be_bytes());
    // name, (offset, bytes) written over the header, expected uid and mtime.
    type Case<'a> = (&'a str, Vec<(usize, &'a [u8])>, u64, i64);
    let cases: Vec<Case> = vec![
        (
            "empty-uid-gid",
            vec![(108, &[0u8; 8]), (116, &[0u8; 8])],
            0,
            0o14000000000,
        ),
        (
            "space-padded",
            vec![(108, b"  1750 \0"), (116, b"     12 ")],
            0o1750,
            0o14000000000,
        ),
        (
            "nul-led",
            vec![(108, b"\x000001750")],
            0o1750,
            0o14000000000,
        ),
        (
            "base256-uid",
            vec![(108, &base256)],
            3_000_000,
            0o14000000000,
        ),
        ("blank-mtime", vec![(136, b"            ")], 0, 0),
        (
            "junk-after-digits",
            vec![(108, b"17\0junk!")],
            0o17,
            0o14000000000,
        ),
        (
            "odd-uname-devs",
            vec![
                (265, b"\xff\xfe\x01"),
                (329, b"garbage!"),
                (337, b"\x80\x01xyz"),
            ],
            0,
            0o14000000000,
        ),
    ];
    for (name, fields, uid, mtime) in cases {
        let tar = d.join(format!("{name}-1.0.tar"));
        fs::write(&tar, hand_made("f", &fields, b"00000000005\0")).unwrap();
        // GNU tar or libarchive reads it (GNU tar complains of a blank field; libarchive
        // does not recognize junk after the digits as tar)...
        sh(
            d,
            &format!(
                "tar -tvf {0} >/dev/null 2>&1 || bsdtar -tvf {0} >/dev/null",
                tar.display()
            ),
        );
        // ...and so do we, to the same values.
        let i = inspect(&tar);
        assert_eq!(i.entries.len(), 1, "{name}");
        let e = &i.entries[0];
        assert_eq!((e.uid, e.mtime, e.size), (uid, mtime, 5), "{name}");
        assert_eq!(e.sha256.as_deref(), Some(hex_sha256(b"hello").as_str()));
    }
}

#[test]
fn strict_fields_stay_strict() {
    let tmp = scratch_dir("strict");
    let d = tmp.path();
    let limits = Limits::default();
    // A size that is not a number, and a header whose checksum does not add up.
    let bad_size = hand_made("f", &[], b"0000000005x\0");
    let mut bad_sum = hand_made("f", &[], b"00000000005\0");
    bad_sum[0] = b'g';
    for (name, bytes) in [("bad-size-1.0.tar", bad_size), ("bad-sum-1.0.tar", bad_sum)] {
        let tar = d.join(name);
        fs::write(&tar, bytes).unwrap();
        match archive::inspect(&tar, name, &limits) {
            Err(archive::ArchiveError::Corrupt(m)) => assert!(!m.is_empty()),
            other => panic!("{name}: expected a corrupt archive, got {other:?}"),
        }
    }
}

/// Names longer than PATH_MAX (which no tool could extract) are refused as too large; one
/// just under it publishes.
#[test]
fn overlong_entry_names_are_refused() {
    let tmp = scratch_dir("longname");
    let d = tmp.path();
    for (file, len) in [("long-1.0.tar", 4000), ("toolong-1.0.tar", 5000)] {
        sh(
            d,
            &format!(
                "python3 -c 'import tarfile,io; t=tarfile.open(\"{file}\",\"w\",format=tarfile.PAX_FORMAT); \
                 i=tarfile.TarInfo(\"d/\"+\"x\"*{len}); i.size=1; t.addfile(i, io.BytesIO(b\"y\")); t.close()'"
            ),
        );
    }
    assert_eq!(inspect(&d.join("long-1.0.tar")).entries.len(), 1);
    match archive::inspect(
        &d.join("toolong-1.0.tar"),
        "toolong-1.0.tar",
        &Limits::default(),
    ) {
        Err(archive::ArchiveError::TooLarge(m)) => assert!(m.contains("4096"), "{m}"),
        other => panic!("expected too-large, got {other:?}"),
    }
}

fn hex_sha256(b: &[u8]) -> String {
    use sha2::Digest;
    hex(&sha2::Sha256::digest(b))
}

/// Removed when dropped, also when an assertion fails.
fn scratch_dir(name: &str) -> tempfile::TempDir {
    let d = tempfile::Builder::new()
        .prefix(&format!("repofs-archives-{name}-"))
        .tempdir()
        .unwrap();
    fs::set_permissions(d.path(), fs::Permissions::from_mode(0o755)).unwrap();
    d
}
