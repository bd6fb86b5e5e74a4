//! Where a node's long-running services sit in the cgroup v2 tree.
//!
//! A process left in the root cgroup competes for CPU as one task of full
//! weight, while the kubelet's `/kubepods` competes as one group whose
//! weight follows the node's allocatable CPU (79 on a 2-CPU node). With
//! etcd, containerd and the kubelet in the root, every busy thread of
//! theirs weighed as much as all Pods together: while containerd unpacked
//! images at bring-up, kube-apiserver (a Pod) waited seconds for a CPU,
//! TLS handshakes to it timed out and the controller-manager and scheduler
//! lost their leases. In groups, the daemons of one kind share one weight.
//!
//! ```text
//! /sys/fs/cgroup
//! ├── podruntime/   containerd, etcd, kubelet (what Pods need to run)
//! ├── system/       apid and the node's other services
//! └── kubepods/     the kubelet's (Pods)
//! ```
//!
//! Weights come from millicores with the kubelet's own conversion, so they
//! compare with `/kubepods` as if the groups were Pods requesting that much.

use std::io;
use std::path::{Path, PathBuf};

use crate::mounts::CGROUP_CONTROLLERS;

/// Where cgroup v2 is mounted on a node.
pub const ROOT: &str = "/sys/fs/cgroup";

/// A top-level group of services.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    /// containerd, etcd and the kubelet.
    PodRuntime,
    /// apid and other services that are not on Kubernetes' path.
    System,
}

impl Group {
    pub const ALL: [Group; 2] = [Group::PodRuntime, Group::System];

    pub fn name(self) -> &'static str {
        match self {
            Group::PodRuntime => "podruntime",
            Group::System => "system",
        }
    }

    /// The CPU the group competes with, as a Pod's request would: the pod
    /// runtime as much as two CPUs' worth of Pods (so on a small node the
    /// API server's etcd and kubelet are not starved by Pods either), the
    /// rest half a CPU.
    pub fn millicores(self) -> u64 {
        match self {
            Group::PodRuntime => 2000,
            Group::System => 500,
        }
    }

    /// The group's directory under `root`.
    pub fn dir(self, root: &Path) -> PathBuf {
        root.join(self.name())
    }

    /// A service's own cgroup in this group (its CPU and memory accounted
    /// apart from its neighbours').
    pub fn service(self, root: &Path, service: &str) -> PathBuf {
        self.dir(root).join(service)
    }

    /// A service's own cgroup on a node (under [`ROOT`]).
    pub fn node_service(self, service: &str) -> PathBuf {
        self.service(Path::new(ROOT), service)
    }
}

/// `cpu.weight` for a CPU request in millicores, as the kubelet converts
/// one (millicores → cgroup v1 shares → cgroup v2 weight).
pub fn weight_of_millicores(millicores: u64) -> u64 {
    let shares = (millicores * 1024 / 1000).max(2);
    1 + (shares - 2) * 9999 / 262_142
}

/// Creates the groups under `root` with their CPU weights and hands the
/// controllers down to the services' cgroups. Returns what could not be
/// set, with the reason (a service still runs, in its group or not).
pub fn prepare(root: &Path) -> Vec<(PathBuf, io::Error)> {
    let mut problems = Vec::new();
    for g in Group::ALL {
        let dir = g.dir(root);
        if let Err(e) = std::fs::create_dir_all(&dir) {
            problems.push((dir, e));
            continue;
        }
        let weight = dir.join("cpu.weight");
        if let Err(e) = std::fs::write(&weight, weight_of_millicores(g.millicores()).to_string()) {
            problems.push((weight, e));
        }
        let subtree = dir.join("cgroup.subtree_control");
        for c in CGROUP_CONTROLLERS {
            // Only what the root hands down can be handed on.
            if let Err(e) = std::fs::write(&subtree, format!("+{c}")) {
                if e.raw_os_error() != Some(libc::ENOENT) {
                    problems.push((subtree.join(c), e));
                }
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_follow_the_kubelets_conversion() {
        // The kubelet gives /kubepods 79 on a node with 2 allocatable CPUs.
        assert_eq!(weight_of_millicores(2000), 79);
        assert_eq!(weight_of_millicores(500), 20);
        assert_eq!(weight_of_millicores(0), 1);
        assert_eq!(weight_of_millicores(262_144_000 / 1024), 10_000);
    }

    #[test]
    fn services_have_their_own_cgroup_in_their_group() {
        let root = Path::new(ROOT);
        assert_eq!(
            Group::PodRuntime.service(root, "etcd"),
            Path::new("/sys/fs/cgroup/podruntime/etcd")
        );
        assert_eq!(
            Group::System.service(root, "apid"),
            Path::new("/sys/fs/cgroup/system/apid")
        );
    }

    #[test]
    fn prepare_writes_the_weights() {
        // A plain directory stands in for cgroupfs: the files are written
        // as the kernel would accept them.
        let dir = tempfile::tempdir().unwrap();
        let problems = prepare(dir.path());
        assert!(problems.is_empty(), "{problems:?}");
        let w = std::fs::read_to_string(dir.path().join("podruntime/cpu.weight")).unwrap();
        assert_eq!(w, "79");
        let w = std::fs::read_to_string(dir.path().join("system/cpu.weight")).unwrap();
        assert_eq!(w, "20");
    }
}
