//! `cairnctl confirm`: keep a config applied with `--mode try`.

use std::process::ExitCode;

use crate::global::GlobalArgs;
use crate::session::{self, Session};

#[derive(clap::Args, Debug)]
#[command(after_help = "\
Examples:
  cairnctl -n 10.5.0.2 apply-config -f new.yaml --mode try --timeout 5m
  cairnctl -n 10.5.0.2 confirm

Without confirmation a config applied with --mode try is reverted when its
timeout ends. Needs an admin certificate.")]
pub struct Args {}

pub async fn run(_args: Args, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let session = Session::open(global).await?;
    let results = session
        .each(|c| async move {
            c.call("ConfirmConfiguration", (), |mut m, r| async move {
                m.confirm_configuration(r).await
            })
            .await
        })
        .await;
    for r in &results {
        if r.result.is_ok() {
            println!("{}: config confirmed; it stays", r.node);
        }
    }
    Ok(session::report_errors(&results))
}
