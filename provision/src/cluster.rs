//! A local cluster's plan and its directory.
//!
//! `$CAIRN_CACHE/clusters/<name>/` (by default `~/.cache/cairn/clusters/<name>`)
//! holds everything of one cluster, so `destroy` is "stop what the pid files
//! name, remove the directory":
//!
//! ```text
//! cluster.json            the plan: nodes, addresses, forwarded ports (ClusterState)
//! net/hub.sock, hub.pid   the private network's switch (crate::hub), hub.log
//! net/<node>.sock         each VM's end of the private network
//! <node>/disk.qcow2       the node's disk, an overlay over the raw image
//! <node>/console.log      its serial console; qemu.log, qemu.pid
//! secrets.yaml, controlplane.yaml, worker.yaml, <node>.yaml
//! cairnconfig, kubeconfig
//! ```
//!
//! The private network is 10.5.0.0/24: control planes from 10.5.0.2,
//! workers from 10.5.0.10, each NIC's MAC ending in its address's last
//! octet, and the Kubernetes endpoint on the first control plane.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The private network between the nodes.
pub const NETWORK: &str = "10.5.0.0/24";
/// Its prefix length.
pub const PREFIX: u8 = 24;
/// The first control plane's address; the next ones follow it.
pub const FIRST_CONTROL_PLANE: Ipv4Addr = Ipv4Addr::new(10, 5, 0, 2);
/// The first worker's address; the next ones follow it.
pub const FIRST_WORKER: Ipv4Addr = Ipv4Addr::new(10, 5, 0, 10);
/// At most this many control planes fit below the first worker's address.
pub const MAX_CONTROL_PLANES: u32 = 8;
/// At most this many workers fit in the network.
pub const MAX_WORKERS: u32 = 240;
/// The Kubernetes API port in the guest.
pub const APISERVER_PORT: u16 = 6443;
/// apid's join port (cairn.security.v1) on control planes.
pub const JOIN_PORT: u16 = 50001;
/// Boot disk size of a node: the imported images take about twice their
/// 312 MB on /var, and the kubelet taints a node whose /var is 95 % full
/// with disk-pressure (the 2 GiB raw image leaves /var 0.8 GiB).
pub const NODE_DISK_GIB: u32 = 6;
/// The state file in the cluster directory.
pub const STATE_FILE: &str = "cluster.json";

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cluster name {0:?}: use lower-case letters, digits and '-' (at most 40, starting with a letter)")]
    BadName(String),
    #[error("--controlplanes {0}: a cluster needs at least one control plane")]
    NoControlPlane(u32),
    #[error("--controlplanes {0}: at most {MAX_CONTROL_PLANES} fit the private network")]
    TooManyControlPlanes(u32),
    #[error("--workers {0}: at most {MAX_WORKERS} fit the private network")]
    TooManyWorkers(u32),
    #[error("--memory {0} MiB: a node needs at least {min} MiB", min = MIN_MEMORY_MIB)]
    TooLittleMemory(u32),
    #[error("--cpus {0}: at least 1")]
    NoCpus(u32),
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a cluster state file: {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no cluster directory: set CAIRN_CACHE or HOME")]
    NoCacheDir,
}

/// The least memory a node boots Kubernetes with.
pub const MIN_MEMORY_MIB: u32 = 1024;

/// What a node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Controlplane,
    Worker,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Controlplane => "controlplane",
            Role::Worker => "worker",
        }
    }
}

/// One node of the plan, with the host ports forwarded to it once started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeState {
    /// Host name and VM name: `cp-1`, `worker-1`, ...
    pub name: String,
    pub role: Role,
    /// Its address on the private network.
    pub ip: Ipv4Addr,
    /// The private NIC's MAC address (the config selects the NIC by it).
    pub mac: String,
    pub memory_mib: u32,
    pub cpus: u32,
    /// 127.0.0.1:<port> -> the node's apid (50000).
    pub apid_port: u16,
    /// 127.0.0.1:<port> -> the Kubernetes API (control planes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_port: Option<u16>,
    /// 127.0.0.1:<port> -> apid's join port (control planes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub join_port: Option<u16>,
}

/// A kube context merged into a kubeconfig file, removed again on destroy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MergedContext {
    pub path: PathBuf,
    pub context: String,
}

/// What `cluster.json` holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterState {
    pub name: String,
    pub network: String,
    /// `cluster.controlPlane.endpoint` of the configs.
    pub endpoint: String,
    /// The images the nodes booted.
    pub image_dir: PathBuf,
    pub nodes: Vec<NodeState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merged_context: Option<MergedContext>,
}

/// What the user asked for.
#[derive(Debug, Clone)]
pub struct Request {
    pub name: String,
    pub controlplanes: u32,
    pub workers: u32,
    pub controlplane_memory_mib: u32,
    pub worker_memory_mib: u32,
    pub cpus: u32,
}

/// Checks `name`: it names a directory, a kube context and a cluster.
pub fn check_name(name: &str) -> Result<(), ClusterError> {
    let ok = !name.is_empty()
        && name.len() <= 40
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(ClusterError::BadName(name.to_string()))
    }
}

