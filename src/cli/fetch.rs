//! `repofs fetch`: on a mirror, bring whole objects into the cache now rather than on first
//! read (the request goes to repofsd, which fetches from the swarm).

use std::process::ExitCode;

use super::Common;

/// `repofs fetch`'s arguments.
#[derive(clap::Args)]
pub struct FetchArgs {
    #[arg(required = true)]
    pub paths: Vec<String>,
}

pub fn fetch(common: &Common, args: &FetchArgs) -> anyhow::Result<ExitCode> {
    let repo = common.open()?;
    crate::fetch::client::fetch(&repo.layout, &repo.config, &args.paths)?;
    Ok(ExitCode::SUCCESS)
}
