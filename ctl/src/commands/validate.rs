//! `cairnctl validate` (being written).
use std::process::ExitCode;
use crate::global::GlobalArgs;

#[derive(clap::Args)]
pub struct Args {}

pub async fn run(_a: Args, _g: &GlobalArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("validate: not written yet")
}
