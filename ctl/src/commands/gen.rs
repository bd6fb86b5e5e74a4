//! `cairnctl gen secrets|config` (being written).
use std::process::ExitCode;
use crate::global::GlobalArgs;

#[derive(clap::Subcommand)]
pub enum GenCommand {
    /// Generate a secrets bundle.
    Secrets,
}

pub async fn run(_c: GenCommand, _g: &GlobalArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("gen: not written yet")
}
