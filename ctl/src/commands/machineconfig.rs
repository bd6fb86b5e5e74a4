//! `cairnctl machineconfig patch` (being written).
use std::process::ExitCode;
use crate::global::GlobalArgs;

#[derive(clap::Subcommand)]
pub enum MachineconfigCommand {
    /// Patch a machine config.
    Patch,
}

pub async fn run(_c: MachineconfigCommand, _g: &GlobalArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("machineconfig: not written yet")
}
