//! dists/ and pkgs/: what publication shows, read through the mount.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::process::Command;

use crate::common::{digest::*, packages::*, process::*, site::*, world::*};

#[test]
fn published_files_show_in_dists_with_checksums_that_verify() {
    let s = Site::new();
    let hello = s.mnt.path("dists/hello");
    // The baseline publication is there from the start.
    assert!(hello.join("hello-1.0.tar.gz").is_file());
    assert!(hello.join("hello-1.0.tar.gz.sig").is_file());
    let d = s.w.scratch("sums");
    let tgz = make_tarball(&d, "hello", "1.1");
    let sig = s.w.gpg.sign(ALICE, &tgz, false, &[]);
    fs::create_dir_all(s.incoming().join("hello")).unwrap();
    let out = cp(&[&tgz, &sig], &s.incoming().join("hello"));
    assert!(out.status.success(), "cp: {}", stderr(&out));
    s.daemon
        .wait_published(&s.w.repo, "hello", "hello-1.1.tar.gz");
    wait_for(
        "dists to show the new file",
        std::time::Duration::from_secs(5),
        || hello.join("hello-1.1.tar.gz").exists().then_some(()),
    );
    // The bytes read through dists/ are the uploaded ones.
    assert_eq!(
        fs::read(hello.join("hello-1.1.tar.gz")).unwrap(),
        fs::read(&tgz).unwrap()
    );
    for (tool, sums) in [("sha256sum", "SHA256SUMS"), ("md5sum", "MD5SUMS")] {
        let out = Command::new(tool)
            .args(["-c", "--strict", sums])
            .current_dir(&hello)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{tool} -c: {}{}",
            String::from_utf8_lossy(&out.stdout),
            stderr(&out)
        );
        let listed = String::from_utf8_lossy(&out.stdout);
        assert!(listed.contains("hello-1.1.tar.gz: OK"), "{listed}");
        assert!(listed.contains("hello-1.0.tar.gz.sig: OK"), "{listed}");
    }
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(hello.join("index.json")).unwrap()).unwrap();
    let files = index["files"].as_array().unwrap();
    let pkg = files
        .iter()
        .find(|f| f["filename"] == "hello-1.1.tar.gz")
        .unwrap();
    assert_eq!(pkg["name"], "hello");
    assert_eq!(pkg["version"], "1.1");
    assert_eq!(pkg["sha256"], tool_hash("sha256sum", &tgz));
    assert_eq!(index["directory"], "hello");
    // ...and the package tree, with `latest` at the higher version.
    assert_eq!(
        fs::read_link(s.mnt.path("pkgs/hello/latest"))
            .unwrap()
            .to_str(),
        Some("1.1")
    );
    assert_eq!(
        fs::read_to_string(s.mnt.path("pkgs/hello/latest/hello-1.1/README")).unwrap(),
        "hello 1.1\n"
    );
}

