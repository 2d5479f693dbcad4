//! `repofs list` and `repofs status`: what the repository holds, and what became of uploads
//! (on a mirror: how it follows its upstream).

use std::io::Write;
use std::process::ExitCode;

use super::{json, stdout, Common};
use crate::paths::join;

/// `repofs list`'s flags.
#[derive(clap::Args)]
pub struct ListArgs {
    #[arg(long)]
    pub json: bool,
    /// Include archived (replaced or taken offline) files.
    #[arg(long)]
    pub all: bool,
    /// List directive-made symlinks instead of files.
    #[arg(long)]
    pub symlinks: bool,
}

/// Published files (or symlinks): `sha256  size  path`, or `catalog::FileRow`s as JSON.
pub fn list(common: &Common, args: &ListArgs) -> anyhow::Result<ExitCode> {
    let repo = common.open()?;
    let mut o = stdout();
    if args.symlinks {
        let links = repo.catalog.symlinks()?;
        if args.json {
            json(&mut o, &links)?;
        } else {
            for l in links {
                out!(o, "{} -> {}", join(&l.directory, &l.name), l.target);
            }
        }
    } else {
        let files = repo.catalog.files(args.all)?;
        if args.json {
            json(&mut o, &files)?;
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
                    join(&f.directory, &f.filename)
                );
            }
        }
    }
    o.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// Store objects refused from seeding because a read found them changed since publication
/// (`fetch::seed`), first in a primary's status: one entry each, naming its published files.
fn corrupt_entries(
    catalog: &crate::catalog::Catalog,
) -> anyhow::Result<Vec<crate::ingest::StatusEntry>> {
    let s = crate::fetch::status::primary_status(catalog)?;
    Ok(s.corrupt_objects
        .into_iter()
        .map(|c| crate::ingest::StatusEntry {
            id: None,
            state: "corrupt",
            files: c.paths,
            reason: Some("corrupt-object".into()),
            message: format!(
                "store object {} changed since publication ({}): not seeded until its bytes \
                 match again (checked at repofsd's start)",
                c.row.sha256, c.row.why
            ),
            directory: None,
            uploader: None,
            quarantine: None,
            time: c.found,
        })
        .collect())
}

/// `repofs status`'s flags.
#[derive(clap::Args)]
pub struct StatusArgs {
    #[arg(long)]
    pub json: bool,
    /// How many verdicts to show.
    #[arg(long, default_value_t = 100)]
    pub limit: usize,
}

/// On a mirror, its state (`fetch::status`); else uploads pending, then verdicts.
pub fn status(common: &Common, args: &StatusArgs) -> anyhow::Result<ExitCode> {
    let repo = common.open()?;
    let mut o = stdout();
    if let Some(m) = crate::fetch::status::mirror_status(&repo.layout, &repo.catalog)? {
        if args.json {
            json(&mut o, &m)?;
        } else {
            write!(o, "{}", crate::fetch::status::render(&m))?;
        }
    } else {
        let mut entries = corrupt_entries(&repo.catalog)?;
        entries.extend(crate::ingest::status(&repo, args.limit)?);
        if args.json {
            json(&mut o, &entries)?;
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
    o.flush()?;
    Ok(ExitCode::SUCCESS)
}
