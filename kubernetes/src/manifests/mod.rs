//! What machined does through the Kubernetes API: server-side apply of the
//! bootstrap objects ([`objects`]) with the admin kubeconfig once the API
//! server answers, and the per-node CNI config from the Node's podCIDR
//! ([`cni`]).

pub mod cni;
pub mod csr_approver;
pub mod first_pod_cidr;
pub mod node_labels;
pub mod objects;

use std::path::Path;
use std::time::Duration;

use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::{ApiResource, GroupVersionKind};
use kube::Client;
use serde_json::Value;

/// The field manager of everything machined applies.
pub const FIELD_MANAGER: &str = "cairn-machined";

#[derive(Debug, thiserror::Error)]
pub enum ManifestsError {
    #[error("cannot read the kubeconfig {path}: {source}")]
    Kubeconfig {
        path: String,
        source: kube::config::KubeconfigError,
    },
    #[error("cannot use the kubeconfig {path}: {source}")]
    Client { path: String, source: kube::Error },
    #[error("cannot apply {what}: {source}")]
    Apply { what: String, source: kube::Error },
    #[error("an object without apiVersion, kind or metadata.name: {0}")]
    Malformed(String),
    #[error("{0} is not a kind machined applies")]
    UnknownKind(String),
}

/// A client from a kubeconfig file.
pub async fn client(kubeconfig: &Path) -> Result<Client, ManifestsError> {
    client_at(kubeconfig, None).await
}

/// A client from a kubeconfig file, talking to `server` instead of the
/// kubeconfig's server when given.
pub async fn client_at(kubeconfig: &Path, server: Option<&str>) -> Result<Client, ManifestsError> {
    let path = kubeconfig.display().to_string();
    let kc = Kubeconfig::read_from(kubeconfig).map_err(|source| ManifestsError::Kubeconfig {
        path: path.clone(),
        source,
    })?;
    let mut config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .map_err(|source| ManifestsError::Kubeconfig {
            path: path.clone(),
            source,
        })?;
    if let Some(url) = server.and_then(|s| s.parse().ok()) {
        config.cluster_url = url;
    }
    Client::try_from(config).map_err(|source| ManifestsError::Client { path, source })
}

/// This control plane's own API server (its certificate names 127.0.0.1),
/// so the bootstrap objects go in even when the cluster endpoint is a load
/// balancer or an address the node cannot reach yet.
pub fn local_api_server() -> String {
    format!(
        "https://127.0.0.1:{}",
        config::constants::k8s::APISERVER_PORT
    )
}

/// Plural resource names and scope of the kinds machined applies (known
/// up front, so no discovery round trips).
fn resource_of(kind: &str) -> Option<(&'static str, bool)> {
    Some(match kind {
        "ServiceAccount" => ("serviceaccounts", true),
        "Secret" => ("secrets", true),
        "ConfigMap" => ("configmaps", true),
        "Service" => ("services", true),
        "DaemonSet" => ("daemonsets", true),
        "Deployment" => ("deployments", true),
        "Role" => ("roles", true),
        "RoleBinding" => ("rolebindings", true),
        "ClusterRole" => ("clusterroles", false),
        "ClusterRoleBinding" => ("clusterrolebindings", false),
        "APIService" => ("apiservices", false),
        _ => return None,
    })
}

/// Server-side applies one object (forcing ownership of its fields).
pub async fn apply(client: &Client, doc: &Value) -> Result<(), ManifestsError> {
    let api_version = doc["apiVersion"]
        .as_str()
        .ok_or_else(|| ManifestsError::Malformed(doc.to_string()))?;
    let kind = doc["kind"]
        .as_str()
        .ok_or_else(|| ManifestsError::Malformed(doc.to_string()))?;
    let name = doc["metadata"]["name"]
        .as_str()
        .ok_or_else(|| ManifestsError::Malformed(doc.to_string()))?;
    let (plural, namespaced) =
        resource_of(kind).ok_or_else(|| ManifestsError::UnknownKind(kind.to_string()))?;
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let ar =
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural);
    let api: Api<DynamicObject> = if namespaced {
        let ns = doc["metadata"]["namespace"].as_str().unwrap_or("default");
        Api::namespaced_with(client.clone(), ns, &ar)
    } else {
        Api::all_with(client.clone(), &ar)
    };
    let failed = |source| ManifestsError::Apply {
        what: format!("{kind} {name}"),
        source,
    };
    if kind == "APIService" {
        // kube-apiserver 1.20 resets the stream of a server-side apply of
        // an APIService (seen in the VM test: "client error (SendRequest)"
        // on every attempt), so it is created, or replaced as a whole.
        let mut obj: DynamicObject = serde_json::from_value(doc.clone())
            .map_err(|e| ManifestsError::Malformed(e.to_string()))?;
        return match api.get_opt(name).await.map_err(failed)? {
            None => api
                .create(&PostParams::default(), &obj)
                .await
                .map(drop)
                .map_err(failed),
            Some(current) => {
                obj.metadata.resource_version = current.metadata.resource_version;
                api.replace(name, &PostParams::default(), &obj)
                    .await
                    .map(drop)
                    .map_err(failed)
            }
        };
    }
    api.patch(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(doc),
    )
    .await
    .map(drop)
    .map_err(failed)
}

