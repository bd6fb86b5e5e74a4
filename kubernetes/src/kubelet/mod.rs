//! The kubelet: its generated KubeletConfiguration, its flags (Kubernetes
//! 1.20 still takes the CRI endpoint as flags) and the supervised service,
//! which waits for containerd.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use config::constants::k8s;
use config::spec::MachineType;
use config::MachineConfig;

use crate::containerd::{payload_env, PAYLOAD_BIN};
use crate::specs::{current, KubeletSpec, StartedWith};
use runtime::resources::Store;
use runtime::supervisor::prepared::{Prepare, PreparedRunner};
use runtime::supervisor::process::ProcessRunner;
use runtime::supervisor::restart::{RestartPolicy, RestartRunner};
use runtime::supervisor::{HealthCheck, Service};

/// The service's id.
pub const SERVICE: &str = "kubelet";
/// Where the kubelet keeps its own certificates (self-signed serving
/// certificate, rotated client certificates of workers).
pub const CERT_DIR: &str = "/var/lib/kubelet/pki";
/// The kubelet's healthz endpoint (localhost only).
pub const HEALTHZ_PORT: u16 = 10248;

/// What the kubelet needs to know about the node beyond the config.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeRegistration {
    pub hostname: String,
    /// The address the node registers with (`--node-ip`).
    pub node_ip: Option<IpAddr>,
}

/// The KubeletConfiguration document.
pub fn kubelet_configuration(cfg: &MachineConfig) -> String {
    let net = &cfg.cluster.network;
    let dns = crate::dns_service_ip(cfg);
    let doc = serde_json::json!({
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "cgroupDriver": "cgroupfs",
        "staticPodPath": k8s::MANIFESTS_DIR,
        "clusterDNS": dns.map(|ip| vec![ip.to_string()]).unwrap_or_default(),
        "clusterDomain": net.dns_domain.to_string(),
        "authentication": {
            "anonymous": {"enabled": false},
            "webhook": {"enabled": true},
            "x509": {"clientCAFile": k8s::CA_CERT},
        },
        "authorization": {"mode": "Webhook"},
        // The kubelet asks for a serving certificate from the cluster CA
        // (a control plane's machined approves it for the Node's own
        // names: manifests::csr_approver), so the API server and the
        // metrics add-on verify it.
        "serverTLSBootstrap": true,
        "rotateCertificates": true,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": HEALTHZ_PORT,
        "failSwapOn": false,
        // /var may be a small tmpfs (live boot): evict only when it is
        // nearly full, not at the default 10-15 %.
        "evictionHard": {
            "memory.available": "100Mi",
            "nodefs.available": "5%",
            "imagefs.available": "5%",
        },
        "imageGCHighThresholdPercent": 95,
        "imageGCLowThresholdPercent": 90,
        // The Node's status is computed every 4 s instead of 10 s, so a
        // node turns Ready within 4 s of its CNI config (bring-up, issue
        // 17); it is still posted only when it changes (or every 5 min),
        // so the API server sees no more writes than with the defaults.
        "nodeStatusUpdateFrequency": "4s",
        "nodeStatusReportFrequency": "5m",
    });
    runtime::resources::yaml_of(&doc)
}

/// The kubelet's flags, `--name=value`, sorted; `machine.kubelet.extraArgs`
/// override Cairn's.
pub fn flags(cfg: &MachineConfig, facts: &NodeRegistration) -> Vec<String> {
    let mut f: BTreeMap<String, String> = BTreeMap::new();
    let mut set = |k: &str, v: String| {
        f.insert(k.to_string(), v);
    };
    set("config", k8s::KUBELET_CONFIG.into());
    set("kubeconfig", k8s::KUBELET_KUBECONFIG.into());
    if cfg.machine.machine_type == MachineType::Worker {
        set(
            "bootstrap-kubeconfig",
            k8s::BOOTSTRAP_KUBELET_KUBECONFIG.into(),
        );
    }
    set("cert-dir", CERT_DIR.into());
    set("root-dir", k8s::KUBELET_DIR.into());
    set("container-runtime", "remote".into());
    set(
        "container-runtime-endpoint",
        format!("unix://{}", k8s::CONTAINERD_SOCKET),
    );
    set("hostname-override", facts.hostname.clone());
    if let Some(ip) = facts.node_ip {
        set("node-ip", ip.to_string());
    }
    let kubelet = &cfg.machine.kubelet;
    if !kubelet.node_labels.is_empty() {
        let labels: Vec<String> = kubelet
            .node_labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        set("node-labels", labels.join(","));
    }
    let mut taints: Vec<String> = kubelet
        .node_taints
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    if cfg.machine.machine_type == MachineType::Controlplane
        && !cfg.cluster.allow_scheduling_on_control_planes
    {
        taints.push("node-role.kubernetes.io/master=:NoSchedule".into());
    }
    if !taints.is_empty() {
        set("register-with-taints", taints.join(","));
    }
    for (k, v) in &kubelet.extra_args {
        set(&k.to_string(), v.to_string());
    }
    f.into_iter().map(|(k, v)| format!("--{k}={v}")).collect()
}

