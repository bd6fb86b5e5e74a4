//! Cluster-level logging: the log store (`cairn-logstore`, see
//! logstore/README.md) on a control plane's disk, and the per-node
//! collector (`cairn-logcollector`, see logcollector/README.md) on every
//! node.
//!
//! Neither talks to the API server, so neither has RBAC or a token in its
//! Pod (`automountServiceAccountToken: false`).
//!
//! - The store: a Deployment of one replica (`Recreate`: one writer per
//!   index directory) pinned to a control plane (nodeSelector
//!   `node-role.kubernetes.io/control-plane`, tolerating the control-plane
//!   taints) with its index in the hostPath [`DATA_DIR`]. It runs as uid
//!   65532 with no capabilities and a read-only root; the kubelet creates
//!   the hostPath root-owned, so an init container (the same image,
//!   `--prepare-data-dir-for`) hands it to 65532 with CAP_CHOWN alone.
//! - Its Service has a fixed ClusterIP (the [`SERVICE_IP_INDEX`]th address
//!   of the first service subnet, `10.96.0.11` by default) with the HTTP
//!   API on [`HTTP_PORT`] and JSON lines over TCP on [`JSONLINES_PORT`], so
//!   machined can ship a node's own logs there without asking the API server.
//! - The collector: a DaemonSet tolerating every taint, reading
//!   `/var/log/pods` (hostPath, read-only) and keeping its offsets and disk
//!   buffer in the hostPath [`STATE_DIR`]. The kubelet's log files are
//!   root's (mode 0640) and so is the state directory it creates, so the
//!   collector runs as uid 0 with every capability dropped: ownership alone
//!   lets root read and write its own files; no DAC_OVERRIDE or
//!   DAC_READ_SEARCH, no privilege escalation, a read-only root file system.
//!
//! [`SERVICE_IP_INDEX`]: config::constants::logging::SERVICE_IP_INDEX
//! [`HTTP_PORT`]: config::constants::logging::HTTP_PORT
//! [`JSONLINES_PORT`]: config::constants::logging::JSONLINES_PORT

use std::net::IpAddr;

use config::constants::logging::{HTTP_PORT, JSONLINES_PORT, SERVICE, SERVICE_IP_INDEX};
use config::MachineConfig;
use serde_json::{json, Value};

use crate::common::{control_plane_tolerations, locked_down, probe, service_account};
use crate::NAMESPACE;

/// The store's name (ServiceAccount, Deployment, Service).
pub const STORE: &str = SERVICE;
/// The collector's name (ServiceAccount, DaemonSet).
pub const COLLECTOR: &str = "cairn-logcollector";
/// The store's index on the control plane's disk.
pub const DATA_DIR: &str = "/var/lib/cairn-logstore";
/// The collector's offsets and disk buffer on each node.
pub const STATE_DIR: &str = "/var/lib/cairn-logcollector";
/// The kubelet's container logs.
pub const POD_LOGS: &str = config::constants::k8s::POD_LOGS_DIR;
/// The collector's /healthz.
pub const COLLECTOR_HEALTH_PORT: u16 = 8081;
/// The store's user.
const UID: u32 = 65532;
/// The store's limits: records kept, their age, the free disk it leaves.
const MAX_SIZE: &str = "2GiB";
const MAX_AGE: &str = "7d";
const MIN_FREE_DISK: &str = "15%";

/// The store Service's fixed ClusterIP: the [`SERVICE_IP_INDEX`]th
/// address of the first service subnet; `None` when that subnet is too
/// small (the Service then gets a dynamic address).
///
/// [`SERVICE_IP_INDEX`]: config::constants::logging::SERVICE_IP_INDEX
pub fn store_service_ip(cfg: &MachineConfig) -> Option<IpAddr> {
    let net = cfg.cluster.network.service_subnets.first()?.net();
    let ip = match net.network() {
        IpAddr::V4(a) => IpAddr::V4(u32::from(a).checked_add(SERVICE_IP_INDEX)?.into()),
        IpAddr::V6(a) => IpAddr::V6(
            u128::from(a)
                .checked_add(u128::from(SERVICE_IP_INDEX))?
                .into(),
        ),
    };
    // Inside the subnet and not its broadcast address.
    (net.contains(&ip) && ip != net.broadcast()).then_some(ip)
}

/// The store's HTTP address as the collectors use it.
pub fn store_url(cfg: &MachineConfig) -> String {
    match store_service_ip(cfg) {
        Some(IpAddr::V6(ip)) => format!("http://[{ip}]:{HTTP_PORT}"),
        Some(ip) => format!("http://{ip}:{HTTP_PORT}"),
        // The kubelet's service links (the Service is applied first).
        None => "http://$(CAIRN_LOGSTORE_SERVICE_HOST):$(CAIRN_LOGSTORE_SERVICE_PORT_HTTP)".into(),
    }
}

/// Where machined sends a node's own logs (JSON lines over TCP), when the
/// Service has its fixed address: `tcp://10.96.0.11:5170` by default.
pub fn jsonlines_destination(cfg: &MachineConfig) -> Option<String> {
    store_service_ip(cfg).map(|ip| match ip {
        IpAddr::V6(ip) => format!("tcp://[{ip}]:{JSONLINES_PORT}"),
        ip => format!("tcp://{ip}:{JSONLINES_PORT}"),
    })
}

pub fn objects(cfg: &MachineConfig) -> Vec<Value> {
    vec![
        service_account(STORE, false),
        service_account(COLLECTOR, false),
        service(cfg),
        store(),
        collector(cfg),
    ]
}