fn nth(first: Ipv4Addr, i: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(first) + i)
}

/// The MAC address of the private NIC with `ip`.
pub fn mac_for(ip: Ipv4Addr) -> String {
    let o = ip.octets();
    format!("52:54:00:ca:{:02x}:{:02x}", o[2], o[3])
}

/// The nodes for `request`, ports not assigned yet (0).
pub fn plan(request: &Request) -> Result<Vec<NodeState>, ClusterError> {
    check_name(&request.name)?;
    if request.controlplanes == 0 {
        return Err(ClusterError::NoControlPlane(0));
    }
    if request.controlplanes > MAX_CONTROL_PLANES {
        return Err(ClusterError::TooManyControlPlanes(request.controlplanes));
    }
    if request.workers > MAX_WORKERS {
        return Err(ClusterError::TooManyWorkers(request.workers));
    }
    for m in [request.controlplane_memory_mib, request.worker_memory_mib] {
        if m < MIN_MEMORY_MIB {
            return Err(ClusterError::TooLittleMemory(m));
        }
    }
    if request.cpus == 0 {
        return Err(ClusterError::NoCpus(0));
    }
    let node = |name: String, role, ip, memory_mib| NodeState {
        name,
        role,
        ip,
        mac: mac_for(ip),
        memory_mib,
        cpus: request.cpus,
        apid_port: 0,
        api_port: None,
        join_port: None,
    };
    let cps = (0..request.controlplanes).map(|i| {
        node(
            format!("cp-{}", i + 1),
            Role::Controlplane,
            nth(FIRST_CONTROL_PLANE, i),
            request.controlplane_memory_mib,
        )
    });
    let workers = (0..request.workers).map(|i| {
        node(
            format!("worker-{}", i + 1),
            Role::Worker,
            nth(FIRST_WORKER, i),
            request.worker_memory_mib,
        )
    });
    Ok(cps.chain(workers).collect())
}

/// The endpoint of a cluster whose first control plane is `nodes[0]`.
pub fn endpoint(nodes: &[NodeState]) -> String {
    let ip = nodes
        .iter()
        .find(|n| n.role == Role::Controlplane)
        .map_or(FIRST_CONTROL_PLANE, |n| n.ip);
    format!("https://{ip}:{APISERVER_PORT}")
}

/// The clusters' directory in a cache directory.
pub const CLUSTERS: &str = "clusters";

/// `$CAIRN_CACHE/clusters`, else [`default_clusters_dir`].
pub fn clusters_dir() -> Result<PathBuf, ClusterError> {
    std::env::var_os("CAIRN_CACHE")
        .filter(|v| !v.is_empty())
        .map(|d| PathBuf::from(d).join(CLUSTERS))
        .or_else(default_clusters_dir)
        .ok_or(ClusterError::NoCacheDir)
}

/// Where clusters are without `CAIRN_CACHE`: `~/.cache/cairn/clusters`
/// (`$XDG_CACHE_HOME/cairn/clusters` when that is set).
pub fn default_clusters_dir() -> Option<PathBuf> {
    dirs::cache_dir().map(|d| d.join("cairn").join(CLUSTERS))
}

/// The paths of one cluster's directory.
#[derive(Debug, Clone)]
pub struct Layout {
    pub dir: PathBuf,
}

impl Layout {
    pub fn new(dir: impl Into<PathBuf>) -> Layout {
        Layout { dir: dir.into() }
    }

    /// The cluster `name` under [`clusters_dir`].
    pub fn named(name: &str) -> Result<Layout, ClusterError> {
        check_name(name)?;
        Ok(Layout::new(clusters_dir()?.join(name)))
    }

    /// The cluster `name` when `CAIRN_CACHE` is `cache`.
    pub fn in_cache(cache: &Path, name: &str) -> Result<Layout, ClusterError> {
        check_name(name)?;
        Ok(Layout::new(cache.join(CLUSTERS).join(name)))
    }

