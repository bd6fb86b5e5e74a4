//! `cairnctl health`: waits, with progress, until the cluster works: etcd
//! healthy on the node, kube-apiserver ready, every Node Ready, cluster DNS
//! serving. The Kubernetes checks use kube-rs with the admin kubeconfig
//! fetched from the node (the same one `cairnctl kubeconfig` writes).

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use k8s_openapi::api::core::v1::{Endpoints, Node};
use kube::api::ListParams;
use kube::Api;

use crate::global::GlobalArgs;
use crate::session::{NodeClient, Session};

#[derive(clap::Args, Debug)]
#[command(after_help = "\
Examples:
  cairnctl -n 10.5.0.2 health
  cairnctl -n 10.5.0.2 health --wait-timeout 30m
  cairnctl -n 127.0.0.1:50000 health --server https://127.0.0.1:6443

Checks, in order, polling each until it passes: etcd (the node's etcd service
is healthy and lists its members), kube-apiserver (/readyz answers ok), nodes
(at least one Node, all Ready), cluster DNS (the kube-system/kube-dns Service
has ready endpoints: the DNS pods pass their readiness probe). Talks to one
control-plane node; needs an admin certificate (for the kubeconfig).")]
pub struct Args {
    /// Give up after this long.
    #[arg(long, default_value = "20m", value_parser = crate::commands::apply_config::parse_duration)]
    pub wait_timeout: Duration,
    /// Reach the Kubernetes API at this URL instead of the kubeconfig's
    /// server (e.g. a port forwarded to the node).
    #[arg(long)]
    pub server: Option<String>,
}

/// The namespace and name of the cluster DNS Service.
const DNS_SERVICE: (&str, &str) = ("kube-system", "kube-dns");
/// Pause between attempts of one check.
const POLL: Duration = Duration::from_secs(2);

/// Whether every node is Ready, and a summary for the progress line.
pub fn nodes_ready(nodes: &[Node]) -> (bool, String) {
    if nodes.is_empty() {
        return (false, "no nodes registered yet".into());
    }
    let not_ready: Vec<String> = nodes
        .iter()
        .filter(|n| {
            let ready = n
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
                .is_some_and(|c| c.status == "True");
            !ready
        })
        .map(|n| n.metadata.name.clone().unwrap_or_default())
        .collect();
    let ready = nodes.len() - not_ready.len();
    if not_ready.is_empty() {
        (true, format!("{ready}/{} Ready", nodes.len()))
    } else {
        (false, format!("{ready}/{} Ready; waiting for {}", nodes.len(), not_ready.join(", ")))
    }
}

/// How many ready addresses the Endpoints have.
pub fn ready_endpoints(e: &Endpoints) -> usize {
    e.subsets.iter().flatten().map(|s| s.addresses.as_ref().map_or(0, Vec::len)).sum()
}

/// One check's outcome: passed with a summary, or not yet, with why.
type Check = Result<String, String>;

/// A passed check's summary without a value.
fn plain(c: Check) -> Result<(String, ()), String> {
    c.map(|s| (s, ()))
}

async fn etcd_check(client: &NodeClient) -> Check {
    let services = client.call("ServiceList", (), |mut m, r| async move { m.service_list(r).await }).await?;
    let Some(etcd) = services.services.iter().find(|s| s.id == "etcd") else {
        return Err("etcd is not started on this node (did you run `cairnctl bootstrap`?)".into());
    };
    if etcd.health != "ok" {
        let why = if etcd.health_message.is_empty() { etcd.state.clone() } else { etcd.health_message.clone() };
        return Err(format!("etcd {}: {why}", etcd.state));
    }
    let members = client.call("EtcdMemberList", (), |mut m, r| async move { m.etcd_member_list(r).await }).await?;
    Ok(format!("{} member(s)", members.members.len()))
}

async fn kube_client(session: &Session, server: Option<&str>) -> anyhow::Result<kube::Client> {
    let bytes = crate::commands::kubeconfig::fetch(session).await?;
    let text = String::from_utf8(bytes).context("the node sent a kubeconfig that is not UTF-8")?;
    let kubeconfig = kube::config::Kubeconfig::from_yaml(&text).context("the node sent an invalid kubeconfig")?;
    let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &kube::config::KubeConfigOptions::default())
        .await
        .context("the node's kubeconfig")?;
    if let Some(s) = server {
        config.cluster_url = s.parse().with_context(|| format!("--server {s}: not a URL"))?;
    }
    config.connect_timeout = Some(Duration::from_secs(5));
    config.read_timeout = Some(Duration::from_secs(10));
    kube::Client::try_from(config).context("cannot build a Kubernetes client")
}

