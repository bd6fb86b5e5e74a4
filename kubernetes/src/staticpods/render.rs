//! The control-plane static pods as YAML: kube-apiserver,
//! kube-controller-manager and kube-scheduler, from the machine config.
//!
//! Flags are a sorted map so `extraArgs` override Cairn's and the output
//! is stable (golden files).

use std::collections::BTreeMap;
use std::net::IpAddr;

use config::constants::k8s;
use config::MachineConfig;
use serde_json::{json, Value};

/// Pods in the kube-system namespace, named `<component>-<hostname>` by
/// the kubelet.
pub const NAMESPACE: &str = "kube-system";
/// Annotation carrying a digest of the secrets the pod mounts, so a
/// changed certificate changes the manifest and the kubelet restarts it.
pub const SECRETS_ANNOTATION: &str = "cairn.dev/secrets-digest";

/// What a render needs beyond the config.
#[derive(Debug, Clone, PartialEq)]
pub struct RenderInput {
    pub node_ip: Option<IpAddr>,
    /// Digest of the files in the Kubernetes secrets directory.
    pub secrets_digest: String,
    /// Whether this boot's API server has answered: the controller-manager
    /// and the scheduler are written only then (see [`super::StaticPods::sync`]).
    pub api_ready: bool,
}

/// One rendered manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    /// `kube-apiserver`, ...
    pub component: &'static str,
    pub image: String,
    pub yaml: String,
}

fn flags(
    defaults: BTreeMap<&str, String>,
    extra: &BTreeMap<config::types::ArgName, config::types::ScalarString>,
) -> Vec<String> {
    let mut all: BTreeMap<String, String> = defaults
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    for (k, v) in extra {
        all.insert(k.to_string(), v.to_string());
    }
    all.into_iter().map(|(k, v)| format!("--{k}={v}")).collect()
}

fn joined(cidrs: &[config::types::Cidr]) -> String {
    cidrs
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// An HTTPS GET probe on localhost.
fn probe(port: u16, path: &str, period: u32, failures: u32) -> Value {
    json!({
        "httpGet": {"host": "127.0.0.1", "port": port, "path": path, "scheme": "HTTPS"},
        "periodSeconds": period,
        "timeoutSeconds": 15,
        "failureThreshold": failures,
    })
}

fn pod(
    component: &'static str,
    image: String,
    args: Vec<String>,
    port: u16,
    health: &str,
    input: &RenderInput,
    cpu: &str,
) -> Manifest {
    let doc = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": component,
            "namespace": NAMESPACE,
            "labels": {"component": component, "tier": "control-plane"},
            "annotations": {SECRETS_ANNOTATION: input.secrets_digest},
        },
        "spec": {
            "hostNetwork": true,
            "priorityClassName": "system-node-critical",
            "containers": [{
                "name": component,
                "image": image,
                "imagePullPolicy": "IfNotPresent",
                "args": args,
                "resources": {"requests": {"cpu": cpu}},
                // Under emulation the control plane takes minutes to
                // start: the startup probe allows 15 minutes before the
                // liveness probe counts.
                "startupProbe": probe(port, health, 10, 90),
                "livenessProbe": probe(port, health, 10, 8),
                "volumeMounts": [{"name": "secrets", "mountPath": k8s::SECRETS_DIR, "readOnly": true}],
            }],
            "volumes": [{"name": "secrets", "hostPath": {"path": k8s::SECRETS_DIR, "type": "Directory"}}],
        },
    });
    Manifest {
        component,
        image,
        yaml: runtime::resources::yaml_of(&doc),
    }
}

