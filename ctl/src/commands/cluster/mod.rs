//! `cairnctl cluster create|destroy|show`: local clusters of QEMU VMs on a
//! private network this machine builds itself (crate `provision`). One file
//! per verb; `hub` is the private network's switch, started by `create`.

use std::process::ExitCode;

use crate::global::GlobalArgs;

pub mod bringup;
pub mod configs;
pub mod create;
pub mod destroy;
pub mod hub;
pub mod progress;
pub mod show;
pub mod summary;
pub mod wait;

#[derive(clap::Subcommand)]
#[command(after_help = "\
Examples:
  cairnctl cluster create --controlplanes 1 --workers 1 --name demo
  cairnctl cluster show --name demo
  cairnctl cluster destroy --name demo")]
pub enum ClusterCommand {
    /// Boot a local cluster in QEMU: VMs on a private network, configs
    /// generated and applied, bootstrapped, kubeconfig written.
    Create(Box<create::Args>),
    /// Stop a local cluster's VMs and remove everything of it.
    Destroy(destroy::Args),
    /// List a local cluster's nodes, addresses, ports and processes.
    Show(show::Args),
    /// The private network's switch (started by `create`).
    #[command(hide = true)]
    Hub(hub::Args),
}

pub async fn run(c: ClusterCommand, _global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    match c {
        ClusterCommand::Create(a) => create::run(*a).await,
        ClusterCommand::Destroy(a) => destroy::run(a),
        ClusterCommand::Show(a) => show::run(a),
        ClusterCommand::Hub(a) => hub::run(a),
    }
}
