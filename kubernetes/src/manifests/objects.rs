//! The bootstrap objects a control plane applies once its API server
//! answers: RBAC for node bootstrap and CSR approval, the bootstrap token,
//! kube-proxy and cluster DNS (the `cairn-dns` binary, see dns/README.md).
//!
//! Plain JSON documents (apiVersion/kind/metadata) so the golden files show
//! exactly what is sent; server-side apply takes them as they are.

use config::constants::k8s;
use config::MachineConfig;
use serde_json::{json, Value};

/// Namespace of every system object.
pub const KUBE_SYSTEM: &str = "kube-system";
/// Labels of the DNS pods and Service (the name kubectl users know).
pub const DNS_APP: &str = "kube-dns";

/// The cluster DNS image the payload carries.
pub fn dns_image() -> String {
    config::constants::images::DNS.to_string()
}

fn binding(name: &str, role: &str, subjects: Value) -> Value {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": subjects,
    })
}

fn group(name: &str) -> Value {
    json!([{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": name}])
}

fn service_account(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": KUBE_SYSTEM}})
}

/// Node bootstrap: the bootstrap token of `cluster.token`, the rights of
/// its group to send CSRs, and automatic approval of node client CSRs
/// (first certificate and renewals).
pub fn node_bootstrap(cfg: &MachineConfig) -> Vec<Value> {
    let token = cfg.cluster.token.as_str();
    let (id, secret) = token.split_once('.').unwrap_or((token, ""));
    vec![
        json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": format!("bootstrap-token-{id}"), "namespace": KUBE_SYSTEM},
            "type": "bootstrap.kubernetes.io/token",
            "stringData": {
                "token-id": id,
                "token-secret": secret,
                "usage-bootstrap-authentication": "true",
                "usage-bootstrap-signing": "true",
                "description": "Cairn's bootstrap token (cluster.token) for joining nodes",
            },
        }),
        binding(
            "cairn:kubelet-bootstrap",
            "system:node-bootstrapper",
            group("system:bootstrappers"),
        ),
        binding(
            "cairn:node-autoapprove-bootstrap",
            "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
            group("system:bootstrappers"),
        ),
        binding(
            "cairn:node-autoapprove-certificate-rotation",
            "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
            group("system:nodes"),
        ),
    ]
}

/// kube-proxy in iptables mode on every node.
pub fn kube_proxy(cfg: &MachineConfig) -> Vec<Value> {
    let c = &cfg.cluster;
    let cluster_cidr = c
        .network
        .pod_subnets
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let config = json!({
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "mode": "iptables",
        "clusterCIDR": cluster_cidr,
        "bindAddress": "0.0.0.0",
        "clientConnection": {"kubeconfig": "/var/lib/kube-proxy/kubeconfig.conf"},
        // Leave the conntrack table size alone: the kernel's is fine and
        // /sys/module may be read-only.
        "conntrack": {"maxPerCore": 0},
    });
    let kubeconfig = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "default", "cluster": {
            "server": c.control_plane.endpoint.to_string(),
            "certificate-authority": "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt",
        }}],
        "users": [{"name": "default", "user": {"tokenFile": "/var/run/secrets/kubernetes.io/serviceaccount/token"}}],
        "contexts": [{"name": "default", "context": {"cluster": "default", "user": "default", "namespace": "default"}}],
        "current-context": "default",
    });
    let mut args = std::collections::BTreeMap::from([
        (
            "config".to_string(),
            "/var/lib/kube-proxy/config.conf".to_string(),
        ),
        ("hostname-override".to_string(), "$(NODE_NAME)".to_string()),
    ]);
    for (k, v) in &c.proxy.extra_args {
        args.insert(k.to_string(), v.to_string());
    }
    let args: Vec<String> = args
        .into_iter()
        .map(|(k, v)| format!("--{k}={v}"))
        .collect();
    let labels = json!({"k8s-app": "kube-proxy"});
    vec![
        service_account("kube-proxy"),
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "cairn:node-proxier"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:node-proxier"},
            "subjects": [{"kind": "ServiceAccount", "name": "kube-proxy", "namespace": KUBE_SYSTEM}],
        }),
        json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "kube-proxy", "namespace": KUBE_SYSTEM, "labels": labels},
            "data": {
                "config.conf": runtime::resources::yaml_of(&config),
                "kubeconfig.conf": runtime::resources::yaml_of(&kubeconfig),
            },
        }),
        json!({
            "apiVersion": "apps/v1",
            "kind": "DaemonSet",
            "metadata": {"name": "kube-proxy", "namespace": KUBE_SYSTEM, "labels": labels},
            "spec": {
                "selector": {"matchLabels": labels},
                "updateStrategy": {"type": "RollingUpdate"},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "hostNetwork": true,
                        "priorityClassName": "system-node-critical",
                        "serviceAccountName": "kube-proxy",
                        "tolerations": [{"operator": "Exists"}],
                        "nodeSelector": {"kubernetes.io/os": "linux"},
                        "containers": [{
                            "name": "kube-proxy",
                            "image": c.proxy_image().to_string(),
                            "imagePullPolicy": "IfNotPresent",
                            "args": args,
                            "env": [{"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}],
                            "securityContext": {"privileged": true},
                            "volumeMounts": [
                                {"name": "kube-proxy", "mountPath": "/var/lib/kube-proxy"},
                                {"name": "xtables-lock", "mountPath": "/run/xtables.lock"},
                            ],
                        }],
                        "volumes": [
                            {"name": "kube-proxy", "configMap": {"name": "kube-proxy"}},
                            {"name": "xtables-lock", "hostPath": {"path": "/run/xtables.lock", "type": "FileOrCreate"}},
                        ],
                    },
                },
            },
        }),
    ]
}

