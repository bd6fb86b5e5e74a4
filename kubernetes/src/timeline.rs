//! The bring-up timeline: when each phase of bringing Kubernetes up on
//! this node was reached, recorded once per boot as a `bringup` event
//! (`cairnctl events` shows them; `make bench` reads them for the critical
//! path). A message is the phase's name, the seconds since boot and what
//! was seen: `images-imported at 73.2 s: 12 system images in 48.5 s`.
//! Seconds since boot, not wall-clock times: the clock is set during
//! bring-up, and a time-synchronisation step would bend the figures.
//!
//! The steps of [`crate::bringup`] mark their own phases; what happens
//! outside machined (etcd healthy, the kubelet registering the Node, the
//! static Pods running, the controller manager giving the Node a podCIDR,
//! the Node going Ready, cluster DNS answering) is seen by [`follow`],
//! which looks every [`EVERY`] until it has seen them all.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use config::constants::k8s;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams};
use runtime::resources::specs::{EventSpec, EventType};
use runtime::supervisor::Status;
use runtime::Runtime;

/// How often [`follow`] looks.
const EVERY: Duration = Duration::from_secs(2);

/// The static Pods of a control plane, in the order they are waited for.
pub const STATIC_PODS: [&str; 3] = [
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
];

/// A phase of the bring-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    PayloadMounted,
    PkiIssued,
    ContainerdUp,
    ImagesImported,
    EtcdHealthy,
    KubeletStarted,
    /// A static Pod is Running (one of [`STATIC_PODS`]).
    StaticPodRunning(&'static str),
    ApiReady,
    BootstrapApplied,
    NodeRegistered,
    PodCidrAssigned,
    CniWritten,
    NodeReady,
    DnsAnswering,
}

impl Phase {
    pub fn name(self) -> String {
        match self {
            Phase::PayloadMounted => "payload-mounted".into(),
            Phase::PkiIssued => "pki-issued".into(),
            Phase::ContainerdUp => "containerd-up".into(),
            Phase::ImagesImported => "images-imported".into(),
            Phase::EtcdHealthy => "etcd-healthy".into(),
            Phase::KubeletStarted => "kubelet-started".into(),
            Phase::StaticPodRunning(pod) => format!("{pod}-running"),
            Phase::ApiReady => "api-ready".into(),
            Phase::BootstrapApplied => "bootstrap-applied".into(),
            Phase::NodeRegistered => "node-registered".into(),
            Phase::PodCidrAssigned => "podcidr-assigned".into(),
            Phase::CniWritten => "cni-written".into(),
            Phase::NodeReady => "node-ready".into(),
            Phase::DnsAnswering => "dns-answering".into(),
        }
    }

    /// Every phase a node of this kind goes through.
    pub fn all(control_plane: bool) -> Vec<Phase> {
        let mut all = vec![
            Phase::PayloadMounted,
            Phase::PkiIssued,
            Phase::ContainerdUp,
            Phase::ImagesImported,
            Phase::KubeletStarted,
        ];
        if control_plane {
            all.push(Phase::EtcdHealthy);
            all.extend(STATIC_PODS.map(Phase::StaticPodRunning));
            all.extend([Phase::ApiReady, Phase::BootstrapApplied]);
        }
        all.extend([
            Phase::NodeRegistered,
            Phase::PodCidrAssigned,
            Phase::CniWritten,
            Phase::NodeReady,
            Phase::DnsAnswering,
        ]);
        all
    }

    /// The chains of phases that happen in this order on every boot (one
    /// waits for the other); phases of different chains may interleave.
    pub fn chains(control_plane: bool) -> Vec<Vec<Phase>> {
        let mut chains = vec![vec![
            Phase::PayloadMounted,
            Phase::PkiIssued,
            Phase::ContainerdUp,
            Phase::ImagesImported,
            Phase::KubeletStarted,
            Phase::NodeRegistered,
            Phase::PodCidrAssigned,
            Phase::CniWritten,
            Phase::NodeReady,
            Phase::DnsAnswering,
        ]];
        if control_plane {
            chains.push(vec![
                Phase::EtcdHealthy,
                Phase::ApiReady,
                Phase::BootstrapApplied,
            ]);
            // A mirror Pod is seen through the API, so after it answers.
            chains.push(vec![
                Phase::ApiReady,
                Phase::StaticPodRunning("kube-apiserver"),
            ]);
        }
        chains
    }
}

