//! What machined knows about the node, shared by the boot sequence, the
//! API and the console. machined is the only place node state lives; apid
//! asks for it over the unix socket.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use api::machine::VersionResponse;
use tokio::sync::mpsc;

use crate::cmdline::Cmdline;
use crate::shutdown::PowerAction;
use crate::supervisor::logbuf::LogRing;
use crate::supervisor::Supervisor;

pub struct Node {
    pub cmdline: Cmdline,
    hostname: Mutex<String>,
    maintenance: AtomicBool,
    pub supervisor: Arc<Supervisor>,
    /// machined's own log ring (`cairnctl logs machined`).
    pub logs: Arc<LogRing>,
    /// Asks the boot sequence to shut down or reboot.
    pub power: mpsc::Sender<PowerAction>,
}

/// The architecture as Go and image names spell it (`amd64`, `arm64`).
pub fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// The running kernel's release (`uname -r`).
pub fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

impl Node {
    pub fn new(
        cmdline: Cmdline,
        supervisor: Arc<Supervisor>,
        logs: Arc<LogRing>,
        power: mpsc::Sender<PowerAction>,
    ) -> Self {
        Self {
            cmdline,
            hostname: Mutex::new(String::new()),
            maintenance: AtomicBool::new(false),
            supervisor,
            logs,
            power,
        }
    }

    pub fn hostname(&self) -> String {
        self.hostname
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn set_hostname(&self, name: &str) {
        *self.hostname.lock().unwrap_or_else(|e| e.into_inner()) = name.to_string();
    }

    pub fn maintenance(&self) -> bool {
        self.maintenance.load(Ordering::SeqCst)
    }

    pub fn set_maintenance(&self, on: bool) {
        self.maintenance.store(on, Ordering::SeqCst);
    }

    pub fn version(&self) -> VersionResponse {
        VersionResponse {
            version: config::version::VERSION.to_string(),
            build_id: config::version::BUILD_ID.to_string(),
            git_commit: String::new(),
            arch: arch().to_string(),
            kernel: kernel_release(),
            booted_slot: self.cmdline.slot().unwrap_or_default().to_string(),
            maintenance: self.maintenance(),
            hostname: self.hostname(),
        }
    }
}

/// A hostname for a node that has not been given one: `cairn-` and the
/// last three bytes of its MAC address, so it is stable across reboots.
pub fn default_hostname(mac: Option<[u8; 6]>) -> String {
    match mac {
        Some(m) => format!("cairn-{:02x}{:02x}{:02x}", m[3], m[4], m[5]),
        None => "cairn".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_reflects_node_state() {
        let (tx, _rx) = mpsc::channel(1);
        let node = Node::new(
            Cmdline::parse("cairn.slot=B"),
            crate::supervisor::Supervisor::new(),
            Arc::new(LogRing::new(1024)),
            tx,
        );
        node.set_hostname("n1");
        node.set_maintenance(true);
        let v = node.version();
        assert_eq!(v.version, config::version::VERSION);
        assert_eq!(v.booted_slot, "B");
        assert_eq!(v.hostname, "n1");
        assert!(v.maintenance);
        assert_eq!(v.arch, "amd64");
        assert!(!v.kernel.is_empty());
    }

    #[test]
    fn default_hostname_from_mac() {
        assert_eq!(
            default_hostname(Some([0x52, 0x54, 0, 0x12, 0x34, 0x56])),
            "cairn-123456"
        );
        assert_eq!(default_hostname(None), "cairn");
    }
}