fn service(cfg: &MachineConfig) -> Value {
    let labels = json!({"k8s-app": STORE});
    let mut spec = json!({
        "type": "ClusterIP",
        "selector": labels,
        "ports": [
            {"name": "http", "port": HTTP_PORT, "protocol": "TCP", "targetPort": "http"},
            {"name": "jsonlines", "port": JSONLINES_PORT, "protocol": "TCP", "targetPort": "jsonlines"},
        ],
    });
    if let Some(ip) = store_service_ip(cfg) {
        spec["clusterIP"] = json!(ip.to_string());
    }
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": STORE, "namespace": NAMESPACE, "labels": labels},
        "spec": spec,
    })
}

fn store() -> Value {
    let labels = json!({"k8s-app": STORE});
    let image = config::constants::images::LOGSTORE;
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": STORE, "namespace": NAMESPACE, "labels": labels},
        "spec": {
            "replicas": 1,
            // One writer per index directory: the old Pod stops first.
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "serviceAccountName": STORE,
                    "automountServiceAccountToken": false,
                    "nodeSelector": {
                        "kubernetes.io/os": "linux",
                        "node-role.kubernetes.io/control-plane": "",
                    },
                    "tolerations": control_plane_tolerations(),
                    "terminationGracePeriodSeconds": 30,
                    "initContainers": [{
                        "name": "data-dir",
                        "image": image,
                        "imagePullPolicy": "Never",
                        "args": ["--data-dir=/data", format!("--prepare-data-dir-for={UID}:{UID}")],
                        "resources": {
                            "requests": {"cpu": "10m", "memory": "16Mi"},
                            "limits": {"cpu": "100m", "memory": "32Mi"},
                        },
                        // Root, but only to chown: CAP_CHOWN and nothing else.
                        "securityContext": {
                            "runAsNonRoot": false,
                            "runAsUser": 0,
                            "runAsGroup": 0,
                            "allowPrivilegeEscalation": false,
                            "readOnlyRootFilesystem": true,
                            "capabilities": {"drop": ["ALL"], "add": ["CHOWN"]},
                        },
                        "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                    }],
                    "containers": [{
                        "name": "logstore",
                        "image": image,
                        "imagePullPolicy": "Never",
                        "args": [
                            "--data-dir=/data",
                            format!("--http-listen=0.0.0.0:{HTTP_PORT}"),
                            format!("--tcp-listen=0.0.0.0:{JSONLINES_PORT}"),
                            format!("--max-size={MAX_SIZE}"),
                            format!("--max-age={MAX_AGE}"),
                            format!("--min-free-disk={MIN_FREE_DISK}"),
                        ],
                        "ports": [
                            {"name": "http", "containerPort": HTTP_PORT, "protocol": "TCP"},
                            {"name": "jsonlines", "containerPort": JSONLINES_PORT, "protocol": "TCP"},
                        ],
                        "readinessProbe": probe("HTTP", "/readyz", HTTP_PORT, 5, 3),
                        "livenessProbe": probe("HTTP", "/healthz", HTTP_PORT, 20, 6),
                        "resources": {
                            "requests": {"cpu": "100m", "memory": "128Mi"},
                            "limits": {"cpu": "1", "memory": "512Mi"},
                        },
                        "securityContext": locked_down(UID),
                        "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                    }],
                    "volumes": [
                        {"name": "data", "hostPath": {"path": DATA_DIR, "type": "DirectoryOrCreate"}},
                    ],
                },
            },
        },
    })
}

fn collector(cfg: &MachineConfig) -> Value {
    let labels = json!({"k8s-app": COLLECTOR});
    json!({
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": COLLECTOR, "namespace": NAMESPACE, "labels": labels},
        "spec": {
            "selector": {"matchLabels": labels},
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "serviceAccountName": COLLECTOR,
                    "automountServiceAccountToken": false,
                    "nodeSelector": {"kubernetes.io/os": "linux"},
                    // Every node's logs, whatever its taints.
                    "tolerations": [{"operator": "Exists"}],
                    "terminationGracePeriodSeconds": 30,
                    "containers": [{
                        "name": "logcollector",
                        "image": config::constants::images::LOGCOLLECTOR,
                        "imagePullPolicy": "Never",
                        "args": [
                            format!("--store={}", store_url(cfg)),
                            format!("--pods-dir={POD_LOGS}"),
                            format!("--state-dir={STATE_DIR}"),
                            format!("--health-listen=0.0.0.0:{COLLECTOR_HEALTH_PORT}"),
                        ],
                        "env": [{"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}],
                        "ports": [{"name": "health", "containerPort": COLLECTOR_HEALTH_PORT, "protocol": "TCP"}],
                        "readinessProbe": probe("HTTP", "/healthz", COLLECTOR_HEALTH_PORT, 10, 3),
                        "livenessProbe": probe("HTTP", "/healthz", COLLECTOR_HEALTH_PORT, 20, 6),
                        "resources": {
                            "requests": {"cpu": "20m", "memory": "24Mi"},
                            "limits": {"cpu": "200m", "memory": "64Mi"},
                        },
                        // Root for the ownership of root's files, with no
                        // capability at all (see the module docs).
                        "securityContext": {
                            "runAsNonRoot": false,
                            "runAsUser": 0,
                            "runAsGroup": 0,
                            "allowPrivilegeEscalation": false,
                            "readOnlyRootFilesystem": true,
                            "capabilities": {"drop": ["ALL"]},
                        },
                        "volumeMounts": [
                            {"name": "pod-logs", "mountPath": POD_LOGS, "readOnly": true},
                            {"name": "state", "mountPath": STATE_DIR},
                        ],
                    }],
                    "volumes": [
                        {"name": "pod-logs", "hostPath": {"path": POD_LOGS, "type": "Directory"}},
                        {"name": "state", "hostPath": {"path": STATE_DIR, "type": "DirectoryOrCreate"}},
                    ],
                },
            },
        },
    })
}
