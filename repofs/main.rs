//! `repofs`: the command-line tool (keys, listings, status). The mount arrives with the vfs.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use repofs::cli::{self, Common, ListedFile};

#[derive(Parser)]
#[command(
    name = "repofs",
    version,
    about = "A package repository that lives as a mounted filesystem"
)]
struct Cli {
    #[command(flatten)]
    common: Common,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Manage the OpenPGP keys allowed to upload.
    Keys {
        #[command(subcommand)]
        action: KeysCmd,
    },
    /// List published files.
    List {
        #[arg(long)]
        json: bool,
        /// Include archived (replaced or taken offline) files.
        #[arg(long)]
        all: bool,
        /// List directive-made symlinks instead of files.
        #[arg(long)]
        symlinks: bool,
    },
    /// Uploads pending, accepted and rejected, most recent first.
    Status {
        #[arg(long)]
        json: bool,
        /// How many verdicts to show.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
}

#[derive(Subcommand)]
enum KeysCmd {
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
}

fn main() -> ExitCode {
    cli::init_logging();
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("repofs: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let mut repo = cli.common.open()?;
    match cli.command {
        Command::Keys {
            action: KeysCmd::Add { dir, files },
        } => {
            for fpr in repofs::keys::add(&mut repo.catalog, &dir, &files)? {
                println!(
                    "{fpr} may upload to {}",
                    if dir.trim_matches('/').is_empty() {
                        "/"
                    } else {
                        &dir
                    }
                );
            }
        }
        Command::Keys {
            action: KeysCmd::List { json },
        } => {
            let keys = repofs::keys::list(&repo.catalog)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&keys)?);
            } else {
                for k in keys {
                    let flags = if k.revoked { " [revoked]" } else { "" };
                    println!(
                        "{}{flags}  {}  dirs: {}",
                        k.fingerprint,
                        k.userids.first().map_or("", |s| s),
                        k.directories.join(", ")
                    );
                }
            }
        }
        Command::Keys {
            action: KeysCmd::Remove { fingerprint },
        } => {
            if !repofs::keys::remove(&mut repo.catalog, &fingerprint)? {
                eprintln!("repofs: no key {fingerprint}");
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::List {
            json,
            all,
            symlinks: true,
        } => {
            let _ = all;
            let links = repo.catalog.symlinks()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&links)?);
            } else {
                for l in links {
                    println!(
                        "{} -> {}",
                        repofs::paths::join(&l.directory, &l.name),
                        l.target
                    );
                }
            }
        }
        Command::List {
            json,
            all,
            symlinks: false,
        } => {
            let files: Vec<ListedFile> = repo
                .catalog
                .files(all)?
                .into_iter()
                .map(ListedFile::from)
                .collect();
            if json {
                println!("{}", serde_json::to_string_pretty(&files)?);
            } else {
                for f in files {
                    let archived = if f.state == "archived" {
                        "  [archived]"
                    } else {
                        ""
                    };
                    println!(
                        "{}  {:>12}  {}{archived}",
                        f.sha256,
                        f.size,
                        repofs::paths::join(&f.directory, &f.filename)
                    );
                }
            }
        }
        Command::Status { json, limit } => {
            let entries = repofs::ingest::status(&repo, limit)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&entries)?);
            } else {
                for e in entries {
                    let reason = e
                        .reason
                        .as_deref()
                        .map(|r| format!(" {r}"))
                        .unwrap_or_default();
                    println!(
                        "{:<8}{reason}  {}  {}",
                        e.state,
                        e.files.join(" "),
                        e.message
                    );
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
