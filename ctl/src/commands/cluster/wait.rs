//! When is a new cluster up: every node Ready, on each control plane its
//! API server, controller manager and scheduler running, kube-proxy on
//! every node, and cluster DNS. Worked out from the Node and Pod lists, so
//! the rules are tested without a cluster.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams};
use provision::cluster::{NodeState, Role};

/// Control-plane Pods each control-plane node runs (static Pods).
pub const CONTROL_PLANE_PODS: &[&str] = &[
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
];
/// The Pod every node runs (a DaemonSet).
pub const NODE_PODS: &[&str] = &["kube-proxy"];
/// Cluster DNS (a Deployment, anywhere).
pub const DNS_POD: &str = "cairn-dns";

/// Where the cluster is.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Status {
    /// Per node seen by Kubernetes, its state in words.
    pub nodes: BTreeMap<String, String>,
    /// Whether cluster DNS runs.
    pub dns: bool,
    /// Every planned node is Ready with its system Pods.
    pub nodes_up: bool,
    /// Everything is up: the nodes and DNS.
    pub done: bool,
}

fn condition_true(conditions: Option<&Vec<k8s_openapi::api::core::v1::NodeCondition>>) -> bool {
    conditions
        .into_iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

fn pod_ready(p: &Pod) -> bool {
    let Some(status) = &p.status else {
        return false;
    };
    status.phase.as_deref() == Some("Running")
        && status
            .conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == "Ready" && c.status == "True")
}

/// The component a Pod runs: its name up to the node's name or the
/// controller's suffix (`kube-apiserver-cp-1`, `kube-proxy-x7k2p`).
fn runs(p: &Pod, component: &str) -> bool {
    p.metadata
        .name
        .as_deref()
        .and_then(|n| n.strip_prefix(component))
        .is_some_and(|rest| rest.starts_with('-'))
}

/// The status of the planned `nodes` given the cluster's Nodes and its
/// kube-system Pods.
pub fn status(planned: &[NodeState], nodes: &[Node], pods: &[Pod]) -> Status {
    let mut out = Status {
        dns: pods.iter().any(|p| runs(p, DNS_POD) && pod_ready(p)),
        ..Status::default()
    };
    let mut all = true;
    for n in planned {
        let Some(node) = nodes
            .iter()
            .find(|k| k.metadata.name.as_deref() == Some(n.name.as_str()))
        else {
            all = false;
            continue;
        };
        let ready = condition_true(node.status.as_ref().and_then(|s| s.conditions.as_ref()));
        let wanted: Vec<&str> = match n.role {
            Role::Controlplane => CONTROL_PLANE_PODS
                .iter()
                .chain(NODE_PODS)
                .copied()
                .collect(),
            Role::Worker => NODE_PODS.to_vec(),
        };
        let missing: Vec<&str> = wanted
            .into_iter()
            .filter(|c| {
                !pods.iter().any(|p| {
                    runs(p, c)
                        && pod_ready(p)
                        && p.spec.as_ref().and_then(|s| s.node_name.as_deref())
                            == Some(n.name.as_str())
                })
            })
            .collect();
        let state = match (ready, missing.is_empty()) {
            (false, _) => "registered with Kubernetes, not Ready yet".to_string(),
            (true, false) => format!("Ready; starting {}", missing.join(", ")),
            (true, true) => "Ready, system Pods running".to_string(),
        };
        all &= ready && missing.is_empty();
        out.nodes.insert(n.name.clone(), state);
    }
    out.nodes_up = all;
    out.done = all && out.dns;
    out
}

/// Lists the Nodes and kube-system Pods and works out the status.
pub async fn fetch(client: &kube::Client, planned: &[NodeState]) -> Result<Status, kube::Error> {
    let nodes = Api::<Node>::all(client.clone())
        .list(&ListParams::default())
        .await?;
    let pods = Api::<Pod>::namespaced(client.clone(), "kube-system")
        .list(&ListParams::default())
        .await?;
    Ok(status(planned, &nodes.items, &pods.items))
}

#[cfg(test)]
mod tests {
    use super::*;
    use provision::cluster::{plan, Request};

    fn planned() -> Vec<NodeState> {
        plan(&Request {
            name: "demo".into(),
            controlplanes: 1,
            workers: 1,
            controlplane_memory_mib: 4096,
            worker_memory_mib: 2048,
            cpus: 2,
        })
        .unwrap()
    }

    fn node(name: &str, ready: bool) -> Node {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name},
            "status": {"conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]}
        }))
        .unwrap()
    }

    fn pod(name: &str, node: &str, ready: bool) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": "kube-system"},
            "spec": {"nodeName": node, "containers": []},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]}
        }))
        .unwrap()
    }

    fn control_plane_pods() -> Vec<Pod> {
        vec![
            pod("kube-apiserver-cp-1", "cp-1", true),
            pod("kube-controller-manager-cp-1", "cp-1", true),
            pod("kube-scheduler-cp-1", "cp-1", true),
            pod("kube-proxy-abcde", "cp-1", true),
        ]
    }

    #[test]
    fn up_when_every_node_is_ready_with_its_pods_and_dns_runs() {
        let p = planned();
        let mut pods = control_plane_pods();
        let s = status(&p, &[node("cp-1", true)], &pods);
        assert_eq!(s.nodes["cp-1"], "Ready, system Pods running");
        assert!(!s.nodes.contains_key("worker-1"), "not registered yet");
        assert!(!s.nodes_up && !s.done);
        // The control plane alone is up (what `cluster create` waits for
        // before it configures the workers on a small host).
        let s = status(&p[..1], &[node("cp-1", true)], &pods);
        assert!(s.nodes_up && !s.done, "{s:?}");

        let nodes = [node("cp-1", true), node("worker-1", false)];
        let s = status(&p, &nodes, &pods);
        assert_eq!(
            s.nodes["worker-1"],
            "registered with Kubernetes, not Ready yet"
        );

        let nodes = [node("cp-1", true), node("worker-1", true)];
        // kube-proxy of cp-1 does not count for worker-1.
        let s = status(&p, &nodes, &pods);
        assert_eq!(s.nodes["worker-1"], "Ready; starting kube-proxy");
        pods.push(pod("kube-proxy-fghij", "worker-1", true));
        let s = status(&p, &nodes, &pods);
        assert!(!s.done, "no DNS yet");
        pods.push(pod("cairn-dns-5d4f-x1", "worker-1", false));
        assert!(!status(&p, &nodes, &pods).dns, "DNS not Ready yet");
        pods.push(pod("cairn-dns-5d4f-x2", "cp-1", true));
        let s = status(&p, &nodes, &pods);
        assert!(s.dns && s.done, "{s:?}");
    }

    #[test]
    fn a_control_plane_waits_for_its_own_static_pods() {
        let p = planned();
        let mut pods = control_plane_pods();
        pods.retain(|p| p.metadata.name.as_deref() != Some("kube-scheduler-cp-1"));
        pods.push(pod("kube-scheduler-cp-2", "cp-2", true));
        let s = status(&p[..1], &[node("cp-1", true)], &pods);
        assert_eq!(s.nodes["cp-1"], "Ready; starting kube-scheduler");
    }
}
