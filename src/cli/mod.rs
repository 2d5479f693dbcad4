//! The `repofs` command line over the library: one module per command family, each with its
//! flags (clap `Args`), its calls into the library and its output (plain text for people,
//! `--json` for scripts). The binaries only parse arguments and dispatch here, so every
//! command's behaviour sits in the library, where it can be read and tested with the rest.
//!
//! This is the top layer: it may use anything in the crate, and nothing uses it but the
//! binaries.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::config::{Config, DEFAULT_ROOT};
use crate::repo::Repo;

/// `writeln!` to a command's output; errors (a closed pipe) propagate to the caller.
macro_rules! out {
    ($o:expr, $($arg:tt)*) => { writeln!($o, $($arg)*)? };
}

pub mod fetch;
pub mod files;
pub mod install;
pub mod keys;
pub mod mount;
pub mod trust;

/// The options every command of both binaries takes.
#[derive(Debug, Clone, clap::Args)]
pub struct Common {
    /// State directory: catalog, content store, keyrings, spool, quarantine.
    #[arg(long, env = "REPOFS_ROOT", default_value = DEFAULT_ROOT, global = true)]
    pub root: PathBuf,
    /// TOML settings file; every setting has an embedded default.
    #[arg(long, env = "REPOFS_CONFIG", global = true)]
    pub config: Option<PathBuf>,
}

impl Common {
    pub fn open(&self) -> anyhow::Result<Repo> {
        Repo::open(&self.root, Config::load(self.config.as_deref())?)
    }
}

/// Logs to stderr; `RUST_LOG` overrides the level.
pub fn init_logging() {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    // Colour only for people: logs redirected to files and journald stay plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .try_init();
}

/// A command's output: stdout, buffered (a listing is many small writes).
fn stdout() -> std::io::BufWriter<std::io::StdoutLock<'static>> {
    std::io::BufWriter::new(std::io::stdout().lock())
}

/// Prints `--json` output: pretty, one value, then a newline.
fn json(o: &mut impl Write, v: &impl serde::Serialize) -> anyhow::Result<()> {
    out!(o, "{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// A command's result as `repofs`'s exit status, its error (if any) on stderr: with the
/// stable reason code in front for install and dependency errors.
pub fn exit_code(result: anyhow::Result<ExitCode>) -> ExitCode {
    match result {
        Ok(code) => code,
        // `repofs list | head`: the reader has gone, which ends our output, not an error.
        Err(e)
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            ExitCode::SUCCESS
        }
        Err(e) => {
            if let Some(ie) = e.downcast_ref::<crate::install::InstallError>() {
                eprintln!("repofs: {}: {ie}", ie.code());
            } else if let Some(de) = e.downcast_ref::<crate::deps::DepsError>() {
                eprintln!("repofs: {}: {de}", de.code());
            } else {
                eprintln!("repofs: {e:#}");
            }
            ExitCode::FAILURE
        }
    }
}
