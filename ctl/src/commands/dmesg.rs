//! `cairnctl dmesg [-f]`: the kernel log.

use std::process::ExitCode;

use api::machine::DmesgRequest;

use crate::global::GlobalArgs;
use crate::session::{self, Session};
use crate::streams;

#[derive(clap::Args, Debug)]
#[command(after_help = "\
Examples:
  cairnctl -n 10.5.0.2 dmesg
  cairnctl -n 10.5.0.2 dmesg -f --tail

The node's kernel ring buffer, as /dev/kmsg holds it. With several nodes every
line starts with its node.")]
pub struct Args {
    /// Keep printing new messages as they arrive.
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// With -f: only messages from now on, not the ring's current contents.
    #[arg(long)]
    pub tail: bool,
}

pub async fn run(args: Args, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let session = Session::open(global).await?;
    let request = DmesgRequest {
        follow: args.follow,
        tail: args.tail,
    };
    let results = streams::copy_to_stdout(&session, "Dmesg", |c| {
        let request = c.request(request);
        async move { c.machine().dmesg(request).await.map(|r| r.into_inner()) }
    })
    .await;
    Ok(session::report_errors(&results))
}