/// Cluster DNS as dns/README.md describes it: `cairn-dns` (non-root, on
/// port 1053) watching Services and Endpoints, behind the `kube-dns`
/// Service on port 53 at the 10th address of the service subnet.
pub fn cluster_dns(cfg: &MachineConfig) -> Vec<Value> {
    let domain = cfg.cluster.network.dns_domain.to_string();
    let ip = crate::dns_service_ip(cfg).map(|ip| ip.to_string());
    let labels = json!({"k8s-app": DNS_APP});
    let port = |name: &str, port: u16, proto: &str| json!({"name": name, "containerPort": port, "protocol": proto});
    let taint = |key: &str| json!({"key": key, "effect": "NoSchedule"});
    vec![
        service_account("cairn-dns"),
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": "system:cairn-dns"},
            "rules": [{"apiGroups": [""], "resources": ["services", "endpoints"], "verbs": ["list", "watch"]}],
        }),
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "system:cairn-dns"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:cairn-dns"},
            "subjects": [{"kind": "ServiceAccount", "name": "cairn-dns", "namespace": KUBE_SYSTEM}],
        }),
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "cairn-dns", "namespace": KUBE_SYSTEM, "labels": labels},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "serviceAccountName": "cairn-dns",
                        "priorityClassName": "system-cluster-critical",
                        // The node's resolv.conf: upstream resolvers, never
                        // cairn-dns itself.
                        "dnsPolicy": "Default",
                        "nodeSelector": {"kubernetes.io/os": "linux"},
                        "tolerations": [
                            {"key": "CriticalAddonsOnly", "operator": "Exists"},
                            taint("node-role.kubernetes.io/master"),
                            taint("node-role.kubernetes.io/control-plane"),
                        ],
                        "containers": [{
                            "name": "cairn-dns",
                            "image": dns_image(),
                            // Imported from the payload; no registry to pull from.
                            "imagePullPolicy": "Never",
                            "args": [
                                format!("--cluster-domain={domain}"),
                                "--listen=0.0.0.0:1053",
                                "--health-listen=0.0.0.0:8080",
                                "--ready-listen=0.0.0.0:8181",
                                "--ttl=5",
                            ],
                            "ports": [port("dns", 1053, "UDP"), port("dns-tcp", 1053, "TCP"), port("health", 8080, "TCP"), port("ready", 8181, "TCP")],
                            "livenessProbe": {
                                "httpGet": {"path": "/health", "port": 8080, "scheme": "HTTP"},
                                "initialDelaySeconds": 10, "periodSeconds": 10, "timeoutSeconds": 5, "failureThreshold": 5,
                            },
                            "readinessProbe": {
                                "httpGet": {"path": "/ready", "port": 8181, "scheme": "HTTP"},
                                "periodSeconds": 2, "timeoutSeconds": 2, "failureThreshold": 3,
                            },
                            "resources": {"requests": {"cpu": "50m", "memory": "16Mi"}, "limits": {"memory": "64Mi"}},
                            "securityContext": {
                                "runAsNonRoot": true,
                                "runAsUser": 65532,
                                "runAsGroup": 65532,
                                "allowPrivilegeEscalation": false,
                                "readOnlyRootFilesystem": true,
                                "capabilities": {"drop": ["ALL"]},
                            },
                        }],
                    },
                },
            },
        }),
        json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "kube-dns", "namespace": KUBE_SYSTEM, "labels": {"k8s-app": DNS_APP, "kubernetes.io/name": "CairnDNS"}},
            "spec": {
                "selector": labels,
                "clusterIP": ip,
                "ports": [
                    {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": "dns"},
                    {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": "dns-tcp"},
                ],
            },
        }),
    ]
}

