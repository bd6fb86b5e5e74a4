//! What machined knows about the node, shared by the boot sequence, the
//! API and the console. machined is the only place node state lives; apid
//! asks for it over the unix socket.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use api::machine::VersionResponse;
use tokio::sync::mpsc;

use crate::cmdline::Cmdline;
use crate::resources::events::EventLog;
use crate::resources::machineconfig::MachineConfigSpec;
use crate::resources::specs::{ApidMode, EventType, HostnameSpec, MachineStatusSpec, Stage};
use crate::resources::{kind, Store, Writer};
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
    /// The one owner of machine-level actions (install, upgrade, rollback,
    /// reset, reboot, shutdown, apply) and of the power state.
    pub lifecycle: Arc<crate::lifecycle::Lifecycle>,
    /// Set once Kubernetes' bring-up has started (it retries until it
    /// succeeds, so it never needs to start twice).
    pub kubernetes_started: AtomicBool,
    /// Applies machine configs (ApplyConfiguration, ConfirmConfiguration);
    /// set by the boot sequence once STATE is known.
    pub configurator: std::sync::OnceLock<Arc<crate::apply::Configurator>>,
    /// The resource store: everything the API lists and watches.
    pub store: Arc<Store>,
    /// The event log (`cairnctl events`).
    pub events: Arc<EventLog>,
    /// Writes the resources the boot sequence owns: hostname, machine
    /// status and machine config.
    writer: Writer,
    status: Mutex<MachineStatusSpec>,
}

/// Shared with apid, which answers Version itself.
pub use config::version::{arch, kernel_release};

impl Node {
    pub fn new(
        cmdline: Cmdline,
        supervisor: Arc<Supervisor>,
        logs: Arc<LogRing>,
        power: mpsc::Sender<PowerAction>,
    ) -> Self {
        let store = Store::new();
        let fresh = "a fresh store has no writers yet";
        let events = Arc::new(EventLog::new(&store).expect(fresh));
        let writer = store
            .writer(
                "node",
                &[kind::HOSTNAME, kind::MACHINE_STATUS, kind::MACHINE_CONFIG],
            )
            .expect(fresh);
        let status = MachineStatusSpec::default();
        let _ = writer.put(MachineStatusSpec::ID, status.clone());
        Self {
            cmdline,
            hostname: Mutex::new(String::new()),
            maintenance: AtomicBool::new(false),
            supervisor,
            logs,
            lifecycle: crate::lifecycle::Lifecycle::new(power.clone(), Some(events.clone())),
            power,
            kubernetes_started: AtomicBool::new(false),
            configurator: std::sync::OnceLock::new(),
            store,
            events,
            writer,
            status: Mutex::new(status),
        }
    }

    /// Changes the machine status resource; records a stage event when
    /// the stage changes.
    pub fn update_status(&self, change: impl FnOnce(&mut MachineStatusSpec)) {
        let mut status = self.status.lock().unwrap_or_else(|e| e.into_inner());
        let before = status.stage;
        change(&mut status);
        if status.stage != before {
            self.events
                .record(EventType::Stage, format!("stage {}", status.stage.as_str()));
        }
        let _ = self.writer.put(MachineStatusSpec::ID, status.clone());
    }

    pub fn status(&self) -> MachineStatusSpec {
        self.status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn set_stage(&self, stage: Stage) {
        self.update_status(|s| s.stage = stage);
    }

    /// Makes `config` the running machine config (resource
    /// `machineconfig/running`), read from `source`.
    pub fn set_running_config(&self, config: config::MachineConfig, source: &str) {
        let _ = self
            .writer
            .put(MachineConfigSpec::RUNNING, MachineConfigSpec(config));
        self.events
            .record(EventType::Config, format!("running config from {source}"));
        self.update_status(|s| s.config_source = source.to_string());
    }

    /// The running machine config, if the node has one.
    pub fn running_config(&self) -> Option<config::MachineConfig> {
        self.store
            .spec::<MachineConfigSpec>(MachineConfigSpec::RUNNING)
            .map(|s| s.0)
    }

    pub fn hostname(&self) -> String {
        self.hostname
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn set_hostname(&self, name: &str) {
        *self.hostname.lock().unwrap_or_else(|e| e.into_inner()) = name.to_string();
        let _ = self.writer.put(HostnameSpec::ID, HostnameSpec::new(name));
    }

    pub fn maintenance(&self) -> bool {
        self.maintenance.load(Ordering::SeqCst)
    }

    /// Enters or leaves maintenance mode: the stage and apid's mode follow.
    pub fn set_maintenance(&self, on: bool) {
        self.maintenance.store(on, Ordering::SeqCst);
        self.update_status(|s| {
            if on {
                s.stage = Stage::Maintenance;
                s.apid = ApidMode::Maintenance;
            } else {
                if matches!(s.stage, Stage::Booting | Stage::Maintenance) {
                    s.stage = Stage::Running;
                }
                s.apid = ApidMode::Mtls;
            }
        });
    }

    pub fn version(&self) -> VersionResponse {
        VersionResponse {
            version: config::version::running().version.clone(),
            build_id: config::version::running().build_id.clone(),
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
        assert_eq!(v.version, config::version::running().version);
        assert_eq!(v.booted_slot, "B");
        assert_eq!(v.hostname, "n1");
        assert!(v.maintenance);
        assert_eq!(v.arch, "amd64");
        assert!(!v.kernel.is_empty());
    }

    #[test]
    fn node_state_is_in_the_store() {
        let (tx, _rx) = mpsc::channel(1);
        let node = Node::new(
            Cmdline::default(),
            crate::supervisor::Supervisor::new(),
            Arc::new(LogRing::new(1024)),
            tx,
        );
        assert_eq!(node.status().stage, Stage::Booting);
        node.set_hostname("n1");
        node.set_maintenance(true);
        let h = node.store.spec::<HostnameSpec>(HostnameSpec::ID).unwrap();
        assert_eq!(h.hostname, "n1");
        let s = node
            .store
            .spec::<MachineStatusSpec>(MachineStatusSpec::ID)
            .unwrap();
        assert_eq!(
            (s.stage, s.apid),
            (Stage::Maintenance, ApidMode::Maintenance)
        );
        node.set_maintenance(false);
        assert_eq!(node.status().stage, Stage::Running);
        // A node that boots with a config goes from booting to running.
        let (tx, _rx) = mpsc::channel(1);
        let configured = Node::new(
            Cmdline::default(),
            crate::supervisor::Supervisor::new(),
            Arc::new(LogRing::new(1024)),
            tx,
        );
        configured.set_maintenance(false);
        assert_eq!(configured.status().stage, Stage::Running);
        assert_eq!(node.status().apid, ApidMode::Mtls);
        let events: Vec<String> = node
            .store
            .specs::<crate::resources::specs::EventSpec>()
            .into_iter()
            .map(|(_, e)| e.message)
            .collect();
        assert_eq!(events, vec!["stage maintenance", "stage running"]);
        assert!(node.running_config().is_none());
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
