//! `cairnctl logs <id> [-f] [--tail N]`: a service's log ring.

use std::process::ExitCode;

use api::machine::LogsRequest;

use crate::global::GlobalArgs;
use crate::session::{self, Session};
use crate::streams;

#[derive(clap::Args, Debug)]
#[command(after_help = "\
Examples:
  cairnctl -n 10.5.0.2 logs apid
  cairnctl -n 10.5.0.2 logs kubelet -f --tail 20
  cairnctl -n 10.5.0.2,10.5.0.3 logs etcd --tail 5
  cairnctl -n 10.5.0.2 logs -k kube-system/kube-apiserver-cp1/kube-apiserver --tail 20

Each supervised service keeps its recent output in a ring buffer on the node;
`cairnctl services` lists the services. With -k the id is
namespace/pod/container (or pod/container in the default namespace) and the
log is the kubelet's file of the container's latest run; `cairnctl containers
-k` lists them. With several nodes every line starts with its node.")]
pub struct Args {
    /// The service whose log to show.
    pub id: String,
    /// Keep printing new lines as they arrive.
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Only the last N lines (default: all the ring holds).
    #[arg(long, value_name = "N")]
    pub tail: Option<u32>,
    /// Kubernetes container logs (`namespace/pod/container`) instead of a
    /// service.
    #[arg(short = 'k', long)]
    pub kubernetes: bool,
}

/// The request for `args`.
pub fn request(args: &Args) -> LogsRequest {
    LogsRequest {
        id: args.id.clone(),
        follow: args.follow,
        tail_lines: args
            .tail
            .map(|n| i32::try_from(n).unwrap_or(i32::MAX))
            .unwrap_or(-1),
        kubernetes: args.kubernetes,
    }
}

pub async fn run(args: Args, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let session = Session::open(global).await?;
    let request = request(&args);
    let results = streams::copy_to_stdout(&session, "Logs", |c| {
        let request = c.request(request.clone());
        async move { c.machine().logs(request).await.map(|r| r.into_inner()) }
    })
    .await;
    Ok(session::report_errors(&results))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    #[test]
    fn tail_defaults_to_everything() {
        let r = request(&Cli::parse_from(["logs", "apid"]).args);
        assert_eq!((r.id.as_str(), r.follow, r.tail_lines), ("apid", false, -1));
        let r = request(&Cli::parse_from(["logs", "apid", "-f", "--tail", "20"]).args);
        assert_eq!((r.follow, r.tail_lines), (true, 20));
        assert!(Cli::try_parse_from(["logs", "apid", "--tail", "-3"]).is_err());
    }
}