async fn apiserver_check(k: &kube::Client) -> Check {
    let req = http::Request::get("/readyz").body(Vec::new()).map_err(|e| e.to_string())?;
    let text = k.request_text(req).await.map_err(|e| format!("/readyz: {e}"))?;
    if text.trim() == "ok" {
        Ok("/readyz ok".into())
    } else {
        Err(format!("/readyz: {}", text.trim()))
    }
}

async fn nodes_check(k: &kube::Client) -> Check {
    let nodes = Api::<Node>::all(k.clone()).list(&ListParams::default()).await.map_err(|e| format!("listing nodes: {e}"))?;
    match nodes_ready(&nodes.items) {
        (true, s) => Ok(s),
        (false, s) => Err(s),
    }
}

async fn dns_check(k: &kube::Client) -> Check {
    let (ns, name) = DNS_SERVICE;
    let e = Api::<Endpoints>::namespaced(k.clone(), ns)
        .get_opt(name)
        .await
        .map_err(|e| format!("reading endpoints {ns}/{name}: {e}"))?
        .ok_or_else(|| format!("no Service {ns}/{name} yet"))?;
    match ready_endpoints(&e) {
        0 => Err(format!("{ns}/{name} has no ready endpoints yet")),
        n => Ok(format!("{n} ready endpoint(s)")),
    }
}

/// Polls `check` until it passes or `deadline`, showing its state; the
/// value of the passing attempt.
async fn wait_for<T, F, Fut>(name: &str, deadline: Instant, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(String, T), String>>,
{
    let started = Instant::now();
    let spinner = indicatif::ProgressBar::new_spinner();
    spinner.set_style(indicatif::ProgressStyle::with_template("{spinner} {prefix}: {msg} ({elapsed})").expect("a valid template"));
    spinner.set_prefix(name.to_string());
    spinner.set_message("checking");
    spinner.enable_steady_tick(Duration::from_millis(120));
    loop {
        match check().await {
            Ok((summary, value)) => {
                spinner.finish_and_clear();
                println!("ok   {name}: {summary} ({}s)", started.elapsed().as_secs());
                return Ok(value);
            }
            Err(why) => {
                if Instant::now() >= deadline {
                    spinner.finish_and_clear();
                    anyhow::bail!("{name} is not healthy after the wait timeout: {why}");
                }
                spinner.set_message(why);
            }
        }
        tokio::time::sleep(POLL).await;
    }
}

pub async fn run(args: Args, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let deadline = Instant::now() + args.wait_timeout;
    let session = Session::open(global).await?;
    let client = session.single("health")?;
    wait_for("etcd", deadline, || async { plain(etcd_check(&client).await) }).await?;
    // The kubeconfig is issued once the node has its config; retried like
    // the checks.
    let server = args.server.as_deref();
    let k = wait_for("kubeconfig", deadline, || async {
        kube_client(&session, server).await.map(|k| ("from the node".to_string(), k)).map_err(|e| format!("{e:#}"))
    })
    .await?;
    wait_for("kube-apiserver", deadline, || async { plain(apiserver_check(&k).await) }).await?;
    wait_for("nodes", deadline, || async { plain(nodes_check(&k).await) }).await?;
    wait_for("cluster DNS", deadline, || async { plain(dns_check(&k).await) }).await?;
    println!("the cluster is healthy");
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{EndpointAddress, EndpointSubset, NodeCondition, NodeStatus};

    fn node(name: &str, ready: &str) -> Node {
        let mut n = Node::default();
        n.metadata.name = Some(name.into());
        n.status = Some(NodeStatus {
            conditions: Some(vec![NodeCondition { type_: "Ready".into(), status: ready.into(), ..Default::default() }]),
            ..Default::default()
        });
        n
    }

    #[test]
    fn nodes_are_ready_only_when_all_are() {
        assert_eq!(nodes_ready(&[]), (false, "no nodes registered yet".into()));
        assert_eq!(nodes_ready(&[node("cp-1", "True")]), (true, "1/1 Ready".into()));
        assert_eq!(
            nodes_ready(&[node("cp-1", "True"), node("w-1", "False"), Node::default()]),
            (false, "1/3 Ready; waiting for w-1, ".into())
        );
    }

    #[test]
    fn dns_endpoints_count_ready_addresses_only() {
        let addr = |ip: &str| EndpointAddress { ip: ip.into(), ..Default::default() };
        let e = Endpoints {
            subsets: Some(vec![EndpointSubset {
                addresses: Some(vec![addr("10.244.0.5")]),
                not_ready_addresses: Some(vec![addr("10.244.0.6")]),
                ..Default::default()
            }]),
            ..Default::default()
        };
        assert_eq!(ready_endpoints(&e), 1);
        assert_eq!(ready_endpoints(&Endpoints::default()), 0);
    }
}
