//! `repofs keys`: who may upload where, and the repository's own key.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use super::{json, stdout, Common};

#[derive(clap::Subcommand)]
pub enum KeysCmd {
    /// Authorize the certs in armored (gpg --export --armor) or binary files for DIRECTORY and
    /// below; `--dir /` means everywhere.
    Add {
        #[arg(long)]
        dir: String,
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Show keys and their directories.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Remove a key (all its grants).
    Remove { fingerprint: String },
    /// Print the repository's own public key (armored), for mirrors and clients to pin.
    ExportRepo,
}

pub fn run(common: &Common, cmd: KeysCmd) -> anyhow::Result<ExitCode> {
    let mut repo = common.open()?;
    let mut o = stdout();
    match cmd {
        KeysCmd::Add { dir, files } => {
            let shown = if dir.trim_matches('/').is_empty() {
                "/"
            } else {
                &dir
            };
            for fpr in crate::keys::add(&mut repo.catalog, &dir, &files)? {
                out!(o, "{fpr} may upload to {shown}");
            }
        }
        KeysCmd::List { json: as_json } => {
            let keys = crate::keys::list(&repo.catalog)?;
            if as_json {
                json(&mut o, &keys)?;
            } else {
                for k in keys {
                    let flags = if k.revoked { " [revoked]" } else { "" };
                    out!(
                        o,
                        "{}{flags}  {}  dirs: {}",
                        k.fingerprint,
                        k.userids.first().map_or("", |s| s),
                        k.directories.join(", ")
                    );
                }
            }
        }
        KeysCmd::ExportRepo => {
            o.write_all(&crate::keys::export_repo(&repo.layout.repo_key())?)?;
        }
        KeysCmd::Remove { fingerprint } => {
            if !crate::keys::remove(&mut repo.catalog, &fingerprint)? {
                eprintln!("repofs: no key {fingerprint}");
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    o.flush()?;
    Ok(ExitCode::SUCCESS)
}
