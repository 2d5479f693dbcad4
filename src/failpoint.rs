//! Named points where tests can freeze the daemon to kill it mid-operation.
//!
//! `REPOFS_FAILPOINT=NAME` makes the process announce `failpoint NAME reached` on stderr and
//! stop there (bounded: after 60 s it aborts, so a forgotten test never leaves a hang). Unset,
//! a failpoint costs one environment lookup.

pub fn hit(name: &str) {
    if std::env::var("REPOFS_FAILPOINT").is_ok_and(|v| v == name) {
        eprintln!("failpoint {name} reached");
        std::thread::sleep(std::time::Duration::from_secs(60));
        std::process::abort();
    }
}
