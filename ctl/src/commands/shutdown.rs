//! `cairnctl shutdown`: power nodes off.

use std::process::ExitCode;

use api::machine::ShutdownRequest;

use super::reboot::went_down;
use crate::global::GlobalArgs;
use crate::session::{self, Session};

#[derive(clap::Args, Debug)]
#[command(after_help = "\
Examples:
  cairnctl -n 10.5.0.2 shutdown
  cairnctl -n 10.5.0.2 shutdown --force

Needs an operator or admin certificate. The node stops its services, unmounts
its disks and powers off; it comes back only when powered on again.")]
pub struct Args {
    /// Skip the graceful steps (e.g. leaving etcd) when they fail.
    #[arg(long)]
    pub force: bool,
}

pub async fn run(args: Args, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let session = Session::open(global).await?;
    let request = ShutdownRequest { force: args.force };
    let results = session
        .each(|c| async move {
            match c.machine().shutdown(c.request(request)).await {
                Ok(_) => Ok(()),
                // Going down before answering is what was asked.
                Err(s) if went_down(&s) => Ok(()),
                Err(s) => Err(c.explain(&s, "Shutdown")),
            }
        })
        .await;
    for r in &results {
        if r.result.is_ok() {
            eprintln!("{}: shutting down", r.node);
        }
    }
    Ok(session::report_errors(&results))
}
