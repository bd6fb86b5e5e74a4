//! Prometheus (Debian's package, in the payload's `prometheus` image), the
//! cluster's time-series store of container, node, API server, etcd and
//! machined metrics, with `cairn-prometheus-sd` beside it in the Pod for
//! target discovery (Debian builds Prometheus without Kubernetes service
//! discovery). Its configuration is [`CONFIG`].
//!
//! Storage: the TSDB lives on one control plane's disk, hostPath
//! [`DATA_DIR`], which machined creates owned by [`UID`] (Prometheus runs
//! as that user and may not chown anything); the Pod waits for it
//! (`type: Directory`). Retention is bounded by both age and size.
//!
//! Reached with `kubectl -n kube-system port-forward svc/cairn-prometheus
//! 9090` (its own web UI), and by the Web UI through the API server's
//! service proxy with the signed-in user's token. Prometheus itself has
//! no authentication: whoever may proxy to the Service may query it.

use config::MachineConfig;
use serde_json::{json, Value};

use crate::common::{
    cluster_role, cluster_role_binding, control_plane_tolerations, locked_down, probe,
    service_account,
};
use crate::NAMESPACE;

/// Name of the ServiceAccount, Deployment, Service and ConfigMap.
pub const NAME: &str = "cairn-prometheus";
/// The Service's (and container's) HTTP port.
pub const PORT: u16 = 9090;
/// The discovery sidecar's port on the Pod's loopback.
pub const SD_PORT: u16 = 9102;
/// The TSDB's directory on the control plane's disk.
pub const DATA_DIR: &str = "/var/lib/cairn-prometheus";
/// The user Prometheus runs as (`nobody`); [`DATA_DIR`] must be its.
pub const UID: u32 = 65534;
/// Samples older than this are dropped.
pub const RETENTION_TIME: &str = "7d";
/// Blocks beyond this size are dropped, oldest first (the WAL comes on top).
pub const RETENTION_SIZE: &str = "1GB";
/// prometheus.yml (also the image's default, see images/build-payload.sh).
pub const CONFIG: &str = include_str!("prometheus.yml");

pub fn objects(_cfg: &MachineConfig) -> Vec<Value> {
    let labels = json!({"k8s-app": NAME});
    vec![
        service_account(NAME, true),
        cluster_role(
            "system:cairn-prometheus",
            json!([
                {"apiGroups": [""], "resources": ["nodes"], "verbs": ["list"]},
                {"apiGroups": [""], "resources": ["nodes/metrics"], "verbs": ["get"]},
                {"nonResourceURLs": ["/metrics"], "verbs": ["get"]},
            ]),
        ),
        cluster_role_binding("system:cairn-prometheus", "system:cairn-prometheus", NAME),
        // The API servers' addresses: only the one Endpoints object.
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": "cairn-prometheus-apiserver-endpoints", "namespace": "default"},
            "rules": [{"apiGroups": [""], "resources": ["endpoints"], "resourceNames": ["kubernetes"], "verbs": ["get"]}],
        }),
        crate::common::role_binding(
            "cairn-prometheus-apiserver-endpoints",
            "default",
            "cairn-prometheus-apiserver-endpoints",
            NAME,
        ),
        json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": NAME, "namespace": NAMESPACE, "labels": labels},
            "data": {"prometheus.yml": CONFIG},
        }),
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": NAME, "namespace": NAMESPACE, "labels": labels},
            "spec": {
                "replicas": 1,
                // One TSDB directory, locked by the running Prometheus.
                "strategy": {"type": "Recreate"},
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "serviceAccountName": NAME,
                        "nodeSelector": {"kubernetes.io/os": "linux"},
                        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                            "nodeSelectorTerms": [
                                {"matchExpressions": [{"key": "node-role.kubernetes.io/control-plane", "operator": "Exists"}]},
                                {"matchExpressions": [{"key": "node-role.kubernetes.io/master", "operator": "Exists"}]},
                            ]}}},
                        "tolerations": control_plane_tolerations(),
                        "securityContext": {"runAsNonRoot": true, "runAsUser": UID, "runAsGroup": UID},
                        "containers": [
                            {
                                "name": "prometheus",
                                "image": config::constants::images::PROMETHEUS,
                                "imagePullPolicy": "Never",
                                "args": [
                                    "--config.file=/etc/prometheus/prometheus.yml",
                                    "--storage.tsdb.path=/prometheus",
                                    format!("--storage.tsdb.retention.time={RETENTION_TIME}"),
                                    format!("--storage.tsdb.retention.size={RETENTION_SIZE}"),
                                    format!("--web.listen-address=0.0.0.0:{PORT}"),
                                ],
                                "ports": [{"name": "http", "containerPort": PORT, "protocol": "TCP"}],
                                "readinessProbe": probe("HTTP", "/-/ready", PORT, 10, 3),
                                "livenessProbe": probe("HTTP", "/-/healthy", PORT, 20, 6),
                                "resources": {"requests": {"cpu": "100m", "memory": "192Mi"}, "limits": {"memory": "768Mi"}},
                                "securityContext": locked_down(UID),
                                "volumeMounts": [
                                    {"name": "config", "mountPath": "/etc/prometheus", "readOnly": true},
                                    {"name": "data", "mountPath": "/prometheus"},
                                ],
                            },
                            {
                                // Targets for http_sd_configs, on the Pod's loopback only.
                                "name": "discovery",
                                "image": config::constants::images::METRICS_SERVER,
                                "imagePullPolicy": "Never",
                                "command": ["/usr/local/bin/cairn-prometheus-sd"],
                                "args": [format!("--listen=127.0.0.1:{SD_PORT}")],
                                "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"memory": "48Mi"}},
                                "securityContext": locked_down(UID),
                            },
                        ],
                        "volumes": [
                            {"name": "config", "configMap": {"name": NAME}},
                            {"name": "data", "hostPath": {"path": DATA_DIR, "type": "Directory"}},
                        ],
                    },
                },
            },
        }),
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": NAME, "namespace": NAMESPACE, "labels": labels},
            "spec": {
                "selector": labels,
                "ports": [{"name": "http", "port": PORT, "protocol": "TCP", "targetPort": "http"}],
            },
        }),
    ]
}
