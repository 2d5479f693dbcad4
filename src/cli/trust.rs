//! `repofs trust`: local uids that may publish a lone unsigned file through the mount, per
//! directory. Grants live in the catalog, where repofsd reads them at each decision (no
//! restart), with the same effect as a `[[trusted]]` block of the config, which still counts.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;

use super::{json, stdout, Common};

#[derive(clap::Subcommand)]
pub enum TrustCmd {
    /// Let UID publish unsigned files (copied through the mount) to DIRECTORY and below;
    /// `--dir /` means everywhere.
    Add {
        #[arg(long)]
        dir: String,
        uid: u32,
    },
    /// Show the trusted uids and their directories (those granted here; the config's
    /// `[[trusted]]` blocks are listed as `config`).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Withdraw the grant of UID for DIRECTORY (as it was added).
    Remove {
        #[arg(long)]
        dir: String,
        uid: u32,
    },
}

/// A directory as people read it: the grant of everything is `/`.
fn shown(dir: &str) -> &str {
    if dir.is_empty() {
        "/"
    } else {
        dir
    }
}

/// One line of `repofs trust list --json`.
#[derive(serde::Serialize)]
struct Listed {
    uid: u32,
    directory: String,
    /// `catalog` (granted by `repofs trust add`) or `config` (a `[[trusted]]` block).
    source: &'static str,
    added_at: Option<String>,
}

pub fn run(common: &Common, cmd: TrustCmd) -> anyhow::Result<ExitCode> {
    let mut repo = common.open()?;
    let mut o = stdout();
    let grant = |dir: &str| {
        crate::paths::grant(dir)
            .map_err(|why| anyhow::anyhow!(why))
            .with_context(|| format!("directory {dir:?}"))
    };
    match cmd {
        TrustCmd::Add { dir, uid } => {
            let d = grant(&dir)?;
            repo.catalog.trust_uid(uid, &d)?;
            out!(o, "uid {uid} may upload unsigned files to {}", shown(&d));
        }
        TrustCmd::Remove { dir, uid } => {
            let d = grant(&dir)?;
            if !repo.catalog.untrust_uid(uid, &d)? {
                eprintln!("repofs: uid {uid} is not trusted for {}", shown(&d));
                return Ok(ExitCode::FAILURE);
            }
            out!(o, "uid {uid} no longer trusted for {}", shown(&d));
        }
        TrustCmd::List { json: as_json } => {
            let mut all: Vec<Listed> = repo
                .catalog
                .trusted_uids()?
                .into_iter()
                .map(|t| Listed {
                    uid: t.uid,
                    directory: shown(&t.directory).to_string(),
                    source: "catalog",
                    added_at: Some(crate::time::rfc3339(t.added_at)),
                })
                .collect();
            for t in &repo.config.trusted {
                for d in &t.directories {
                    all.push(Listed {
                        uid: t.uid,
                        directory: shown(d).to_string(),
                        source: "config",
                        added_at: None,
                    });
                }
            }
            if as_json {
                json(&mut o, &all)?;
            } else {
                for t in all {
                    out!(o, "{}  {}  ({})", t.uid, t.directory, t.source);
                }
            }
        }
    }
    o.flush()?;
    Ok(ExitCode::SUCCESS)
}