pub fn api_server(cfg: &MachineConfig, input: &RenderInput) -> Manifest {
    let c = &cfg.cluster;
    let issuer = format!("https://kubernetes.default.svc.{}", c.network.dns_domain);
    let mut d: BTreeMap<&str, String> = BTreeMap::from([
        ("allow-privileged", "true".into()),
        ("anonymous-auth", "true".into()),
        ("authorization-mode", "Node,RBAC".into()),
        ("bind-address", "0.0.0.0".into()),
        ("client-ca-file", k8s::CA_CERT.into()),
        ("enable-admission-plugins", "NodeRestriction".into()),
        ("enable-bootstrap-token-auth", "true".into()),
        // API Priority and Fairness (beta, on by default in 1.20) updates
        // its sample-and-watermark histograms on every request and every
        // 10 s: about a third of an idle API server's CPU under emulation
        // (pprof, 2026-12-07). The max-in-flight limits take its place, as
        // before 1.20.
        ("enable-priority-and-fairness", "false".into()),
        ("encryption-provider-config", k8s::ENCRYPTION_CONFIG.into()),
        ("etcd-cafile", k8s::ETCD_CA_CERT.into()),
        ("etcd-certfile", k8s::APISERVER_ETCD_CLIENT_CERT.into()),
        ("etcd-keyfile", k8s::APISERVER_ETCD_CLIENT_KEY.into()),
        (
            "etcd-servers",
            format!("https://127.0.0.1:{}", k8s::etcd::CLIENT_PORT),
        ),
        (
            "kubelet-client-certificate",
            k8s::APISERVER_KUBELET_CLIENT_CERT.into(),
        ),
        (
            "kubelet-client-key",
            k8s::APISERVER_KUBELET_CLIENT_KEY.into(),
        ),
        // Kubelets serve with certificates from the cluster CA
        // (serverTLSBootstrap): verify them for logs, exec and port-forward.
        ("kubelet-certificate-authority", k8s::CA_CERT.into()),
        // The aggregator dials an APIService's endpoints (the metrics
        // server's Pod) directly, not through kube-proxy's Service rules,
        // which a host-network API server may not traverse.
        ("enable-aggregator-routing", "true".into()),
        (
            "kubelet-preferred-address-types",
            "InternalIP,ExternalIP,Hostname".into(),
        ),
        ("profiling", "false".into()),
        (
            "proxy-client-cert-file",
            k8s::FRONT_PROXY_CLIENT_CERT.into(),
        ),
        ("proxy-client-key-file", k8s::FRONT_PROXY_CLIENT_KEY.into()),
        ("requestheader-allowed-names", "front-proxy-client".into()),
        (
            "requestheader-client-ca-file",
            k8s::FRONT_PROXY_CA_CERT.into(),
        ),
        (
            "requestheader-extra-headers-prefix",
            "X-Remote-Extra-".into(),
        ),
        ("requestheader-group-headers", "X-Remote-Group".into()),
        ("requestheader-username-headers", "X-Remote-User".into()),
        ("secure-port", k8s::APISERVER_PORT.to_string()),
        ("service-account-issuer", issuer),
        ("service-account-key-file", k8s::SA_PUB.into()),
        ("service-account-signing-key-file", k8s::SA_KEY.into()),
        (
            "service-cluster-ip-range",
            joined(&c.network.service_subnets),
        ),
        ("tls-cert-file", k8s::APISERVER_CERT.into()),
        ("tls-private-key-file", k8s::APISERVER_KEY.into()),
    ]);
    if let Some(ip) = input.node_ip {
        d.insert("advertise-address", ip.to_string());
    }
    pod(
        "kube-apiserver",
        c.api_server_image().to_string(),
        flags(d, &c.api_server.extra_args),
        k8s::APISERVER_PORT,
        // Without etcd's check (the 1.20 API server has it in /livez): a slow
        // disk that stalls etcd's fsyncs (a large image import under
        // emulation) failed the probe, the kubelet killed a healthy API
        // server, and its restart took minutes; etcd has its own health.
        "/livez?exclude=etcd",
        input,
        "200m",
    )
}

