//! The resource metrics API (`cairn-metrics-server`, see
//! metrics-server/README.md) behind the aggregation layer: `kubectl top`
//! and the Horizontal Pod Autoscaler read `metrics.k8s.io/v1beta1` from it.
//!
//! RBAC, least privilege: the server lists Nodes and Pods (metadata) and
//! reads the kubelets' metrics (`nodes/metrics`, `nodes/stats`); it asks
//! the API server who a caller is allowed to be (`system:auth-delegator`:
//! TokenReview, SubjectAccessReview) and reads the front-proxy settings
//! (`extension-apiserver-authentication-reader` in kube-system). Readers of
//! the API get it through `view`/`edit`/`admin` by aggregation.
//!
//! TLS: the APIService trusts the cluster CA (`caBundle`), and the serving
//! certificate for `cairn-metrics-server.kube-system.svc` is issued from it
//! into the Secret [`TLS_SECRET`] (see [`crate::tls`]): nothing self-signed
//! to pin, and the same CA the cluster already trusts.

use config::MachineConfig;
use serde_json::{json, Value};

use crate::common::{
    cluster_role, cluster_role_binding, control_plane_tolerations, delayed, locked_down, probe,
    role_binding, service_account,
};
use crate::tls::{service_names, ServingCert};
use crate::NAMESPACE;

/// Name of the ServiceAccount, Deployment and Service.
pub const NAME: &str = "cairn-metrics-server";
/// The Secret with the serving certificate.
pub const TLS_SECRET: &str = "cairn-metrics-server-tls";
/// The APIService (`<version>.<group>`).
pub const API_SERVICE: &str = "v1beta1.metrics.k8s.io";
/// The container's HTTPS port; the Service listens on 443.
pub const PORT: u16 = 4443;
/// The user id the server runs as.
const UID: u32 = 65532;

/// The serving certificate the server needs.
pub fn serving_cert(cfg: &MachineConfig) -> ServingCert {
    ServingCert {
        secret: TLS_SECRET,
        common_name: NAME,
        names: service_names(cfg, NAME, NAMESPACE),
    }
}

fn ca_bundle(cfg: &MachineConfig) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(cfg.cluster.ca.crt.pem())
}

pub fn objects(cfg: &MachineConfig) -> Vec<Value> {
    let labels = json!({"k8s-app": NAME});
    let tls_dir = "/etc/cairn-metrics-server/tls";
    vec![
        service_account(NAME, true),
        cluster_role(
            "system:cairn-metrics-server",
            json!([
                {"apiGroups": [""], "resources": ["nodes", "pods"], "verbs": ["get", "list"]},
                {"apiGroups": [""], "resources": ["nodes/metrics", "nodes/stats"], "verbs": ["get"]},
            ]),
        ),
        cluster_role_binding(
            "system:cairn-metrics-server",
            "system:cairn-metrics-server",
            NAME,
        ),
        cluster_role_binding(
            "cairn-metrics-server:system:auth-delegator",
            "system:auth-delegator",
            NAME,
        ),
        role_binding(
            "cairn-metrics-server-auth-reader",
            NAMESPACE,
            "extension-apiserver-authentication-reader",
            NAME,
        ),
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": "system:aggregated-metrics-reader", "labels": {
                "rbac.authorization.k8s.io/aggregate-to-view": "true",
                "rbac.authorization.k8s.io/aggregate-to-edit": "true",
                "rbac.authorization.k8s.io/aggregate-to-admin": "true",
            }},
            "rules": [{"apiGroups": ["metrics.k8s.io"], "resources": ["pods", "nodes"], "verbs": ["get", "list", "watch"]}],
        }),
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": NAME, "namespace": NAMESPACE, "labels": labels},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "serviceAccountName": NAME,
                        "priorityClassName": "system-cluster-critical",
                        "nodeSelector": {"kubernetes.io/os": "linux"},
                        "tolerations": control_plane_tolerations(),
                        "containers": [{
                            "name": "metrics-server",
                            "image": config::constants::images::METRICS_SERVER,
                            "imagePullPolicy": "Never",
                            "args": [
                                format!("--listen=0.0.0.0:{PORT}"),
                                format!("--tls-cert-file={tls_dir}/tls.crt"),
                                format!("--tls-private-key-file={tls_dir}/tls.key"),
                                "--metric-resolution=15s",
                            ],
                            "ports": [{"name": "https", "containerPort": PORT, "protocol": "TCP"}],
                            // It listens once it has read the request-header
                            // ConfigMap, which needs kube-proxy's Service rules
                            // (up to a minute or two after a fresh start under
                            // emulation): killing it meanwhile only restarts the wait.
                            "livenessProbe": delayed(probe("HTTPS", "/livez", PORT, 10, 3), 120),
                            "readinessProbe": probe("HTTPS", "/readyz", PORT, 5, 3),
                            "resources": {"requests": {"cpu": "20m", "memory": "24Mi"}, "limits": {"memory": "64Mi"}},
                            "securityContext": locked_down(UID),
                            "volumeMounts": [{"name": "tls", "mountPath": tls_dir, "readOnly": true}],
                        }],
                        "volumes": [{"name": "tls", "secret": {"secretName": TLS_SECRET}}],
                    },
                },
            },
        }),
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": NAME, "namespace": NAMESPACE, "labels": labels},
            "spec": {
                "selector": labels,
                "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": "https"}],
            },
        }),
        json!({
            "apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
            "metadata": {"name": API_SERVICE, "labels": labels},
            "spec": {
                "service": {"name": NAME, "namespace": NAMESPACE, "port": 443},
                "group": "metrics.k8s.io",
                "version": "v1beta1",
                "caBundle": ca_bundle(cfg),
                "insecureSkipTLSVerify": false,
                "groupPriorityMinimum": 100,
                "versionPriority": 100,
            },
        }),
    ]
}
