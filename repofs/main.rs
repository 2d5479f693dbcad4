//! `repofs`: the command-line tool (keys, listings, status). The mount arrives with the vfs.

use std::io::Write;
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

/// `writeln!` to the command's output; errors (a closed pipe) propagate to `main`.
macro_rules! out {
    ($o:expr, $($arg:tt)*) => { writeln!($o, $($arg)*)? };
}

fn main() -> ExitCode {
    cli::init_logging();
    match run(Cli::parse()) {
        Ok(code) => code,
        // `repofs list | head`: the reader has gone, which ends our output, not an error.
        Err(e)
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("repofs: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let mut repo = cli.common.open()?;
    let stdout = std::io::stdout();
    let mut o = std::io::BufWriter::new(stdout.lock());
    match cli.command {
        Command::Keys {
            action: KeysCmd::Add { dir, files },
        } => {
            for fpr in repofs::keys::add(&mut repo.catalog, &dir, &files)? {
                out!(
                    o,
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
                out!(o, "{}", serde_json::to_string_pretty(&keys)?);
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
                out!(o, "{}", serde_json::to_string_pretty(&links)?);
            } else {
                for l in links {
                    out!(
                        o,
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
                out!(o, "{}", serde_json::to_string_pretty(&files)?);
            } else {
                for f in files {
                    let archived = if f.state == "archived" {
                        "  [archived]"
                    } else {
                        ""
                    };
                    out!(
                        o,
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
                out!(o, "{}", serde_json::to_string_pretty(&entries)?);
            } else {
                for e in entries {
                    let reason = e
                        .reason
                        .as_deref()
                        .map(|r| format!(" {r}"))
                        .unwrap_or_default();
                    out!(
                        o,
                        "{:<8}{reason}  {}  {}",
                        e.state,
                        e.files.join(" "),
                        e.message
                    );
                }
            }
        }
    }
    o.flush()?;
    Ok(ExitCode::SUCCESS)
}