/// Leader election of the controller-manager and the scheduler, slower
/// than upstream's 15 s lease / 10 s renew deadline: a busy or emulated
/// API server often takes more than 10 s to answer a renewal, and a lost
/// lease makes the component exit (a crash loop that slows everything
/// further). Failover takes up to a minute instead of 15 s.
fn leader_election() -> [(&'static str, String); 4] {
    [
        ("leader-elect", "true".into()),
        ("leader-elect-lease-duration", "60s".into()),
        ("leader-elect-renew-deadline", "45s".into()),
        ("leader-elect-retry-period", "10s".into()),
    ]
}

pub fn controller_manager(cfg: &MachineConfig, input: &RenderInput) -> Manifest {
    let c = &cfg.cluster;
    let kubeconfig = k8s::CONTROLLER_MANAGER_KUBECONFIG.to_string();
    let mut d: BTreeMap<&str, String> = BTreeMap::from([
        ("allocate-node-cidrs", "true".into()),
        ("authentication-kubeconfig", kubeconfig.clone()),
        ("authorization-kubeconfig", kubeconfig.clone()),
        ("bind-address", "127.0.0.1".into()),
        ("client-ca-file", k8s::CA_CERT.into()),
        ("cluster-cidr", joined(&c.network.pod_subnets)),
        ("cluster-name", c.cluster_name.to_string()),
        ("cluster-signing-cert-file", k8s::CA_CERT.into()),
        ("cluster-signing-key-file", k8s::CA_KEY.into()),
        ("controllers", "*,bootstrapsigner,tokencleaner".into()),
        ("kubeconfig", kubeconfig),
        ("profiling", "false".into()),
        (
            "requestheader-client-ca-file",
            k8s::FRONT_PROXY_CA_CERT.into(),
        ),
        ("root-ca-file", k8s::CA_CERT.into()),
        ("service-account-private-key-file", k8s::SA_KEY.into()),
        (
            "service-cluster-ip-range",
            joined(&c.network.service_subnets),
        ),
        ("use-service-account-credentials", "true".into()),
    ]);
    d.extend(leader_election());
    pod(
        "kube-controller-manager",
        c.controller_manager_image().to_string(),
        flags(d, &c.controller_manager.extra_args),
        10257,
        "/healthz",
        input,
        "200m",
    )
}

pub fn scheduler(cfg: &MachineConfig, input: &RenderInput) -> Manifest {
    let c = &cfg.cluster;
    let kubeconfig = k8s::SCHEDULER_KUBECONFIG.to_string();
    let mut d: BTreeMap<&str, String> = BTreeMap::from([
        ("authentication-kubeconfig", kubeconfig.clone()),
        ("authorization-kubeconfig", kubeconfig.clone()),
        ("bind-address", "127.0.0.1".into()),
        ("kubeconfig", kubeconfig),
        ("profiling", "false".into()),
    ]);
    d.extend(leader_election());
    pod(
        "kube-scheduler",
        c.scheduler_image().to_string(),
        flags(d, &c.scheduler.extra_args),
        10259,
        "/healthz",
        input,
        "100m",
    )
}

/// Every control-plane manifest.
pub fn control_plane(cfg: &MachineConfig, input: &RenderInput) -> Vec<Manifest> {
    vec![
        api_server(cfg, input),
        controller_manager(cfg, input),
        scheduler(cfg, input),
    ]
}

/// A digest of every file in `dir` (names and contents), for
/// [`SECRETS_ANNOTATION`].
pub fn dir_digest(dir: &std::path::Path) -> String {
    use sha2::{Digest, Sha256};
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    let mut h = Sha256::new();
    for p in names {
        h.update(
            p.file_name()
                .map(|n| n.as_encoded_bytes())
                .unwrap_or_default(),
        );
        h.update([0]);
        h.update(std::fs::read(&p).unwrap_or_default());
        h.update([0]);
    }
    hex::encode(&h.finalize()[..8])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil;

    fn input() -> RenderInput {
        RenderInput {
            node_ip: Some("10.5.0.2".parse().unwrap()),
            secrets_digest: "0123456789abcdef".into(),
            api_ready: true,
        }
    }

    #[test]
    fn manifests_match_golden_files() {
        let mut cfg = testutil::machine_config();
        cfg.cluster
            .api_server
            .extra_args
            .insert("v".parse().unwrap(), config::types::ScalarString::new("2"));
        cfg.cluster.api_server.extra_args.insert(
            "profiling".parse().unwrap(),
            config::types::ScalarString::new("true"),
        );
        for m in control_plane(&cfg, &input()) {
            testutil::golden(&format!("staticpods/{}.yaml", m.component), &m.yaml);
        }
    }

    #[test]
    fn manifests_are_pods_with_the_config_images() {
        let mut cfg = testutil::machine_config();
        cfg.cluster.scheduler.image = Some("registry.example/sched:v9".parse().unwrap());
        let m = control_plane(&cfg, &input());
        assert_eq!(m[0].image, "cairn.local/kube-apiserver:v1.20.2");
        assert_eq!(m[2].image, "registry.example/sched:v9");
        for m in &m {
            let pod: k8s_openapi::api::core::v1::Pod = serde_yaml::from_str(&m.yaml).unwrap();
            let spec = pod.spec.unwrap();
            assert_eq!(spec.host_network, Some(true));
            assert_eq!(
                spec.priority_class_name.as_deref(),
                Some("system-node-critical")
            );
            let mount = &spec.containers[0].volume_mounts.as_ref().unwrap()[0];
            assert_eq!(
                (mount.mount_path.as_str(), mount.read_only),
                (k8s::SECRETS_DIR, Some(true))
            );
        }
        let cm = &m[1].yaml;
        assert!(
            cm.contains("--allocate-node-cidrs=true")
                && cm.contains("--cluster-cidr=10.244.0.0/16"),
            "{cm}"
        );
    }

    #[test]
    fn secrets_digest_follows_the_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.crt"), "one").unwrap();
        let a = dir_digest(dir.path());
        assert_eq!(a, dir_digest(dir.path()));
        std::fs::write(dir.path().join("ca.crt"), "two").unwrap();
        assert_ne!(a, dir_digest(dir.path()));
    }
}