#[derive(Debug, thiserror::Error)]
pub enum KubeletError {
    #[error("cannot create {path}: {source}")]
    Dir {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        source: config::fsutil::WriteError,
    },
}

/// Writes the KubeletConfiguration text and creates the kubelet's
/// directories.
pub fn prepare(configuration: &str) -> Result<(), KubeletError> {
    for dir in [
        k8s::KUBELET_DIR,
        CERT_DIR,
        k8s::MANIFESTS_DIR,
        k8s::POD_LOGS_DIR,
        k8s::CNI_CONF_DIR,
    ] {
        std::fs::create_dir_all(dir).map_err(|source| KubeletError::Dir {
            path: dir.into(),
            source,
        })?;
    }
    let path = std::path::Path::new(k8s::KUBELET_CONFIG);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|source| KubeletError::Dir {
            path: parent.display().to_string(),
            source,
        })?;
    }
    config::fsutil::write_private(path, configuration.as_bytes(), true).map_err(|source| {
        KubeletError::Write {
            path: path.display().to_string(),
            source,
        }
    })
}

/// The kubelet as a service: after containerd is healthy, restarted
/// always, healthy when its healthz answers. Every start reads the
/// [`KubeletSpec`] the store has then (flags and configuration), and
/// `started` records which one that was.
pub fn service(store: &Arc<Store>, started: StartedWith<KubeletSpec>) -> Service {
    let store = store.clone();
    let prepare_fn: Prepare = Arc::new(move || {
        let spec = current::<KubeletSpec>(&store, KubeletSpec::ID)?;
        prepare(&spec.configuration).map_err(|e| e.to_string())?;
        let mut runner =
            ProcessRunner::new(PathBuf::from(PAYLOAD_BIN).join("kubelet")).args(spec.flags.clone());
        runner.env = payload_env();
        runner.cgroup = Some(system::cgroups::Group::PodRuntime.node_service(SERVICE));
        started.set(spec);
        Ok(runner)
    });
    let url = format!("http://127.0.0.1:{HEALTHZ_PORT}/healthz");
    Service::new(
        SERVICE,
        RestartRunner::new(PreparedRunner::new(prepare_fn), RestartPolicy::Always),
    )
    .depends_on(crate::containerd::SERVICE)
    .health(
        HealthCheck::new(Duration::from_secs(15), Duration::from_secs(3), move || {
            let url = url.clone();
            async move {
                host::http::get(&url, Duration::from_secs(3))
                    .await
                    .map(drop)
                    .map_err(|e| e.to_string())
            }
        })
        // The kubelet takes long to start under emulation.
        .startup_grace(Duration::from_secs(180)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil;

    fn facts() -> NodeRegistration {
        NodeRegistration {
            hostname: "cp1".into(),
            node_ip: Some("10.5.0.2".parse().unwrap()),
        }
    }

    #[test]
    fn configuration_matches_golden_file() {
        testutil::golden(
            "kubelet/kubelet.yaml",
            &kubelet_configuration(&testutil::machine_config()),
        );
    }

    #[test]
    fn control_plane_flags_match_golden_file() {
        let mut cfg = testutil::machine_config();
        cfg.machine
            .kubelet
            .extra_args
            .insert("v".parse().unwrap(), config::types::ScalarString::new("2"));
        cfg.machine
            .kubelet
            .node_labels
            .insert("example.com/zone".parse().unwrap(), "a".parse().unwrap());
        testutil::golden(
            "kubelet/flags-controlplane.txt",
            &(flags(&cfg, &facts()).join("\n") + "\n"),
        );
    }

    #[test]
    fn workers_bootstrap_and_extra_args_override() {
        let mut cfg = testutil::worker_config();
        cfg.machine.kubelet.extra_args.insert(
            "node-ip".parse().unwrap(),
            config::types::ScalarString::new("192.0.2.7"),
        );
        let f = flags(
            &cfg,
            &NodeRegistration {
                hostname: "w1".into(),
                node_ip: Some("10.5.0.3".parse().unwrap()),
            },
        );
        assert!(f.contains(&format!(
            "--bootstrap-kubeconfig={}",
            k8s::BOOTSTRAP_KUBELET_KUBECONFIG
        )));
        assert!(f.contains(&"--node-ip=192.0.2.7".to_string()), "{f:?}");
        assert!(!f.iter().any(|x| x.contains("10.5.0.3")));
        assert!(!f.iter().any(|x| x.starts_with("--register-with-taints")));
    }

    #[test]
    fn cluster_dns_is_the_tenth_service_address() {
        let y: serde_json::Value =
            serde_yaml::from_str(&kubelet_configuration(&testutil::machine_config())).unwrap();
        assert_eq!(y["clusterDNS"][0], "10.96.0.10");
        assert_eq!(y["clusterDomain"], "cluster.local");
        assert_eq!(y["cgroupDriver"], "cgroupfs");
    }
}