    pub fn state_file(&self) -> PathBuf {
        self.dir.join(STATE_FILE)
    }
    pub fn net_dir(&self) -> PathBuf {
        self.dir.join("net")
    }
    pub fn hub_socket(&self) -> PathBuf {
        self.net_dir().join(crate::hub::HUB_SOCKET)
    }
    pub fn hub_pid(&self) -> PathBuf {
        self.net_dir().join("hub.pid")
    }
    pub fn hub_log(&self) -> PathBuf {
        self.net_dir().join("hub.log")
    }
    pub fn node_socket(&self, node: &str) -> PathBuf {
        self.net_dir().join(format!("{node}.sock"))
    }
    pub fn node_dir(&self, node: &str) -> PathBuf {
        self.dir.join(node)
    }
    pub fn console(&self, node: &str) -> PathBuf {
        self.node_dir(node).join("console.log")
    }
    pub fn qemu_log(&self, node: &str) -> PathBuf {
        self.node_dir(node).join("qemu.log")
    }
    pub fn qemu_pid(&self, node: &str) -> PathBuf {
        self.node_dir(node).join("qemu.pid")
    }
    pub fn node_config(&self, node: &str) -> PathBuf {
        self.dir.join(format!("{node}.yaml"))
    }
    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.join("kubeconfig")
    }
    pub fn cairnconfig(&self) -> PathBuf {
        self.dir.join("cairnconfig")
    }
    pub fn secrets(&self) -> PathBuf {
        self.dir.join("secrets.yaml")
    }

    /// Reads `cluster.json`.
    pub fn load(&self) -> Result<ClusterState, ClusterError> {
        let path = self.state_file();
        let text = std::fs::read(&path).map_err(|source| ClusterError::Read {
            path: path.clone(),
            source,
        })?;
        serde_json::from_slice(&text).map_err(|source| ClusterError::Parse { path, source })
    }

    /// Writes `cluster.json` (atomically: a temporary file renamed).
    pub fn save(&self, state: &ClusterState) -> Result<(), ClusterError> {
        let path = self.state_file();
        let write_err = |source| ClusterError::Write {
            path: path.clone(),
            source,
        };
        let text =
            serde_json::to_vec_pretty(state).map_err(|e| write_err(std::io::Error::other(e)))?;
        let tmp = self.dir.join(format!(".{STATE_FILE}.tmp"));
        std::fs::write(&tmp, text).map_err(write_err)?;
        std::fs::rename(&tmp, &path).map_err(write_err)
    }

    /// Whether a socket path of this cluster fits a unix socket address
    /// (the longest is the longest node name's).
    pub fn check_socket_paths(&self, nodes: &[NodeState]) -> Result<(), crate::hub::HubError> {
        crate::hub::check_socket_path(&self.hub_socket())?;
        for n in nodes {
            crate::hub::check_socket_path(&self.node_socket(&n.name))?;
        }
        Ok(())
    }
}

/// Whether `path` is inside a directory named like a cluster's, for
/// removals that must never leave it.
pub fn is_cluster_dir(path: &Path) -> bool {
    path.join(STATE_FILE).is_file()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(cps: u32, workers: u32) -> Request {
        Request {
            name: "demo".into(),
            controlplanes: cps,
            workers,
            controlplane_memory_mib: 4096,
            worker_memory_mib: 2048,
            cpus: 2,
        }
    }

    #[test]
    fn control_planes_from_10_5_0_2_and_workers_from_10_5_0_10() {
        let nodes = plan(&request(2, 3)).unwrap();
        let names: Vec<_> = nodes
            .iter()
            .map(|n| format!("{} {} {} {}", n.name, n.role.as_str(), n.ip, n.mac))
            .collect();
        assert_eq!(
            names,
            [
                "cp-1 controlplane 10.5.0.2 52:54:00:ca:00:02",
                "cp-2 controlplane 10.5.0.3 52:54:00:ca:00:03",
                "worker-1 worker 10.5.0.10 52:54:00:ca:00:0a",
                "worker-2 worker 10.5.0.11 52:54:00:ca:00:0b",
                "worker-3 worker 10.5.0.12 52:54:00:ca:00:0c",
            ]
        );
        assert_eq!(nodes[0].memory_mib, 4096);
        assert_eq!(nodes[2].memory_mib, 2048);
        assert_eq!(endpoint(&nodes), "https://10.5.0.2:6443");
    }

    #[test]
    fn bad_requests_name_the_flag() {
        let e = |r: Request| plan(&r).unwrap_err().to_string();
        assert!(e(request(0, 1)).contains("--controlplanes 0"));
        assert!(e(request(9, 1)).contains("--controlplanes 9"));
        assert!(e(request(1, 241)).contains("--workers 241"));
        let mut r = request(1, 1);
        r.worker_memory_mib = 512;
        assert!(e(r).contains("--memory 512"));
        let mut r = request(1, 1);
        r.name = "Bad_Name".into();
        assert!(e(r).contains("\"Bad_Name\""));
    }

    #[test]
    fn names_are_dns_labels() {
        for good in ["local", "a", "my-cluster-2"] {
            check_name(good).unwrap();
        }
        for bad in [
            "",
            "-a",
            "a-",
            "A",
            "a.b",
            "a/b",
            "..",
            "1a",
            &"a".repeat(41),
        ] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_state_round_trips_through_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        let mut nodes = plan(&request(1, 1)).unwrap();
        nodes[0].apid_port = 50000;
        nodes[0].api_port = Some(6443);
        let state = ClusterState {
            name: "demo".into(),
            network: NETWORK.into(),
            endpoint: endpoint(&nodes),
            image_dir: "/o".into(),
            nodes,
            merged_context: None,
        };
        layout.save(&state).unwrap();
        assert!(is_cluster_dir(dir.path()));
        assert_eq!(layout.load().unwrap(), state);
        std::fs::write(layout.state_file(), "{").unwrap();
        let err = layout.load().unwrap_err().to_string();
        assert!(
            err.contains("cluster.json is not a cluster state file"),
            "{err}"
        );
    }
}
