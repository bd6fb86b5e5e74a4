//! `cairnctl rollback`: boot the other slot (the system before the last
//! upgrade) from now on.

use std::process::ExitCode;
use std::time::Duration;

use super::apply_config::parse_duration;
use super::reboot::went_down;
use crate::global::GlobalArgs;
use crate::session::{self, Session};
use crate::wait;

#[derive(clap::Args, Debug)]
#[command(after_help = "\
Examples:
  cairnctl -n 10.5.0.2 rollback
  cairnctl -n 10.5.0.2 rollback --wait

The node makes its other slot the default and reboots into it. Refused when
the other slot holds no complete system (a node never upgraded). Needs an
admin certificate.")]
pub struct Args {
    /// Wait until the nodes are back.
    #[arg(long)]
    pub wait: bool,
    /// With --wait: how long a node may take to come back.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "10m")]
    pub timeout: Duration,
}

pub async fn run(args: Args, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let session = Session::open(global).await?;
    let results = session
        .each(|c| async move {
            match c.machine().rollback(c.request(())).await {
                Ok(_) => Ok(()),
                Err(s) if went_down(&s) => Ok(()),
                Err(s) => Err(c.explain(&s, "Rollback")),
            }
        })
        .await;
    let mut code = session::report_errors(&results);
    let accepted = session.accepted(&results);
    for c in &accepted {
        eprintln!("{}: rolling back to the other slot; rebooting", c.node);
    }
    if args.wait {
        let waited = wait::until_rebooted(&accepted, args.timeout).await;
        if session::report_errors(&waited) != ExitCode::SUCCESS {
            code = ExitCode::FAILURE;
        }
    }
    Ok(code)
}
