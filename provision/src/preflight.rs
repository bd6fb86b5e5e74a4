//! Checks before any VM starts: enough memory and disk for the nodes asked
//! for, QEMU installed, the images built. A cluster that cannot fit fails
//! here with numbers, not minutes later with a guest killed by the host's
//! OOM killer or a full disk.

use std::path::{Path, PathBuf};

use crate::cluster::NodeState;

/// QEMU's own memory per VM on top of the guest's (TCG's translation
/// cache, device emulation).
pub const QEMU_OVERHEAD_MIB: u64 = 256;
/// What a node's disk overlay grows to: the imported payload images,
/// containerd's snapshots, etcd and logs (a one-node cluster's overlay
/// measured 1.6 GiB after bring-up), with room to run.
pub const DISK_PER_NODE_MIB: u64 = 3072;

#[derive(Debug, thiserror::Error)]
pub enum PreflightError {
    #[error("not enough memory: {nodes} node(s) need {need} MiB ({detail}), and this machine has {available} MiB available (MemAvailable); ask for fewer nodes or less --memory")]
    Memory {
        nodes: usize,
        need: u64,
        available: u64,
        detail: String,
    },
    #[error("not enough disk space in {dir}: {nodes} node(s) need about {need} MiB, and {available} MiB are free; free some space or set CAIRN_CACHE to another file system")]
    Disk {
        dir: PathBuf,
        nodes: usize,
        need: u64,
        available: u64,
    },
    #[error("{program} is not installed (Debian: apt-get install {package})")]
    Missing {
        program: &'static str,
        package: &'static str,
    },
    #[error("reading {what}: {source}")]
    Read {
        what: String,
        source: std::io::Error,
    },
}

/// Memory the nodes need, in MiB, and how that adds up.
pub fn memory_needed(nodes: &[NodeState]) -> (u64, String) {
    let guests: u64 = nodes.iter().map(|n| u64::from(n.memory_mib)).sum();
    let overhead = QEMU_OVERHEAD_MIB * nodes.len() as u64;
    (
        guests + overhead,
        format!("{guests} MiB for the guests + {overhead} MiB for QEMU"),
    )
}

/// Disk the nodes need, in MiB.
pub fn disk_needed(nodes: &[NodeState]) -> u64 {
    DISK_PER_NODE_MIB * nodes.len() as u64
}

/// Compares what the nodes need with what the machine has.
pub fn check(
    nodes: &[NodeState],
    dir: &Path,
    memory_available_mib: u64,
    disk_available_mib: u64,
) -> Result<(), PreflightError> {
    let (need, detail) = memory_needed(nodes);
    if need > memory_available_mib {
        return Err(PreflightError::Memory {
            nodes: nodes.len(),
            need,
            available: memory_available_mib,
            detail,
        });
    }
    let need = disk_needed(nodes);
    if need > disk_available_mib {
        return Err(PreflightError::Disk {
            dir: dir.to_path_buf(),
            nodes: nodes.len(),
            need,
            available: disk_available_mib,
        });
    }
    Ok(())
}

/// `MemAvailable` from `/proc/meminfo`, in MiB.
pub fn memory_available_mib() -> Result<u64, PreflightError> {
    let text = std::fs::read_to_string("/proc/meminfo").map_err(|source| PreflightError::Read {
        what: "/proc/meminfo".into(),
        source,
    })?;
    parse_mem_available(&text).ok_or_else(|| PreflightError::Read {
        what: "/proc/meminfo".into(),
        source: std::io::Error::other("no MemAvailable line"),
    })
}

fn parse_mem_available(meminfo: &str) -> Option<u64> {
    let kib: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse()
        .ok()?;
    Some(kib / 1024)
}

/// Free space for unprivileged users (statvfs) on the file system that
/// holds `dir`, or its nearest existing ancestor, in MiB.
pub fn disk_available_mib(dir: &Path) -> Result<u64, PreflightError> {
    let existing = dir
        .ancestors()
        .find(|d| d.exists())
        .unwrap_or(Path::new("/"));
    let st = rustix::fs::statvfs(existing).map_err(|e| PreflightError::Read {
        what: format!("the free space of {}", existing.display()),
        source: e.into(),
    })?;
    Ok(st.f_bavail.saturating_mul(st.f_frsize) / (1024 * 1024))
}

/// QEMU and qemu-img on PATH.
pub fn tools() -> Result<(), PreflightError> {
    for (program, package) in [
        (crate::qemu::QEMU, "qemu-system-x86"),
        ("qemu-img", "qemu-utils"),
    ] {
        if !on_path(program) {
            return Err(PreflightError::Missing { program, package });
        }
    }
    Ok(())
}

fn on_path(program: &str) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|d| {
            std::fs::metadata(d.join(program))
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::{plan, Request};

    fn nodes(cps: u32, workers: u32) -> Vec<NodeState> {
        plan(&Request {
            name: "demo".into(),
            controlplanes: cps,
            workers,
            controlplane_memory_mib: 4096,
            worker_memory_mib: 2048,
            cpus: 2,
        })
        .unwrap()
    }

    #[test]
    fn too_little_memory_is_an_error_with_the_numbers() {
        let n = nodes(1, 1);
        let err = check(&n, Path::new("/c"), 4000, 1 << 20)
            .unwrap_err()
            .to_string();
        assert!(err.contains("2 node(s) need 6656 MiB"), "{err}");
        assert!(
            err.contains("6144 MiB for the guests + 512 MiB for QEMU"),
            "{err}"
        );
        assert!(err.contains("4000 MiB available"), "{err}");
        check(&n, Path::new("/c"), 6656, 1 << 20).unwrap();
    }

    #[test]
    fn too_little_disk_names_the_directory() {
        let n = nodes(1, 2);
        let err = check(&n, Path::new("/cache/clusters/demo"), 1 << 20, 5000)
            .unwrap_err()
            .to_string();
        assert!(err.contains("/cache/clusters/demo"), "{err}");
        assert!(err.contains("need about 9216 MiB"), "{err}");
        assert!(err.contains("5000 MiB are free"), "{err}");
    }

    #[test]
    fn mem_available_is_read_from_meminfo() {
        let text =
            "MemTotal:       24522132 kB\nMemFree:        1 kB\nMemAvailable:   22843252 kB\n";
        assert_eq!(parse_mem_available(text), Some(22307));
        assert_eq!(parse_mem_available("MemTotal: 1 kB\n"), None);
        assert!(memory_available_mib().unwrap() > 0);
    }

    #[test]
    fn free_space_of_a_directory_not_made_yet_is_its_parents() {
        let dir = tempfile::tempdir().unwrap();
        let later = dir.path().join("clusters/demo");
        assert!(disk_available_mib(&later).unwrap() > 0);
    }
}
