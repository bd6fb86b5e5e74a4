//! The Web UI (`cairn-webui`, see webui/README.md).
//!
//! It needs no rights of its own: every request it makes carries the
//! signed-in user's token. So its ServiceAccount has no RBAC and no token
//! in the Pod (`automountServiceAccountToken: false`); the API server's CA
//! comes from the `kube-root-ca.crt` ConfigMap every namespace has.
//!
//! TLS: a serving certificate from the cluster CA in the Secret
//! [`TLS_SECRET`] (see [`crate::tls`]), for the Service's names and for
//! `localhost` / `127.0.0.1`, where `cairnctl dashboard --web` forwards it.
//! Reached with `cairnctl dashboard --web` (a port-forward), and on every
//! node's `cluster.addons.dashboard.nodePort` when the config sets one (the
//! certificate names the Service, not the nodes: a browser warns there).

use config::MachineConfig;
use serde_json::{json, Value};

use crate::common::{control_plane_tolerations, locked_down, probe, service_account};
use crate::tls::{service_names, ServingCert};
use crate::NAMESPACE;

/// Name of the ServiceAccount, Deployment and Service.
pub const NAME: &str = "cairn-webui";
/// The Secret with the serving certificate.
pub const TLS_SECRET: &str = "cairn-webui-tls";
/// The container's HTTPS port; the Service listens on 443.
pub const PORT: u16 = 8443;
const UID: u32 = 65532;

/// The serving certificate the Web UI needs.
pub fn serving_cert(cfg: &MachineConfig) -> ServingCert {
    let mut names = service_names(cfg, NAME, NAMESPACE);
    names.extend(["localhost".to_string(), "127.0.0.1".to_string()]);
    ServingCert {
        secret: TLS_SECRET,
        common_name: NAME,
        names,
    }
}

pub fn objects(cfg: &MachineConfig) -> Vec<Value> {
    let labels = json!({"k8s-app": NAME});
    vec![
        service_account(NAME, false),
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
                        "automountServiceAccountToken": false,
                        "nodeSelector": {"kubernetes.io/os": "linux"},
                        "tolerations": control_plane_tolerations(),
                        "containers": [{
                            "name": "webui",
                            "image": config::constants::images::WEBUI,
                            "imagePullPolicy": "Never",
                            "args": [
                                format!("--listen=0.0.0.0:{PORT}"),
                                "--tls-cert=/etc/cairn-webui/tls/tls.crt",
                                "--tls-key=/etc/cairn-webui/tls/tls.key",
                                "--apiserver-ca=/etc/cairn-webui/ca/ca.crt",
                            ],
                            "ports": [{"name": "https", "containerPort": PORT, "protocol": "TCP"}],
                            "livenessProbe": probe("HTTPS", "/healthz", PORT, 10, 3),
                            "readinessProbe": probe("HTTPS", "/healthz", PORT, 5, 3),
                            "resources": {"requests": {"cpu": "20m", "memory": "24Mi"}, "limits": {"memory": "128Mi"}},
                            "securityContext": locked_down(UID),
                            "volumeMounts": [
                                {"name": "tls", "mountPath": "/etc/cairn-webui/tls", "readOnly": true},
                                {"name": "ca", "mountPath": "/etc/cairn-webui/ca", "readOnly": true},
                            ],
                        }],
                        "volumes": [
                            {"name": "tls", "secret": {"secretName": TLS_SECRET}},
                            {"name": "ca", "configMap": {"name": "kube-root-ca.crt"}},
                        ],
                    },
                },
            },
        }),
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": NAME, "namespace": NAMESPACE, "labels": labels},
            "spec": service_spec(cfg.cluster.addons.dashboard.node_port, &labels),
        }),
    ]
}

/// A ClusterIP Service, or a NodePort one on `node_port`.
fn service_spec(node_port: Option<u16>, labels: &Value) -> Value {
    let mut port = json!({"name": "https", "port": 443, "protocol": "TCP", "targetPort": "https"});
    let kind = match node_port {
        Some(p) => {
            port["nodePort"] = json!(p);
            "NodePort"
        }
        None => "ClusterIP",
    };
    json!({"type": kind, "selector": labels, "ports": [port]})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_port_when_the_config_asks() {
        let labels = json!({"k8s-app": NAME});
        let plain = service_spec(None, &labels);
        assert_eq!(plain["type"], "ClusterIP");
        assert!(plain["ports"][0].get("nodePort").is_none());
        let exposed = service_spec(Some(30443), &labels);
        assert_eq!(exposed["type"], "NodePort");
        assert_eq!(exposed["ports"][0]["nodePort"], 30443);
    }
}