/// Cairn's own objects, in apply order (RBAC and accounts before
/// workloads): node bootstrap, kube-proxy, cluster DNS.
pub fn core(cfg: &MachineConfig) -> Vec<Value> {
    let mut v = node_bootstrap(cfg);
    if !cfg.cluster.proxy.disabled {
        v.extend(kube_proxy(cfg));
    }
    v.extend(cluster_dns(cfg));
    v
}

/// Everything: the core objects, then the enabled add-ons (crate
/// `addons`, with its own golden files).
pub fn all(cfg: &MachineConfig) -> Vec<Value> {
    let mut v = core(cfg);
    v.extend(addons::objects(cfg));
    v
}

/// Path of the admin kubeconfig the objects are applied with.
pub const ADMIN_KUBECONFIG: &str = k8s::ADMIN_KUBECONFIG;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil;

    #[test]
    fn objects_match_golden_file() {
        let mut cfg = testutil::machine_config();
        // A fixed token, so the golden file is stable.
        cfg.cluster.token = "abcdef.0123456789abcdef".parse().unwrap();
        let docs: Vec<String> = core(&cfg).iter().map(runtime::resources::yaml_of).collect();
        testutil::golden("manifests/bootstrap.yaml", &docs.join("---\n"));
    }

    #[test]
    fn objects_parse_as_their_kubernetes_types() {
        use k8s_openapi::api::{apps::v1 as apps, core::v1 as core};
        let cfg = testutil::machine_config();
        for doc in all(&cfg) {
            match doc["kind"].as_str().unwrap() {
                "DaemonSet" => drop(serde_json::from_value::<apps::DaemonSet>(doc).unwrap()),
                "Deployment" => drop(serde_json::from_value::<apps::Deployment>(doc).unwrap()),
                "Service" if doc["metadata"]["name"] == DNS_APP => {
                    let s: core::Service = serde_json::from_value(doc).unwrap();
                    assert_eq!(s.spec.unwrap().cluster_ip.as_deref(), Some("10.96.0.10"));
                }
                _ => {}
            }
        }
        let mut no_proxy = cfg.clone();
        no_proxy.cluster.proxy.disabled = true;
        assert!(!all(&no_proxy)
            .iter()
            .any(|d| d["metadata"]["name"] == "kube-proxy"));
    }
}
