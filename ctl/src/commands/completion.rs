//! `cairnctl completion <shell>`.
use std::process::ExitCode;

use clap::CommandFactory;

#[derive(clap::Args)]
#[command(after_help = "\
Examples:
  cairnctl completion bash > /etc/bash_completion.d/cairnctl
  cairnctl completion zsh > \"${fpath[1]}/_cairnctl\"")]
pub struct Args {
    /// Shell to generate the completion script for.
    pub shell: clap_complete::Shell,
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let mut cmd = crate::Cli::command();
    clap_complete::generate(a.shell, &mut cmd, "cairnctl", &mut std::io::stdout());
    Ok(ExitCode::SUCCESS)
}