/// Waits until the API server answers `client` (backing off up to 10 s).
pub async fn wait_for_api(client: &Client) {
    let mut delay = Duration::from_secs(1);
    loop {
        match client.apiserver_version().await {
            Ok(v) => {
                runtime::console!(
                    "kubernetes: the API server answers (v{}.{})",
                    v.major,
                    v.minor
                );
                return;
            }
            Err(e) => tracing::debug!(error = %e, "API server not answering yet"),
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(10));
    }
}

/// A client of this node's API server with `kubeconfig` (waiting for the
/// file), once the server answers.
pub async fn local_api_answering(kubeconfig: &Path) -> Client {
    let client = loop {
        match client_at(kubeconfig, Some(&local_api_server())).await {
            Ok(c) => break c,
            Err(e) => {
                tracing::debug!(error = %e, "no admin kubeconfig yet");
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
        }
    };
    wait_for_api(&client).await;
    client
}

/// Applies every bootstrap object with the admin kubeconfig once the API
/// answers; objects that fail are tried again with backoff until all went
/// in (e.g. while the API server's RBAC bootstrap is still running).
/// Returns the client, for what follows on the same API server.
pub async fn apply_bootstrap(
    cfg: &config::MachineConfig,
    kubeconfig: &Path,
    api_ready: impl FnOnce(),
) -> Client {
    let client = local_api_answering(kubeconfig).await;
    api_ready();
    apply_until_done(&client, objects::core(cfg)).await;
    runtime::console!(
        "kubernetes: bootstrap manifests applied (node bootstrap RBAC, kube-proxy, cluster DNS)"
    );
    client
}

/// How long the add-ons wait for this node's podCIDR before going in anyway.
const ADDONS_WAIT_FOR_POD_NETWORK: Duration = Duration::from_secs(300);

/// Applies the add-ons once the Node `node_name` has its podCIDR (or after
/// [`ADDONS_WAIT_FOR_POD_NETWORK`]). Their Pods cannot start before the Pod
/// network, and applying them earlier only takes CPU from the
/// controller-manager's start, which is what assigns the podCIDR (under
/// emulation that cost the node's Ready tens of seconds; issue 17).
pub async fn apply_addons_after_pod_network(
    client: Client,
    cfg: config::MachineConfig,
    node_name: String,
) {
    if addons::objects(&cfg).is_empty() {
        return;
    }
    let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(client.clone());
    let has_cidr = |n: &k8s_openapi::api::core::v1::Node| {
        n.spec.as_ref().and_then(|s| s.pod_cidr.as_ref()).is_some()
    };
    let waited = tokio::time::timeout(ADDONS_WAIT_FOR_POD_NETWORK, async {
        loop {
            if let Ok(Some(n)) = nodes.get_opt(&node_name).await {
                if has_cidr(&n) {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    })
    .await;
    if waited.is_err() {
        runtime::console!(
            "kubernetes: node {node_name} has no podCIDR after {} s; applying the add-ons anyway",
            ADDONS_WAIT_FOR_POD_NETWORK.as_secs()
        );
    }
    apply_addons(client, cfg).await
}

/// The add-ons (after the core objects, on their own: an add-on the API
/// server does not take yet, an APIService say, holds up nothing else):
/// their serving certificates, then their objects, retried until applied.
pub async fn apply_addons(client: Client, cfg: config::MachineConfig) {
    let objects = addons::objects(&cfg);
    if objects.is_empty() {
        return;
    }
    ensure_serving_certs(&client, &cfg).await;
    apply_until_done(&client, objects).await;
    runtime::console!("kubernetes: add-ons applied");
}

/// Applies `pending` until every object went in, retrying the failed ones
/// with backoff (2 s doubling to 30 s).
async fn apply_until_done(client: &Client, mut pending: Vec<Value>) {
    let mut delay = Duration::from_secs(2);
    let mut attempts = 0u32;
    while !pending.is_empty() {
        let mut failed = Vec::new();
        for doc in pending {
            if let Err(e) = apply(client, &doc).await {
                // Say it on the console only now and then: early failures
                // are expected while the API server settles.
                if attempts % 5 == 4 {
                    runtime::console!("kubernetes: {e} (retrying)");
                }
                failed.push(doc);
            }
        }
        pending = failed;
        if pending.is_empty() {
            break;
        }
        attempts += 1;
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(30));
    }
}

/// Creates each add-on's serving-certificate Secret when it is absent, and
/// replaces it once it is no longer current (names changed, renewal due):
/// not on every boot, so the add-ons keep their keys. Failures are told
/// and retried by the next bring-up of a control plane.
pub async fn ensure_serving_certs(client: &Client, cfg: &config::MachineConfig) {
    use k8s_openapi::api::core::v1::Secret;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), addons::NAMESPACE);
    for c in addons::serving_certs(cfg) {
        let existing = match secrets.get_opt(c.secret).await {
            Ok(s) => s.and_then(|s| serde_json::to_value(s).ok()),
            Err(e) => {
                runtime::console!("kubernetes: cannot read secret {}: {e}", c.secret);
                continue;
            }
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or_default();
        if existing
            .as_ref()
            .is_some_and(|e| addons::tls::is_current(cfg, &c, e, now))
        {
            continue;
        }
        let doc = match addons::tls::secret(cfg, &c) {
            Ok(d) => d,
            Err(e) => {
                runtime::console!("kubernetes: cannot issue {}: {e}", c.secret);
                continue;
            }
        };
        match apply(client, &doc).await {
            Ok(()) => runtime::console!("kubernetes: issued the serving certificate {}", c.secret),
            Err(e) => runtime::console!("kubernetes: {e}"),
        }
    }
}

/// The role labels of a control-plane Node (kubectl's ROLES column; 1.20
/// tools look for `master`, newer ones for `control-plane`). The kubelet
/// may not set `node-role.kubernetes.io/*` labels on itself (NodeRestriction
/// and the kubelet's own flag check), so machined sets them with the admin
/// client, as kubeadm does.
pub const CONTROL_PLANE_LABELS: [&str; 2] = [
    "node-role.kubernetes.io/control-plane",
    "node-role.kubernetes.io/master",
];

/// Puts [`CONTROL_PLANE_LABELS`] on the Node `name` once it has registered
/// (polled: the kubelet registers it some seconds after the API answers).
pub async fn label_control_plane(client: &Client, name: &str) {
    let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(client.clone());
    let labels: serde_json::Map<String, Value> = CONTROL_PLANE_LABELS
        .iter()
        .map(|l| (l.to_string(), Value::String(String::new())))
        .collect();
    let patch = serde_json::json!({"metadata": {"labels": labels}});
    let mut attempts = 0u32;
    loop {
        match nodes
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {
                runtime::console!("kubernetes: node {name} labelled as a control plane");
                return;
            }
            Err(e) => {
                attempts += 1;
                // Not registered yet is expected for a while.
                if attempts.is_multiple_of(30) {
                    runtime::console!("kubernetes: cannot label node {name} yet: {e} (retrying)");
                }
            }
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bootstrap_object_has_a_known_resource_and_a_name() {
        let cfg = crate::testutil::machine_config();
        for doc in objects::all(&cfg) {
            let kind = doc["kind"].as_str().unwrap();
            let (_, namespaced) =
                resource_of(kind).unwrap_or_else(|| panic!("{kind} has no resource"));
            assert!(doc["metadata"]["name"].is_string());
            assert_eq!(
                namespaced,
                doc["metadata"]["namespace"].is_string(),
                "{kind}"
            );
        }
        assert_eq!(local_api_server(), "https://127.0.0.1:6443");
    }
}
