//! Kubernetes on a configured node: the sequence of CONTRACTS-K8S.md
//! ("Sequence on a configured node"), started once by the configurator
//! when a config is in force (at boot or when the first config is applied):
//!
//! 1. the payload is mounted; the clock is synchronized (bounded wait);
//! 2. the PKI is issued (and kept issued as the config and addresses change);
//! 3. containerd runs and the payload's images are imported into `k8s.io`;
//! 4. etcd starts if this control plane was bootstrapped before (else the
//!    Bootstrap RPC starts it);
//! 5. the static pods are rendered (and re-rendered on config or secrets
//!    changes) and the kubelet runs;
//! 6. once the API server answers, the bootstrap objects are applied;
//!    every node writes its CNI config from its Node's podCIDR.
//!
//! Workers skip the control-plane parts (their PKI module writes only what a
//! worker has, and they render no static pods).

pub mod addresses;
pub mod podlogs;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use config::constants::k8s;
use config::spec::MachineType;

use crate::k8s_pki::NodeFacts;
use crate::resources::{kind, Filter, Watch};
use crate::state::Node;
use crate::supervisor::Status;

pub use addresses::{dns_service_ip, node_ip};

/// How long the kubelet waits for containerd's first health before the
/// images are imported anyway (the import reports its own errors).
const CONTAINERD_UP: Duration = Duration::from_secs(120);
/// How often the static pods are compared with the secrets on disk.
const RERENDER_EVERY: Duration = Duration::from_secs(15);

static STARTED: AtomicBool = AtomicBool::new(false);

/// Starts the sequence once per machined (later calls do nothing).
pub fn start(node: &Arc<Node>) {
    if STARTED.swap(true, Ordering::SeqCst) {
        return;
    }
    let node = node.clone();
    tokio::spawn(async move {
        if let Err(e) = run(node).await {
            crate::console!("kubernetes: {e}");
        }
    });
}

#[derive(Debug, thiserror::Error)]
pub enum KubernetesError {
    #[error("not started: the payload is not mounted ({0})")]
    Payload(String),
    #[error("not started: no running config")]
    NoConfig,
    #[error("not started: cannot issue the Kubernetes PKI: {0}")]
    Pki(String),
    #[error("cannot start {0}: {1}")]
    Service(&'static str, crate::supervisor::SupervisorError),
}

async fn run(node: Arc<Node>) -> Result<(), KubernetesError> {
    // 1. Payload and clock.
    crate::payload::wait_mounted(&node)
        .await
        .map_err(KubernetesError::Payload)?;
    let cfg = node.running_config().ok_or(KubernetesError::NoConfig)?;
    let timeout = cfg.machine.time.boot_timeout.get();
    if !crate::time::wait_synced(&node, timeout).await {
        crate::console!(
            "kubernetes: the clock is not synchronized after {}s; going on (certificates may look not yet valid)",
            timeout.as_secs()
        );
    }
    let cfg = node.running_config().ok_or(KubernetesError::NoConfig)?;
    let control_plane = cfg.machine.machine_type == MachineType::Controlplane;

    // 2. PKI.
    let facts = NodeFacts::of(&node);
    crate::k8s_pki::issue(&cfg, &facts)
        .await
        .map_err(|e| KubernetesError::Pki(e.to_string()))?;
    tokio::spawn(crate::k8s_pki::keep_issued(node.clone()));

    // 3. The image cache (it writes containerd's registry hosts first),
    // containerd and the images.
    tokio::spawn(crate::registry::run(node.clone()));
    let containerd = node
        .supervisor
        .start(crate::containerd::service(&cfg))
        .map_err(|e| KubernetesError::Service(crate::containerd::SERVICE, e))?;
    let mut rx = containerd.status.subscribe();
    let up = tokio::time::timeout(CONTAINERD_UP, async {
        rx.wait_for(Status::is_up).await.map(drop)
    })
    .await;
    if !matches!(up, Ok(Ok(()))) {
        crate::console!(
            "kubernetes: containerd is not healthy after {}s; importing anyway",
            CONTAINERD_UP.as_secs()
        );
    }
    import_images().await;

    // 4. etcd, when this control plane was bootstrapped before.
    if let Some(Err(e)) = crate::etcd::start_if_bootstrapped(&node, &cfg, &facts).await {
        crate::console!("kubernetes: etcd: {e}");
    }

    // 5. Static pods (control planes) and the kubelet.
    match crate::staticpods::StaticPods::new(&node.store) {
        Ok(pods) => {
            tokio::spawn(keep_static_pods(node.clone(), pods));
        }
        Err(e) => crate::console!("kubernetes: static pods: {e}"),
    }
    let kubelet_facts = crate::kubelet::NodeFacts {
        hostname: node.hostname(),
        node_ip: node_ip(&node.store),
    };
    node.supervisor
        .start(crate::kubelet::service(&node, &cfg, &kubelet_facts))
        .map_err(|e| KubernetesError::Service(crate::kubelet::SERVICE, e))?;

    // 6. Bootstrap objects, the role label and the CNI config.
    tokio::spawn(crate::manifests::cni::follow_pod_cidr(node.hostname()));
    if control_plane {
        let client =
            crate::manifests::apply_bootstrap(&cfg, Path::new(k8s::ADMIN_KUBECONFIG)).await;
        crate::manifests::label_control_plane(&client, &node.hostname()).await;
    }
    Ok(())
}

/// Imports the payload's OCI archives into containerd's `k8s.io` namespace.
async fn import_images() {
    let socket = Path::new(k8s::CONTAINERD_SOCKET);
    let channel = match crate::containerd::connect(socket).await {
        Ok(c) => c,
        Err(e) => {
            crate::console!("kubernetes: cannot import the payload's images: {e}");
            return;
        }
    };
    let started = std::time::Instant::now();
    let dir = Path::new(crate::containerd::PAYLOAD_IMAGES);
    let (mut imported, mut present) = (0, 0);
    for result in
        crate::containerd::import::import_dir(&channel, dir, k8s::CONTAINERD_NAMESPACE).await
    {
        match result {
            Ok(images) => {
                for i in images {
                    match i.outcome {
                        crate::containerd::import::Outcome::Imported => imported += 1,
                        crate::containerd::import::Outcome::Present => present += 1,
                    }
                }
            }
            Err(e) => crate::console!("kubernetes: image import: {e}"),
        }
    }
    crate::console!(
        "kubernetes: images imported into containerd ({imported} new, {present} present) in {:.1}s",
        started.elapsed().as_secs_f64()
    );
}

/// Renders the static pods now and again whenever the config or the
/// addresses change, or the secrets on disk do (checked every few seconds).
async fn keep_static_pods(node: Arc<Node>, pods: crate::staticpods::StaticPods) {
    let filter = Filter {
        kinds: vec![kind::MACHINE_CONFIG, kind::ADDRESSES],
        id: None,
    };
    let mut watch = Watch::new(&node.store, filter, false);
    loop {
        if let Some(cfg) = node.running_config() {
            let input =
                crate::staticpods::input_for(node_ip(&node.store), Path::new(k8s::SECRETS_DIR));
            if let Err(e) = pods.sync(&cfg, &input) {
                crate::console!("kubernetes: static pods: {e}");
            }
        }
        let _ = tokio::time::timeout(RERENDER_EVERY, watch.next()).await;
    }
}

#[cfg(test)]
pub(crate) mod testutil;
