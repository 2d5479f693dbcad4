//! Every input the fuzzers (`scripts/fuzz`, `fuzz/`) ever failed on, replayed through the same
//! checks in the normal `cargo test`. Inputs live in `tests/fuzz-regressions/TARGET/`, one
//! file each, named after what they broke; the checks are `fuzz/src/lib.rs`, included here so
//! the test and the fuzz target cannot drift apart.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

#[allow(dead_code)] // the fuzz targets call these by name; here they go through `check_for`
#[path = "../fuzz/src/lib.rs"]
mod checks;

/// A fuzz input that once hung must fail here, not hang the test run.
const DEADLINE: Duration = Duration::from_secs(120);
/// Address space for the replaying child: a parser that allocates what a header field says
/// (gigabytes) fails here instead of passing on lazily mapped memory.
const MEMORY_LIMIT: u64 = 4 << 30;
/// Set in the child process that does the replaying.
const CHILD: &str = "REPOFS_FUZZ_REPLAY_CHILD";

fn inputs(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz-regressions")
        .join(target);
    let mut v: Vec<PathBuf> = match std::fs::read_dir(&dir) {
        Ok(rd) => rd.map(|e| e.expect("read_dir entry").path()).collect(),
        Err(_) => Vec::new(),
    };
    v.sort();
    v
}

/// Replays `target`'s inputs in a child (this test binary, running just this test) whose
/// address space is limited, and waits for it under a deadline.
fn replay(target: &str) {
    if std::env::var_os(CHILD).is_some() {
        return replay_here(target);
    }
    let mut cmd = Command::new(std::env::current_exe().expect("test binary"));
    cmd.args([target, "--exact", "--test-threads=1", "--nocapture"])
        .env(CHILD, "1");
    // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            let lim = libc::rlimit {
                rlim_cur: MEMORY_LIMIT,
                rlim_max: MEMORY_LIMIT,
            };
            if libc::setrlimit(libc::RLIMIT_AS, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    // Its output (a cargo test run of its own) is shown only when it fails.
    let log = tempfile::NamedTempFile::new().expect("child log");
    cmd.stdout(log.reopen().expect("log"))
        .stderr(log.reopen().expect("log"));
    let mut child = cmd.spawn().expect("spawn replay child");
    let start = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait for replay child") {
            break st;
        }
        if start.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            show(&log);
            panic!("{target}: replay gave no answer in {DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    if !status.success() {
        show(&log);
        panic!("{target}: replay failed ({status}), see its output above");
    }
}

fn show(log: &tempfile::NamedTempFile) {
    eprintln!(
        "{}",
        std::fs::read_to_string(log.path()).unwrap_or_default()
    );
}

/// Runs the target's check on each kept input, each on its own thread (so one panic does not
/// hide the next input), and names every input that failed.
fn replay_here(target: &str) {
    let check = checks::check_for(target).expect("known target");
    let mut failed = Vec::new();
    for path in inputs(target) {
        let data = std::fs::read(&path).expect("read regression input");
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        eprintln!("{target}: {name}");
        let (tx, rx) = mpsc::channel();
        let t = std::thread::spawn(move || {
            check(&data);
            let _ = tx.send(());
        });
        if rx.recv().is_err() {
            let _ = t.join();
            failed.push(format!("{name} (panic above)"));
        }
    }
    assert!(failed.is_empty(), "{target}: {failed:#?}");
}

macro_rules! targets {
    ($($t:ident),* $(,)?) => {
        $(
            #[test]
            fn $t() {
                replay(stringify!($t));
            }
        )*

        /// A directory with no test of its own would be inputs that silently never run.
        #[test]
        fn every_input_directory_has_a_test() {
            let known = [$(stringify!($t)),*];
            let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz-regressions");
            for e in std::fs::read_dir(root).expect("tests/fuzz-regressions") {
                let name = e.expect("entry").file_name().to_string_lossy().into_owned();
                assert!(known.contains(&name.as_str()), "no test replays {name}/");
            }
        }
    };
}

targets!(
    directive,
    meta_pkginfo,
    meta_tpm,
    meta_distpac,
    meta_cargo,
    meta_npm,
    meta_python,
    meta_deb_control,
    meta_filename,
    archive_inspect,
    gzindex,
    version_order,
);

/// A sparse member's bytes are not one run of the tar stream (GNU type `S`: the extents
/// only; pax `GNU.sparse.*`: a map, then the extents). The fuzzer found the GNU kind being
/// served as one run through the sha256 oracle (which now follows each entry's layout); pax
/// sparse members hash consistently either way, hence this direct check against GNU tar: each
/// file has the name and the bytes `tar -x` gives it, and sparse ones are laid out as runs.
#[test]
fn sparse_members_unpack_as_gnu_tar_unpacks_them() {
    use sha2::Digest;
    let sparse: Vec<PathBuf> = inputs("archive_inspect")
        .into_iter()
        .filter(|p| p.to_string_lossy().contains("sparse"))
        .collect();
    assert!(sparse.len() >= 4, "{sparse:?}");
    for p in sparse {
        let (r, _f) = checks::inspect_bytes(&std::fs::read(&p).expect("read input"));
        let insp = r
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
            .expect("an archive");
        let out = tempfile::tempdir().expect("tempdir");
        let st = std::process::Command::new("tar")
            .arg("-xf")
            .arg(&p)
            .arg("-C")
            .arg(out.path())
            .status()
            .expect("tar");
        assert!(st.success(), "tar -x {}", p.display());
        let mut runs = 0;
        for e in insp.entries.iter().filter(|e| e.sha256.is_some()) {
            let bytes = std::fs::read(out.path().join(&e.path))
                .unwrap_or_else(|err| panic!("{}: {}: {err}", p.display(), e.path));
            let sum: String = sha2::Sha256::digest(&bytes)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            assert_eq!(
                e.sha256.as_deref(),
                Some(sum.as_str()),
                "{}: {}",
                p.display(),
                e.path
            );
            runs += usize::from(matches!(e.layout, repofs::archive::Layout::Sparse(_)));
        }
        assert!(
            runs > 0,
            "{}: no member laid out as sparse runs",
            p.display()
        );
    }
}
