//! The waits of `cluster create`: each node's maintenance mode (its
//! certificate pinned by the fingerprint its console announced), a call
//! retried until it works, and the cluster coming up (apid per node until
//! Kubernetes lists it, the kubeconfig once the control plane issues it,
//! then the Nodes and Pods), printed as a line per node state change.

use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use api::machine::VersionResponse;
use config::fsutil::write_private;
use provision::cluster::{Layout, NodeState, Role};
use provision::launch;

use super::progress::Progress;
use super::wait;
use crate::commands::kubeconfig;
use crate::global::GlobalArgs;
use crate::session::Session;

/// GlobalArgs for `node` in maintenance mode, its certificate pinned.
pub(super) fn pinned(node: &NodeState, fingerprint: &str) -> GlobalArgs {
    GlobalArgs {
        cairnconfig: None,
        context: None,
        endpoints: Vec::new(),
        nodes: vec![format!("127.0.0.1:{}", node.apid_port)],
        insecure: true,
        fingerprint: Some(fingerprint.to_string()),
    }
}

/// GlobalArgs for `node` over mutual TLS with the cluster's cairnconfig,
/// straight to its forwarded port.
pub(super) fn mutual(layout: &Layout, node: &NodeState) -> GlobalArgs {
    let addr = format!("127.0.0.1:{}", node.apid_port);
    GlobalArgs {
        cairnconfig: Some(layout.cairnconfig()),
        context: None,
        endpoints: vec![addr.clone()],
        nodes: vec![addr],
        insecure: false,
        fingerprint: None,
    }
}

/// Version through `global`'s single node, within 15 s.
pub(super) async fn version(global: &GlobalArgs) -> Result<VersionResponse, String> {
    let call = async {
        let session = Session::open(global).await.map_err(|e| format!("{e:#}"))?;
        let client = session.single("version").map_err(|e| format!("{e:#}"))?;
        client
            .call("Version", (), |mut m, r| async move { m.version(r).await })
            .await
    };
    tokio::time::timeout(Duration::from_secs(15), call)
        .await
        .unwrap_or_else(|_| Err("no answer in 15 s".into()))
}

/// Calls `attempt` every `every` until it succeeds; past `deadline` fails
/// with its last error.
pub(super) async fn wait_until<T, F, Fut>(
    deadline: Instant,
    every: Duration,
    what: &str,
    mut attempt: F,
) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    loop {
        match attempt().await {
            Ok(v) => return Ok(v),
            Err(e) if Instant::now() >= deadline => bail!("{what}: gave up: {e}"),
            Err(_) => tokio::time::sleep(every).await,
        }
    }
}

