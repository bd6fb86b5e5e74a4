//! The Node object's labels follow `machine.kubelet.nodeLabels` on a
//! running node. The kubelet's `--node-labels` counts only when the Node
//! registers, so a label added or removed by a live apply would otherwise
//! never reach the API. machined server-side applies the labels under a
//! field manager of its own: the API server then removes the labels this
//! manager applied before and the config no longer names, and leaves every
//! other label (the kubelet's, the role labels, a user's) alone.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use config::constants::k8s;
use config::spec::MachineType;
use kube::api::{Api, Patch, PatchParams};
use kube::Client;
use serde_json::{json, Value};

use runtime::resources::{kind, Filter, Watch};
use runtime::Runtime;

/// The field manager that owns the config's node labels.
pub const FIELD_MANAGER: &str = "cairn-machined-node-labels";

/// The apply document for Node `name` with exactly `labels` from us, for
/// the Node at `resource_version`: an apply with a resource version fails
/// when the object changed or is gone instead of creating it.
pub fn apply_doc(name: &str, labels: &BTreeMap<String, String>, resource_version: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": labels, "resourceVersion": resource_version},
    })
}

/// The labels the running config asks for.
pub fn desired(cfg: &config::MachineConfig) -> BTreeMap<String, String> {
    cfg.machine
        .kubelet
        .node_labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

async fn client_for(control_plane: bool) -> Result<Client, super::ManifestsError> {
    if control_plane {
        super::client_at(
            Path::new(k8s::ADMIN_KUBECONFIG),
            Some(&super::local_api_server()),
        )
        .await
    } else {
        // A worker's own identity may label its own Node.
        super::client(Path::new(k8s::KUBELET_KUBECONFIG)).await
    }
}

/// Keeps the Node's labels current for as long as machined runs: after
/// every change of the config or the hostname, and again with backoff
/// while the API server or the Node is not there yet.
pub async fn follow(node: Runtime) {
    let filter = Filter {
        kinds: vec![kind::MACHINE_CONFIG, kind::HOSTNAME],
        id: None,
    };
    let mut watch = Watch::new(&node.store, filter, false);
    let mut applied: Option<(String, BTreeMap<String, String>)> = None;
    let mut delay = Duration::from_secs(2);
    loop {
        let wanted = node
            .running_config()
            .map(|cfg| (node.hostname(), desired(&cfg), cfg));
        let mut retry = false;
        if let Some((name, labels, cfg)) = wanted {
            if applied.as_ref() != Some(&(name.clone(), labels.clone())) {
                let control_plane = cfg.machine.machine_type == MachineType::Controlplane;
                match apply(control_plane, &name, &labels).await {
                    Ok(()) => {
                        runtime::console!(
                            "kubernetes: node {name} labels from the config: {}",
                            if labels.is_empty() {
                                "none".to_string()
                            } else {
                                labels.keys().cloned().collect::<Vec<_>>().join(", ")
                            }
                        );
                        applied = Some((name, labels));
                        delay = Duration::from_secs(2);
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "node labels not applied yet");
                        retry = true;
                    }
                }
            }
        }
        if retry {
            let _ = tokio::time::timeout(delay, watch.next()).await;
            delay = (delay * 2).min(Duration::from_secs(30));
        } else {
            watch.next().await;
        }
    }
}

async fn apply(
    control_plane: bool,
    name: &str,
    labels: &BTreeMap<String, String>,
) -> Result<(), String> {
    let client = client_for(control_plane).await.map_err(|e| e.to_string())?;
    let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(client);
    // Only a Node the kubelet registered. A server-side apply creates what
    // is missing: a Node with labels and no status, which the 1.20 kubelet
    // then found at registration and panicked on (a nil capacity map in
    // reconcileHugePageResource) at every start, so the node never went
    // Ready (CI saw it 40 times in a row).
    let node = nodes
        .get_opt(name)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("node {name} has not registered yet"))?;
    let version = node.metadata.resource_version.unwrap_or_default();
    nodes
        .patch(
            name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(apply_doc(name, labels, &version)),
        )
        .await
        .map(drop)
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_apply_document_names_only_the_configs_labels() {
        let mut cfg = crate::testutil::machine_config();
        cfg.machine
            .kubelet
            .node_labels
            .insert("example.com/zone".parse().unwrap(), "a".parse().unwrap());
        let doc = apply_doc("cp1", &desired(&cfg), "42");
        assert_eq!(
            doc,
            json!({"apiVersion": "v1", "kind": "Node",
                   "metadata": {"name": "cp1", "labels": {"example.com/zone": "a"},
                                "resourceVersion": "42"}})
        );
        // No labels: an empty map, so the API server drops the ones we set.
        let none = apply_doc("cp1", &BTreeMap::new(), "42");
        assert_eq!(none["metadata"]["labels"], json!({}));
    }
}
