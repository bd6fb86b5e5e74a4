//! `cairnctl logs <id> [-f] [--tail N]`: a service's log ring; with
//! `--cluster`, a search of the cluster's log store (see `logs_cluster`).

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
  cairnctl -n 10.5.0.2 logs --cluster 'error OR timeout' --since 1h
  cairnctl -n 10.5.0.2 logs --cluster '\"connection refused\"' --namespace default -f
  cairnctl logs --cluster '' --pod web-7d4f --kubeconfig ~/.kube/config -o json

Each supervised service keeps its recent output in a ring buffer on the node;
`cairnctl services` lists the services. With -k the id is
namespace/pod/container (or pod/container in the default namespace) and the
log is the kubelet's file of the container's latest run; `cairnctl containers
-k` lists them. With several nodes every line starts with its node.

With --cluster the argument is a search of the cluster's log store (the
logging add-on): words (all must match), \"phrases\", OR, NOT, field:value
(namespace, pod, container, node, stream, service, labels.<name>); empty
matches everything. The newest --tail records (default 100) print oldest
first; -f then follows new matches. It talks to the Kubernetes API server
with the admin kubeconfig fetched from the node (or --kubeconfig).")]
pub struct Args {
    /// The service whose log to show; with --cluster, the search (may be '').
    #[arg(required_unless_present = "cluster")]
    pub id: Option<String>,
    /// Keep printing new lines as they arrive.
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Only the last N lines (default: all the ring holds).
    #[arg(long, value_name = "N")]
    pub tail: Option<u32>,
    /// Kubernetes container logs (`namespace/pod/container`) instead of a
    /// service.
    #[arg(short = 'k', long, conflicts_with = "cluster")]
    pub kubernetes: bool,
    /// Search the cluster's log store instead of one node's log.
    #[arg(long)]
    pub cluster: bool,
    #[command(flatten)]
    pub search: crate::commands::logs_cluster::SearchArgs,
}

/// The request for `args`.
pub fn request(args: &Args) -> LogsRequest {
    LogsRequest {
        id: args.id.clone().unwrap_or_default(),
        follow: args.follow,
        tail_lines: args
            .tail
            .map(|n| i32::try_from(n).unwrap_or(i32::MAX))
            .unwrap_or(-1),
        kubernetes: args.kubernetes,
    }
}

pub async fn run(args: Args, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    if args.cluster {
        let query = args.id.as_deref().unwrap_or_default();
        return crate::commands::logs_cluster::run(
            query,
            &args.search,
            args.tail,
            args.follow,
            global,
        )
        .await;
    }
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

    #[test]
    fn cluster_searches_take_their_own_flags() {
        let a = Cli::parse_from([
            "logs",
            "--cluster",
            "error",
            "--since",
            "1h",
            "--namespace",
            "default",
            "-f",
        ])
        .args;
        assert!(a.cluster && a.follow);
        assert_eq!(a.id.as_deref(), Some("error"));
        assert_eq!(a.search.since, Some(std::time::Duration::from_secs(3600)));
        assert_eq!(a.search.namespace.as_deref(), Some("default"));
        // An empty search is fine; no id without --cluster is not.
        assert!(Cli::try_parse_from(["logs", "--cluster"]).is_ok());
        assert!(Cli::try_parse_from(["logs"]).is_err());
        // Search flags need --cluster; -k and --cluster do not mix.
        assert!(Cli::try_parse_from(["logs", "apid", "--namespace", "x"]).is_err());
        assert!(Cli::try_parse_from(["logs", "a/b/c", "-k", "--cluster"]).is_err());
        let j = Cli::parse_from(["logs", "--cluster", "x", "-o", "json"]).args;
        assert_eq!(j.search.output, crate::commands::logs_cluster::Output::Json);
    }
}