/// Waits until every node's console announced maintenance mode and its
/// apid answers Version with the announced certificate; returns the
/// fingerprints.
pub(super) async fn wait_maintenance(
    layout: &Layout,
    nodes: &[NodeState],
    progress: &mut Progress,
    deadline: Instant,
) -> anyhow::Result<Vec<String>> {
    let mut found: Vec<Option<String>> = vec![None; nodes.len()];
    loop {
        for (n, slot) in nodes.iter().zip(found.iter_mut()) {
            if slot.is_some() {
                continue;
            }
            if launch::qemu_pid(layout, &n.name).is_none() {
                bail!(
                    "QEMU of {} exited during boot\n--- {} ---\n{}\n--- last console lines ({}) ---\n{}",
                    n.name,
                    layout.qemu_log(&n.name).display(),
                    std::fs::read_to_string(layout.qemu_log(&n.name)).unwrap_or_default().trim(),
                    layout.console(&n.name).display(),
                    tail(&launch::console(layout, &n.name), 30)
                );
            }
            let Some(fingerprint) =
                launch::maintenance_fingerprint(&launch::console(layout, &n.name))
            else {
                continue;
            };
            match version(&pinned(n, &fingerprint)).await {
                Ok(v) if v.maintenance => {
                    progress.node(
                        &n.name,
                        &format!(
                            "maintenance mode: Cairn {}, apid {}…",
                            v.version,
                            &fingerprint[..fingerprint.len().min(19)]
                        ),
                    );
                    *slot = Some(fingerprint);
                }
                Ok(_) => bail!(
                    "{} is not in maintenance mode: it has a config already",
                    n.name
                ),
                Err(_) => {}
            }
        }
        if found.iter().all(Option::is_some) {
            return Ok(found.into_iter().flatten().collect());
        }
        let waiting: Vec<&str> = nodes
            .iter()
            .zip(&found)
            .filter(|(_, f)| f.is_none())
            .map(|(n, _)| n.name.as_str())
            .collect();
        progress.waiting(&format!(
            "booting to maintenance mode: {}",
            waiting.join(", ")
        ));
        if Instant::now() >= deadline {
            bail!(
                "{} did not reach maintenance mode in time; consoles under {}",
                waiting.join(", "),
                layout.dir.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| !l.contains("cairn: status:"))
        .collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The kubeconfig from `first`, its server set to the forwarded API port.
fn local_kubeconfig(bytes: &[u8], api_port: u16) -> anyhow::Result<String> {
    let mut doc: serde_yaml::Value =
        serde_yaml::from_slice(bytes).context("the node sent a kubeconfig that is not YAML")?;
    let clusters = doc
        .get_mut("clusters")
        .and_then(serde_yaml::Value::as_sequence_mut)
        .context("the node's kubeconfig has no clusters")?;
    for c in clusters {
        if let Some(cluster) = c
            .get_mut("cluster")
            .and_then(serde_yaml::Value::as_mapping_mut)
        {
            cluster.insert(
                "server".into(),
                format!("https://127.0.0.1:{api_port}").into(),
            );
        }
    }
    Ok(serde_yaml::to_string(&doc)?)
}

/// A Kubernetes client from the kubeconfig text.
async fn kube_client(text: &str) -> anyhow::Result<kube::Client> {
    let kc = kube::config::Kubeconfig::from_yaml(text).context("the kubeconfig is not valid")?;
    let config =
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await
            .context("the kubeconfig cannot be used")?;
    kube::Client::try_from(config).context("building the Kubernetes client")
}

/// What apid says about a node Kubernetes does not list yet.
async fn apid_state(layout: &Layout, node: &NodeState) -> String {
    match version(&mutual(layout, node)).await {
        Ok(_) if node.role == Role::Worker => {
            "joined: apid has its certificate from the control plane; kubelet starting".into()
        }
        Ok(_) => "configured: control plane starting".into(),
        Err(_) => {
            // The worker's own account of its join, from its console.
            let console = launch::console(layout, &node.name);
            let join = console
                .lines()
                .rev()
                .find_map(|l| l.split_once("cairn: join: ").map(|(_, m)| calm(m)));
            match join {
                Some(m) => format!("joining: {m}"),
                None => "configured: waiting for its apid certificate".into(),
            }
        }
    }
}

/// A join message without its retry countdown, so that only a new
/// reason makes a new progress line.
fn calm(message: &str) -> String {
    message
        .split("; asking again")
        .next()
        .unwrap_or(message)
        .trim()
        .to_string()
}

/// What [`watch_until_up`] waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Until {
    /// The watched nodes Ready with their system Pods.
    NodesUp,
    /// That and cluster DNS: the cluster is up.
    ClusterUp,
}

/// Watches `nodes` come up: apid per node until Kubernetes lists it, the
/// kubeconfig once the control plane issues it (kept in `client` for the
/// next watch), then Nodes and Pods, until `until` holds.
pub(super) async fn watch_until_up(
    layout: &Layout,
    nodes: &[NodeState],
    first: &NodeState,
    client: &mut Option<kube::Client>,
    until: Until,
    progress: &mut Progress,
    deadline: Instant,
) -> anyhow::Result<()> {
    let api_port = first
        .api_port
        .context("the first control plane has no forwarded API port")?;
    let cp = mutual(layout, first);
    let mut dns_said = false;
    let mut last_error = String::new();
    loop {
        if client.is_none() {
            let fetched = async {
                let session = Session::open(&cp).await?;
                kubeconfig::fetch(&session).await
            };
            if let Ok(bytes) = fetched.await {
                let text = local_kubeconfig(&bytes, api_port)?;
                write_private(&layout.kubeconfig(), text.as_bytes(), true)?;
                progress.step(&format!(
                    "kubeconfig written to {} (API on 127.0.0.1:{api_port})",
                    layout.kubeconfig().display()
                ));
                *client = Some(kube_client(&text).await?);
            }
        }
        let status = match client.as_ref() {
            Some(c) => match wait::fetch(c, nodes).await {
                Ok(s) => Some(s),
                Err(e) => {
                    last_error = format!("the Kubernetes API: {e}");
                    None
                }
            },
            None => None,
        };
        for n in nodes {
            let known = status.as_ref().and_then(|s| s.nodes.get(&n.name));
            match known {
                Some(s) => progress.node(&n.name, s),
                None => {
                    let s = apid_state(layout, n).await;
                    progress.node(&n.name, &s);
                }
            }
        }
        if let Some(s) = &status {
            if s.dns && !dns_said {
                progress.step("cluster DNS running");
                dns_said = true;
            }
            let reached = match until {
                Until::NodesUp => s.nodes_up,
                Until::ClusterUp => s.done,
            };
            if reached {
                return Ok(());
            }
        }
        progress.waiting(if client.is_none() {
            "waiting for the control plane to issue the kubeconfig"
        } else if status.is_none() {
            "waiting for the Kubernetes API"
        } else if until == Until::NodesUp {
            "waiting for the control plane to be Ready with its system Pods"
        } else {
            "waiting for every node to be Ready with its system Pods"
        });
        for n in nodes {
            if launch::qemu_pid(layout, &n.name).is_none() {
                bail!(
                    "QEMU of {} stopped\n--- last console lines ({}) ---\n{}",
                    n.name,
                    layout.console(&n.name).display(),
                    tail(&launch::console(layout, &n.name), 30)
                );
            }
        }
        if Instant::now() >= deadline {
            bail!(
                "the cluster was not up in time{}; consoles under {}",
                if last_error.is_empty() {
                    String::new()
                } else {
                    format!(" (last: {last_error})")
                },
                layout.dir.display()
            );
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_retries_do_not_make_new_lines() {
        assert_eq!(
            calm("waiting for apid's certificate: cannot reach 10.5.0.2:50001: transport error; asking again in 16 s"),
            "waiting for apid's certificate: cannot reach 10.5.0.2:50001: transport error"
        );
    }

    #[test]
    fn the_kubeconfig_points_at_the_forwarded_port() {
        let node = "apiVersion: v1\nkind: Config\nclusters:\n- name: demo\n  cluster:\n    server: https://10.5.0.2:6443\n    certificate-authority-data: Q0E=\n\
            contexts:\n- name: admin@demo\n  context: {cluster: demo, user: admin}\ncurrent-context: admin@demo\n";
        let local = local_kubeconfig(node.as_bytes(), 40123).unwrap();
        let v: serde_yaml::Value = serde_yaml::from_str(&local).unwrap();
        assert_eq!(
            v["clusters"][0]["cluster"]["server"],
            "https://127.0.0.1:40123"
        );
        assert_eq!(
            v["clusters"][0]["cluster"]["certificate-authority-data"],
            "Q0E="
        );
        assert_eq!(v["current-context"], "admin@demo");
    }
}