/// Seconds since boot (CLOCK_BOOTTIME, as /proc/uptime counts).
fn since_boot() -> f64 {
    std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|t| t.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

/// The phase's name in an event message of the timeline.
pub fn phase_of(message: &str) -> Option<&str> {
    message.split_once(" at ").map(|(name, _)| name)
}

/// The seconds since boot in an event message of the timeline.
pub fn seconds_of(message: &str) -> Option<f64> {
    let (_, rest) = message.split_once(" at ")?;
    rest.split_once(" s")?.0.parse().ok()
}

fn message(phase: Phase, at: f64, detail: &str) -> String {
    format!("{} at {at:.1} s: {detail}", phase.name())
}

/// The phases this boot's event log has (the log is in memory).
fn recorded(node: &Runtime) -> BTreeSet<String> {
    node.store
        .specs::<EventSpec>()
        .iter()
        .filter(|(_, e)| e.event_type == EventType::Bringup)
        .filter_map(|(_, e)| phase_of(&e.message).map(str::to_string))
        .collect()
}

/// Records `phase` unless this boot recorded it already.
pub fn mark(node: &Runtime, phase: Phase, detail: &str) {
    mark_unless(node, &recorded(node), phase, detail);
}

/// Records `phase` unless it is in `seen`.
fn mark_unless(node: &Runtime, seen: &BTreeSet<String>, phase: Phase, detail: &str) {
    if !seen.contains(&phase.name()) {
        node.events
            .record(EventType::Bringup, message(phase, since_boot(), detail));
    }
}

/// Marks what happens outside machined's own steps, looking every
/// [`EVERY`] until every phase of this node's kind is marked. Reads the API
/// with the kubelet's credentials (every node has them once it joined).
pub async fn follow(node: Runtime, control_plane: bool) {
    let mut client = None;
    let mut etcd_watched = !control_plane;
    // The event log is listed once per loop, after the look; the next look
    // works from that listing: the phases a look marks are marked by no one
    // else (one follower per boot), so it holds every one marked so far.
    let mut seen = recorded(&node);
    loop {
        // etcd starts when the node is bootstrapped (now or at an earlier
        // boot); its health is then waited for as it changes.
        if !etcd_watched && node.supervisor.handle(crate::etcd::SERVICE_ID).is_some() {
            let n = node.clone();
            tokio::spawn(async move {
                let detail = "etcd answers its health check";
                mark_when_up(&n, crate::etcd::SERVICE_ID, Phase::EtcdHealthy, detail).await;
            });
            etcd_watched = true;
        }
        if client.is_none() && Path::new(k8s::KUBELET_KUBECONFIG).exists() {
            client = crate::manifests::client(Path::new(k8s::KUBELET_KUBECONFIG))
                .await
                .ok();
        }
        if let Some(c) = &client {
            look(&node, &seen, c, control_plane).await;
        }
        seen = recorded(&node);
        if Phase::all(control_plane)
            .into_iter()
            .all(|p| seen.contains(&p.name()))
        {
            return;
        }
        tokio::time::sleep(EVERY).await;
    }
}

/// One look at this node's Node and Pods, and at cluster DNS; marks what
/// is new since `seen`.
async fn look(node: &Runtime, seen: &BTreeSet<String>, client: &kube::Client, control_plane: bool) {
    let me = node.hostname();
    let Ok(mine) = Api::<Node>::all(client.clone()).get(&me).await else {
        return;
    };
    let mark = |phase: Phase, detail: &str| mark_unless(node, seen, phase, detail);
    mark(Phase::NodeRegistered, &format!("Node {me} exists"));
    let cidrs = crate::manifests::cni::pod_cidrs(&mine);
    if !cidrs.is_empty() {
        mark(Phase::PodCidrAssigned, &cidrs.join(","));
    }
    let conflist = Path::new(k8s::CNI_CONF_DIR).join(crate::manifests::cni::CONFLIST);
    if conflist.exists() {
        mark(Phase::CniWritten, &conflist.display().to_string());
    }
    let ready = mine
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    if ready {
        mark(Phase::NodeReady, "the Node's Ready condition is True");
    }
    let pods_seen = STATIC_PODS
        .iter()
        .all(|p| seen.contains(&Phase::StaticPodRunning(p).name()));
    if control_plane && !pods_seen {
        let on_me = ListParams::default().fields(&format!("spec.nodeName={me}"));
        if let Ok(pods) = Api::<Pod>::namespaced(client.clone(), "kube-system")
            .list(&on_me)
            .await
        {
            for pod in STATIC_PODS {
                let running = pods.items.iter().any(|p| {
                    p.metadata.name.as_deref() == Some(&format!("{pod}-{me}"))
                        && p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
                });
                if running {
                    mark(Phase::StaticPodRunning(pod), "its mirror Pod is Running");
                }
            }
        }
    }
    if ready && !seen.contains(&Phase::DnsAnswering.name()) {
        if let Ok(answer) = crate::cluster_health::dns(node).await {
            mark(Phase::DnsAnswering, &answer);
        }
    }
}

/// Waits until `service` is up, then marks `phase` (a service the bring-up
/// just started).
pub async fn mark_when_up(node: &Runtime, service: &str, phase: Phase, detail: &str) {
    if let Some(handle) = node.supervisor.handle(service) {
        let mut rx = handle.status.subscribe();
        if rx.wait_for(Status::is_up).await.is_ok() {
            mark(node, phase, detail);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_carry_the_phase_and_the_seconds_since_boot() {
        let m = message(Phase::ImagesImported, 73.21, "12 system images in 48.5 s");
        assert_eq!(m, "images-imported at 73.2 s: 12 system images in 48.5 s");
        assert_eq!(phase_of(&m), Some("images-imported"));
        assert_eq!(seconds_of(&m), Some(73.2));
        let pod = message(Phase::StaticPodRunning("kube-apiserver"), 90.0, "x");
        assert_eq!(phase_of(&pod), Some("kube-apiserver-running"));
    }

    #[test]
    fn every_chained_phase_is_a_phase_of_the_node() {
        for cp in [true, false] {
            let all = Phase::all(cp);
            for chain in Phase::chains(cp) {
                for p in chain {
                    assert!(all.contains(&p), "{p:?} (control plane: {cp})");
                }
            }
        }
        assert!(!Phase::all(false).contains(&Phase::EtcdHealthy));
    }
}