/// `tar -c` of a pkgs/ tree equals the archive entry by entry (names, types, modes, sizes,
/// mtimes, link targets) and byte by byte, for plain, gzip (seek points) and zstd (cache).
#[test]
fn tar_of_a_pkgs_tree_matches_the_archive() {
    let s = Site::new();
    let d = s.w.scratch("tarcmp");
    // A richer tree: nested dirs, empty file, executable, symlinks, a hard link, odd modes.
    sh(&d, "mkdir -p src/t-2.0/a/b/c src/t-2.0/empty && cd src/t-2.0 \
        && head -c 3000000 /dev/urandom | od -x > a/b/c/big && : > a/zero \
        && printf '#!/bin/sh\\n' > a/run && chmod 755 a/run && chmod 600 a/zero \
        && ln -s b/c/big a/link && ln a/b/c/big a/hard && touch -d '2001-02-03 04:05:06Z' a/run \
        && cd .. && tar --format=gnu -cf ../t-2.0.tar t-2.0 && gzip -9 < ../t-2.0.tar > ../t-2.1.tar.gz \
        && zstd -q < ../t-2.0.tar > ../t-2.2.tar.zst");
    s.w.repo.add_key("t", &s.w.gpg.export(ALICE, &s.w.work));
    fs::create_dir_all(s.incoming().join("t")).unwrap();
    for file in ["t-2.0.tar", "t-2.1.tar.gz", "t-2.2.tar.zst"] {
        let f = d.join(file);
        let sig = s.w.gpg.sign(ALICE, &f, false, &[]);
        let out = cp(&[&f, &sig], &s.incoming().join("t"));
        assert!(out.status.success(), "cp: {}", stderr(&out));
        s.daemon.wait_published(&s.w.repo, "t", file);
    }
    let listing = |tar: &std::path::Path| {
        let out = Command::new("tar")
            .args(["--numeric-owner", "-tvf"])
            .arg(tar)
            .output()
            .unwrap();
        assert!(out.status.success(), "tar: {}", stderr(&out));
        let mut lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            // Hard links: the archive records the second name as a link; through the mount
            // both names are files with the same bytes (compared below).
            .filter(|l| !l.contains("t-2.0/a/hard") && !l.contains("t-2.0/a/b/c/big"))
            .map(|l| l.trim_end_matches('/').to_string())
            .collect();
        lines.sort();
        lines
    };
    let want = listing(&d.join("t-2.0.tar"));
    sh(&d, "mkdir -p x && tar -C x -xf t-2.0.tar");
    for v in ["2.0", "2.1", "2.2"] {
        let tree = s.mnt.path(&format!("pkgs/t/{v}"));
        let mounted = d.join(format!("mounted-{v}.tar"));
        sh(
            &d,
            &format!(
                "tar --format=gnu -C {} -cf {} t-2.0",
                tree.display(),
                mounted.display()
            ),
        );
        assert_eq!(listing(&mounted), want, "version {v}");
        sh(&d, &format!("diff -r x/t-2.0 {}/t-2.0", tree.display()));
        assert_eq!(
            fs::read(tree.join("t-2.0/a/hard")).unwrap(),
            fs::read(tree.join("t-2.0/a/b/c/big")).unwrap()
        );
        let m = fs::metadata(tree.join("t-2.0/a/run")).unwrap();
        assert_eq!(m.mode() & 0o7777, 0o755);
        assert_eq!(m.mtime(), 981173106);
    }
    assert_eq!(
        fs::read_link(s.mnt.path("pkgs/t/latest")).unwrap().to_str(),
        Some("2.2")
    );
}

#[test]
fn read_only_views_refuse_writes_with_erofs() {
    let s = Site::new();
    let before = s.w.repo.snapshot();
    let erofs = |r: std::io::Result<()>| {
        assert_eq!(r.err().and_then(|e| e.raw_os_error()), Some(libc::EROFS));
    };
    let f = s.mnt.path("dists/hello/hello-1.0.tar.gz");
    erofs(fs::OpenOptions::new().write(true).open(&f).map(|_| ()));
    erofs(fs::remove_file(&f));
    erofs(fs::write(s.mnt.path("dists/hello/new"), b"x"));
    erofs(fs::create_dir(s.mnt.path("dists/hello/sub")));
    erofs(fs::create_dir(s.mnt.path("pkgs/x")));
    erofs(fs::write(
        s.mnt.path("pkgs/hello/1.0/hello-1.0/README"),
        b"x",
    ));
    erofs(fs::rename(&f, s.mnt.path("dists/hello/moved")));
    let out = Command::new("touch").arg(&f).output().unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("Read-only file system"),
        "{}",
        stderr(&out)
    );
    assert_eq!(s.w.repo.snapshot(), before);
}

