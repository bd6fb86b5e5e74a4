//! `cairnctl health`: waits, with progress, until the cluster works as the
//! node sees it (the ClusterHealth RPC): etcd healthy, kube-apiserver
//! ready, every Node Ready, cluster DNS answering. The node runs the
//! checks, so only the machine API needs to be reachable from here.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use api::machine::ClusterHealthCheck;

use crate::global::GlobalArgs;
use crate::session::{NodeClient, Session};

#[derive(clap::Args, Debug)]
#[command(after_help = "\
Examples:
  cairnctl -n 10.5.0.2 health
  cairnctl -n 10.5.0.2 health --wait-timeout 30m

Waits for each check in order, polling the node: etcd (its service is healthy
and lists its members), kube-apiserver (/readyz answers ok on the node),
nodes (at least one Node, all Ready), cluster-dns (the cluster DNS Service
answers kubernetes.default.svc.<domain> with the kubernetes Service IP).
Talks to one control-plane node; needs a reader certificate.")]
pub struct Args {
    /// Give up after this long.
    #[arg(long, default_value = "20m", value_parser = crate::commands::apply_config::parse_duration)]
    pub wait_timeout: Duration,
}

/// Pause between polls.
const POLL: Duration = Duration::from_secs(2);

/// Where the checks stand: how many passed in order, and what the first
/// one that did not says.
pub fn progress(checks: &[ClusterHealthCheck]) -> (usize, Option<&ClusterHealthCheck>) {
    let passed = checks.iter().take_while(|c| c.ok).count();
    (passed, checks.get(passed))
}

async fn poll(client: &NodeClient) -> Result<Vec<ClusterHealthCheck>, String> {
    client
        .call("ClusterHealth", (), |mut m, r| async move {
            m.cluster_health(r).await
        })
        .await
        .map(|r| r.checks)
}

pub async fn run(args: Args, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let deadline = Instant::now() + args.wait_timeout;
    let session = Session::open(global).await?;
    let client = session.single("health")?;
    let started = Instant::now();
    let spinner = indicatif::ProgressBar::new_spinner();
    spinner.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {prefix}: {msg} ({elapsed})")
            .expect("a valid template"),
    );
    spinner.enable_steady_tick(Duration::from_millis(120));
    // Checks already reported as passed.
    let mut reported = 0;
    loop {
        let (waiting, why) = match poll(&client).await {
            Ok(checks) => {
                let (passed, first_failing) = progress(&checks);
                for c in checks.iter().take(passed).skip(reported) {
                    spinner.suspend(|| {
                        println!(
                            "ok   {}: {} ({}s)",
                            c.name,
                            c.message,
                            started.elapsed().as_secs()
                        )
                    });
                }
                reported = reported.max(passed);
                match first_failing {
                    None if !checks.is_empty() => {
                        spinner.finish_and_clear();
                        println!("the cluster is healthy ({}s)", started.elapsed().as_secs());
                        return Ok(ExitCode::SUCCESS);
                    }
                    None => (
                        "health".to_string(),
                        "the node reported no checks".to_string(),
                    ),
                    Some(c) => (c.name.clone(), c.message.clone()),
                }
            }
            // A node that restarts apid or machined answers again soon.
            Err(e) => ("health".to_string(), e),
        };
        if Instant::now() >= deadline {
            spinner.finish_and_clear();
            anyhow::bail!(
                "{waiting} is not healthy after {}: {why}",
                humantime::format_duration(args.wait_timeout)
            );
        }
        spinner.set_prefix(waiting);
        spinner.set_message(why);
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(name: &str, ok: bool) -> ClusterHealthCheck {
        ClusterHealthCheck {
            name: name.into(),
            ok,
            message: format!("{name} says"),
        }
    }

    #[test]
    fn progress_counts_passed_checks_in_order() {
        let all = [
            check("etcd", true),
            check("kube-apiserver", true),
            check("nodes", false),
            check("cluster-dns", true),
        ];
        let (passed, first) = progress(&all);
        assert_eq!(passed, 2);
        assert_eq!(first.unwrap().name, "nodes");
        let (passed, first) = progress(&all[..2]);
        assert_eq!((passed, first), (2, None));
        assert_eq!(progress(&[]), (0, None));
    }
}
