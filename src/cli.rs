//! What the binaries share: the common `--root`/`--config` options, logging set-up, and the
//! output of the read-only commands. Argument parsing stays in the binaries.

use std::path::PathBuf;

use serde::Serialize;

use crate::catalog::FileRow;
use crate::config::{Config, DEFAULT_ROOT};
use crate::repo::Repo;

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

/// A published file as `repofs list --json` prints it.
#[derive(Debug, Serialize)]
pub struct ListedFile {
    pub directory: String,
    pub filename: String,
    pub kind: String,
    pub name: Option<String>,
    pub version: Option<String>,
    pub size: u64,
    pub sha256: String,
    pub md5: String,
    pub uploader: String,
    pub upload_id: i64,
    pub published_at: String,
    pub state: String,
    pub archived_at: Option<String>,
}

impl From<FileRow> for ListedFile {
    fn from(f: FileRow) -> Self {
        ListedFile {
            directory: f.directory,
            filename: f.filename,
            kind: f.kind,
            name: f.name,
            version: f.version,
            size: f.size,
            sha256: f.sha256,
            md5: f.md5,
            uploader: f.uploader,
            upload_id: f.upload_id,
            published_at: crate::time::rfc3339(f.published_at),
            state: f.state,
            archived_at: f.archived_at.map(crate::time::rfc3339),
        }
    }
}