/// Listing a package tree reads no archive bytes: it comes from the catalog.
#[test]
fn listing_a_package_tree_touches_no_content() {
    let s = Site::new();
    let object = s.w.repo.root.join("store/objects");
    // Make the stored archive unreadable garbage: listings must not notice.
    let sha = s.w.repo.published("hello", "hello-1.0.tar.gz").unwrap()["sha256"]
        .as_str()
        .unwrap()
        .to_string();
    let obj = object.join(&sha[..2]).join(&sha);
    let saved = fs::read(&obj).unwrap();
    fs::write(&obj, b"not an archive").unwrap();
    let out = Command::new("find")
        .arg(s.mnt.path("pkgs/hello"))
        .arg("-ls")
        .output()
        .unwrap();
    assert!(out.status.success(), "find: {}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("hello-1.0/doc/manual.txt"), "{text}");
    let m = fs::metadata(s.mnt.path("pkgs/hello/1.0/hello-1.0/doc/manual.txt")).unwrap();
    assert_eq!(m.len(), 800);
    // Reading does touch it, and fails cleanly with EIO instead of serving garbage.
    let r = fs::read(s.mnt.path("pkgs/hello/1.0/hello-1.0/doc/manual.txt"));
    assert_eq!(r.err().and_then(|e| e.raw_os_error()), Some(libc::EIO));
    fs::write(&obj, saved).unwrap();
}

/// The mount keeps an inode only while the kernel does: once the kernel evicts a package
/// tree (drop_caches), its nodes are forgotten and come back under new numbers at the next
/// lookup, with the same contents, so a `find` over a large catalog does not stay resident.
#[test]
fn inodes_the_kernel_evicted_are_forgotten() {
    let s = Site::new();
    let file = s.mnt.path("pkgs/hello/1.0/hello-1.0/doc/manual.txt");
    let first = fs::metadata(&file).unwrap().ino();
    let evicted = wait_for_or(std::time::Duration::from_secs(10), || {
        fs::write("/proc/sys/vm/drop_caches", "2").unwrap();
        std::thread::sleep(std::time::Duration::from_millis(100));
        let now = fs::metadata(&file).unwrap().ino();
        (now != first).then_some(now)
    });
    assert!(
        evicted.is_some(),
        "inode {first} still known after the kernel dropped its caches"
    );
    assert_eq!(fs::read_to_string(&file).unwrap(), "read me\n".repeat(100));
}

/// Sparse members (old GNU and pax 1.0), bzip2, lzip and zip packages read back through
/// pkgs/ exactly as their own unpackers unpack them, sequentially (`diff -r`) and at random
/// offsets (`dd skip=` into a hole, into a data run, into the middle of a deflated member).
#[test]
fn new_formats_and_sparse_members_read_as_their_unpackers_unpack_them() {
    let s = Site::new();
    let d = s.w.scratch("formats");
    sh(
        &d,
        "mkdir -p src/f-1.0/sub && cd src/f-1.0 && truncate -s 5M sub/holes \
         && head -c 70000 /dev/urandom | dd of=sub/holes bs=4096 seek=300 conv=notrunc status=none \
         && printf tail | dd of=sub/holes bs=1 seek=5242876 conv=notrunc status=none \
         && seq 1 200000 > counted && head -c 200000 /dev/urandom > random \
         && ln -s counted link && chmod 750 sub && cd .. \
         && tar --format=gnu --sparse -cf ../f-1.0.tar f-1.0 \
         && tar --format=pax --sparse --sparse-version=1.0 -cf ../f-1.1.tar f-1.0 \
         && tar --format=gnu -cf - f-1.0 | bzip2 > ../f-1.2.tar.bz2 \
         && tar --format=gnu -cf - f-1.0 | lzip > ../f-1.3.tar.lz \
         && zip -qry ../f-1.4.zip f-1.0 && cd .. && mkdir x && tar -C x -xf f-1.0.tar",
    );
    s.w.repo.add_key("f", &s.w.gpg.export(ALICE, &s.w.work));
    fs::create_dir_all(s.incoming().join("f")).unwrap();
    let files = [
        "f-1.0.tar",
        "f-1.1.tar",
        "f-1.2.tar.bz2",
        "f-1.3.tar.lz",
        "f-1.4.zip",
    ];
    for file in files {
        let f = d.join(file);
        let sig = s.w.gpg.sign(ALICE, &f, false, &[]);
        let out = cp(&[&f, &sig], &s.incoming().join("f"));
        assert!(out.status.success(), "cp {file}: {}", stderr(&out));
        s.daemon.wait_published(&s.w.repo, "f", file);
    }
    let dd = |file: &std::path::Path, skip: u64, count: u64| {
        let out = Command::new("dd")
            .arg(format!("if={}", file.display()))
            .args(["bs=1", "status=none"])
            .arg(format!("skip={skip}"))
            .arg(format!("count={count}"))
            .output()
            .unwrap();
        assert!(out.status.success(), "dd: {}", stderr(&out));
        out.stdout
    };
    for v in ["1.0", "1.1", "1.2", "1.3", "1.4"] {
        let tree = s.mnt.path(&format!("pkgs/f/{v}/f-1.0"));
        sh(&d, &format!("diff -r x/f-1.0 {}", tree.display()));
        for (file, skip, count) in [
            ("sub/holes", 1000, 3000),
            ("sub/holes", 300 * 4096 - 10, 5000),
            ("sub/holes", 5242870, 100),
            ("counted", 700_001, 777),
            ("random", 150_000, 4096),
            ("counted", 3, 10),
        ] {
            assert_eq!(
                dd(&tree.join(file), skip, count),
                dd(&d.join("x/f-1.0").join(file), skip, count),
                "{v}: {file} at {skip}"
            );
        }
        let m = fs::metadata(tree.join("sub")).unwrap();
        assert_eq!(m.mode() & 0o7777, 0o750, "{v}");
        assert_eq!(fs::metadata(tree.join("sub/holes")).unwrap().len(), 5 << 20);
        assert_eq!(
            fs::read_link(tree.join("link")).unwrap().to_str(),
            Some("counted")
        );
    }
}

/// npm scoped packages (`@scope/name`) show as pkgs/@scope/name/VERSION, as node_modules lays
/// them out, beside unscoped ones; the tree is what `tar -x` of the npm tarball gives.
#[test]
fn npm_scoped_packages_show_under_their_scope() {
    let s = Site::new();
    let d = s.w.scratch("npm");
    sh(
        &d,
        "mkdir -p p && cd p \
         && printf '{\"name\":\"@repofs/scoped-tiny\",\"version\":\"1.2.0\",\"files\":[\"index.js\"]}\\n' > package.json \
         && echo 'module.exports = 1;' > index.js && npm pack --silent >/dev/null \
         && mv repofs-scoped-tiny-1.2.0.tgz .. && cd .. && mkdir x && tar -C x -xzf repofs-scoped-tiny-1.2.0.tgz",
    );
    let tgz = d.join("repofs-scoped-tiny-1.2.0.tgz");
    s.w.repo.add_key("npm", &s.w.gpg.export(ALICE, &s.w.work));
    let sig = s.w.gpg.sign(ALICE, &tgz, false, &[]);
    fs::create_dir_all(s.incoming().join("npm")).unwrap();
    let out = cp(&[&tgz, &sig], &s.incoming().join("npm"));
    assert!(out.status.success(), "cp: {}", stderr(&out));
    s.daemon
        .wait_published(&s.w.repo, "npm", "repofs-scoped-tiny-1.2.0.tgz");
    let pkgs = s.mnt.path("pkgs");
    let names: Vec<String> = wait_for(
        "the scope in pkgs/",
        std::time::Duration::from_secs(5),
        || {
            let names: Vec<String> = fs::read_dir(&pkgs)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            names.contains(&"@repofs".to_string()).then_some(names)
        },
    );
    assert!(names.contains(&"hello".to_string()), "{names:?}");
    let scope: Vec<String> = fs::read_dir(pkgs.join("@repofs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(scope, vec!["scoped-tiny".to_string()]);
    assert_eq!(
        fs::read_link(pkgs.join("@repofs/scoped-tiny/latest"))
            .unwrap()
            .to_str(),
        Some("1.2.0")
    );
    sh(
        &d,
        &format!(
            "diff -r x {}",
            pkgs.join("@repofs/scoped-tiny/1.2.0").display()
        ),
    );
    assert!(!pkgs.join("@nope").exists());
}

/// Directories are listed without OPENDIR or RELEASEDIR (the mount answers the first OPENDIR
/// with ENOSYS): each listing is taken at its first READDIR and paged from there. 80
/// directories of 300 entries each, read a page at a time in turn — more listings under way
/// than the mount keeps, so some are taken again half-way — still list exactly the names
/// packed, and the mount saw at most that one OPENDIR and no RELEASEDIR.
#[test]
fn listings_page_without_opendir_and_stay_exact() {
    let s = Site::new();
    let d = s.w.scratch("wide");
    sh(
        &d,
        "mkdir -p wide-1.0 && cd wide-1.0 \
         && for i in $(seq 80); do mkdir d$i; (cd d$i && touch $(seq -f 'a-rather-long-file-name-%05g' 300)); done \
         && cd .. && tar -czf wide-1.0.tar.gz wide-1.0",
    );
    s.w.repo.add_key("wide", &s.w.gpg.export(ALICE, &s.w.work));
    fs::create_dir_all(s.incoming().join("wide")).unwrap();
    let tgz = d.join("wide-1.0.tar.gz");
    let sig = s.w.gpg.sign(ALICE, &tgz, false, &[]);
    let out = cp(&[&tgz, &sig], &s.incoming().join("wide"));
    assert!(out.status.success(), "cp: {}", stderr(&out));
    s.daemon
        .wait_published(&s.w.repo, "wide", "wide-1.0.tar.gz");

    let tree = s.mnt.path("pkgs/wide/1.0/wide-1.0");
    // One open directory stream per directory, each read a page (getdents64 of 4 KiB, what
    // the kernel asks the mount for at least) at a time, in turn.
    let mut streams: Vec<(String, fs::File, bool)> = (1..=80)
        .map(|i| {
            let dir = fs::File::open(tree.join(format!("d{i}"))).unwrap();
            (format!("d{i}"), dir, false)
        })
        .collect();
    let mut listed = Vec::new();
    let mut buf = vec![0u8; 4096];
    while streams.iter().any(|s| !s.2) {
        for (name, dir, done) in streams.iter_mut().filter(|s| !s.2) {
            let n = getdents64(dir, &mut buf);
            *done = n == 0;
            listed.extend(dirents(&buf[..n]).map(|entry| format!("{name}/{entry}")));
        }
    }
    listed.sort_unstable();
    let mut want: Vec<String> = (1..=80)
        .flat_map(|i| (1..=300).map(move |j| format!("d{i}/a-rather-long-file-name-{j:05}")))
        .collect();
    want.sort_unstable();
    assert_eq!(listed.len(), 80 * 300);
    assert_eq!(listed, want);

    let stats = s.w.repo.root.join("mount-stats.json");
    let _ = fs::remove_file(&stats);
    unsafe { libc::kill(s.mnt.child.id() as i32, libc::SIGUSR1) };
    let counts = wait_for(
        "the mount's counts",
        std::time::Duration::from_secs(10),
        || fs::read_to_string(&stats).ok(),
    );
    let counts: serde_json::Value = serde_json::from_str(&counts).unwrap();
    let n = |k: &str| counts["requests"][k].as_u64().unwrap_or(0);
    assert!(n("readdirplus") + n("readdir") > 80 * 2, "{counts}");
    assert!(n("opendir") <= 1, "{counts}");
    assert_eq!(n("releasedir"), 0, "{counts}");
}

/// One getdents64(2) into `buf`: the bytes of directory entries it filled (0 at the end).
fn getdents64(dir: &fs::File, buf: &mut [u8]) -> usize {
    use std::os::fd::AsRawFd;
    // SAFETY: the kernel writes at most buf.len() bytes into buf.
    let n = unsafe {
        libc::syscall(
            libc::SYS_getdents64,
            dir.as_raw_fd(),
            buf.as_mut_ptr(),
            buf.len(),
        )
    };
    assert!(n >= 0, "getdents64: {}", std::io::Error::last_os_error());
    n as usize
}

/// The names in what getdents64(2) filled, without the dot entries.
fn dirents(mut buf: &[u8]) -> impl Iterator<Item = String> + '_ {
    std::iter::from_fn(move || loop {
        if buf.is_empty() {
            return None;
        }
        let reclen = u16::from_ne_bytes([buf[16], buf[17]]) as usize;
        let name = std::ffi::CStr::from_bytes_until_nul(&buf[19..reclen]).unwrap();
        let name = name.to_str().unwrap().to_string();
        buf = &buf[reclen..];
        if name != "." && name != ".." {
            return Some(name);
        }
    })
}

/// Every name in an open directory, read again from its start (as `rewinddir` does).
fn names_from_start(dir: &fs::File) -> Vec<String> {
    use std::os::fd::AsRawFd;
    // SAFETY: a seek on a descriptor we own.
    assert_eq!(
        unsafe { libc::lseek(dir.as_raw_fd(), 0, libc::SEEK_SET) },
        0
    );
    let mut buf = vec![0u8; 32 * 1024];
    let mut names = Vec::new();
    loop {
        let n = getdents64(dir, &mut buf);
        if n == 0 {
            return names;
        }
        names.extend(dirents(&buf[..n]));
    }
}

/// The mount tells the kernel itself when a publication changes the views. Directories opened
/// by path, never listed from their parents, had their attributes from a LOOKUP, which the
/// kernel keeps for a minute, and with them each directory's listing; read again from the
/// start, they still show each new publication.
#[test]
fn open_view_directories_read_again_show_each_new_publication() {
    let s = Site::new();
    let d = s.w.scratch("open");
    publish(&s, "hello", &make_tarball(&d, "hello", "1.0"));
    let pkgs = fs::File::open(s.mnt.path("pkgs/hello")).unwrap();
    let dists = fs::File::open(s.mnt.path("dists/hello")).unwrap();
    for v in ["1.1", "1.2"] {
        let file = format!("hello-{v}.tar.gz");
        assert!(!names_from_start(&pkgs).contains(&v.to_string()));
        assert!(!names_from_start(&dists).contains(&file));
        publish(&s, "hello", &make_tarball(&d, "hello", v));
        wait_for(
            &format!("{file} listed in the open dists/hello and pkgs/hello"),
            std::time::Duration::from_secs(20),
            || {
                let listed = names_from_start(&dists).contains(&file)
                    && names_from_start(&pkgs).contains(&v.to_string());
                listed.then_some(())
            },
        );
    }
}

/// Without OPENDIR the kernel keeps each directory's listing across opens. A publication
/// must still show in the listings of dists/ and pkgs/ taken before it, once the kernel asks
/// for the directory's attributes again (a second at most) and sees its time moved.
#[test]
fn listings_the_kernel_keeps_show_each_new_publication() {
    let s = Site::new();
    let d = s.w.scratch("kept");
    let names = |rel: &str| -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(s.mnt.path(rel))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort_unstable();
        v
    };
    publish(&s, "hello", &make_tarball(&d, "hello", "1.0"));
    for v in ["1.1", "1.2", "1.3"] {
        // Listed before the publication: each listing is now the kernel's to keep.
        assert!(!names("pkgs/hello").contains(&v.to_string()));
        assert!(names("pkgs").contains(&"hello".to_string()));
        let file = format!("hello-{v}.tar.gz");
        assert!(!names("dists/hello").contains(&file));
        publish(&s, "hello", &make_tarball(&d, "hello", v));
        wait_for(
            &format!("{file} listed in dists/hello and pkgs/hello"),
            std::time::Duration::from_secs(10),
            || {
                (names("dists/hello").contains(&file) && names("pkgs/hello").contains(&v.into()))
                    .then_some(())
            },
        );
    }
}
