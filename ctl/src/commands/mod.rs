//! One module per verb.

use std::process::ExitCode;

use crate::global::GlobalArgs;

pub mod completion;
pub mod gen;
pub mod machineconfig;
pub mod validate;
pub mod version;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Generate secrets and machine configs.
    #[command(subcommand)]
    Gen(gen::GenCommand),
    /// Check a machine config file.
    Validate(validate::Args),
    /// Work on machine config files (patch).
    #[command(subcommand)]
    Machineconfig(machineconfig::MachineconfigCommand),
    /// Print a shell completion script.
    Completion(completion::Args),
    /// Print client and server versions.
    Version(version::Args),
}

pub async fn run(command: Command, global: GlobalArgs) -> anyhow::Result<ExitCode> {
    match command {
        Command::Gen(c) => gen::run(c, &global).await,
        Command::Validate(a) => validate::run(a, &global).await,
        Command::Machineconfig(c) => machineconfig::run(c, &global).await,
        Command::Completion(a) => completion::run(a),
        Command::Version(a) => version::run(a, &global).await,
    }
}
