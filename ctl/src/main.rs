//! cairnctl: the only way to manage a Cairn node. One file per verb under
//! `commands/`.

mod client;
mod commands;
mod global;
mod oci_archive;
mod output;
mod session;
mod streams;
mod wait;

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

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Every verb and sub-verb, by its full path.
    fn verbs(cmd: &clap::Command, path: &str, out: &mut Vec<(String, clap::Command)>) {
        for sub in cmd.get_subcommands() {
            let name = format!("{path} {}", sub.get_name());
            out.push((name.clone(), sub.clone()));
            verbs(sub, &name, out);
        }
    }

    #[test]
    fn every_verb_has_help_with_an_example() {
        let mut cli = super::Cli::command();
        cli.build();
        let mut all = Vec::new();
        verbs(&cli, "cairnctl", &mut all);
        assert!(all.len() > 25, "{} verbs", all.len());
        for (name, mut cmd) in all {
            if name.split(' ').any(|w| w == "help") {
                continue;
            }
            let help = cmd.render_long_help().to_string();
            assert!(
                help.contains("Examples:\n  cairnctl "),
                "{name} has no example in --help:\n{help}"
            );
        }
    }

    #[test]
    fn the_cli_definition_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
