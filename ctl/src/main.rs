//! cairnctl: the only way to manage a Cairn node. One file per verb under
//! `commands/`.

mod client;
mod commands;
mod global;

use clap::Parser;

#[derive(Parser)]
#[command(
    name = "cairnctl",
    version = config::version::VERSION,
    about = "Manage Cairn nodes and clusters through the machine API",
    propagate_version = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: global::GlobalArgs,
    #[command(subcommand)]
    pub command: commands::Command,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    match runtime.block_on(commands::run(cli.command, cli.global)) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
