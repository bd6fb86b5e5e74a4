//! `cairnctl read PATH`: a file from the node, to stdout.

use std::process::ExitCode;

use api::machine::ReadFileRequest;

use crate::global::GlobalArgs;
use crate::session::{self, Session};
use crate::streams;

#[derive(clap::Args, Debug)]
#[command(after_help = "\
Examples:
  cairnctl -n 10.5.0.2 read /proc/cmdline
  cairnctl -n 10.5.0.2 read /system/state/config.yaml > running.yaml

Needs an admin certificate. Reads from one node at a time; the bytes are
written unchanged to standard output.")]
pub struct Args {
    /// The file to read.
    pub path: String,
}

pub async fn run(args: Args, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    // One node: bytes from several files cannot be told apart.
    if global.target()?.nodes.len() != 1 {
        anyhow::bail!("read works on one node at a time; pass a single node with -n");
    }
    let session = Session::open(global).await?;
    session.single("read")?;
    let request = ReadFileRequest { path: args.path };
    let results = streams::copy_to_stdout(&session, "ReadFile", |c| {
        let request = c.request(request.clone());
        async move { c.machine().read_file(request).await.map(|r| r.into_inner()) }
    })
    .await;
    Ok(session::report_errors(&results))
}
