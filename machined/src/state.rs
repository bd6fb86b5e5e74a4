//! What machined knows about the node, shared by the boot sequence, the
//! API and the console. machined is the only place node state lives; apid
//! asks for it over the unix socket.

use std::ops::Deref;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use api::machine::VersionResponse;
use host::cmdline::Cmdline;
use runtime::resources::specs::{ApidMode, EventType, MachineStatusSpec, Stage};
use runtime::resources::{kind, Writer};
use runtime::supervisor::logbuf::LogRing;
use runtime::supervisor::Supervisor;
use runtime::Runtime;
use tokio::sync::mpsc;

use crate::shutdown::PowerAction;

/// The node as PID 1 sees it: the shared [`Runtime`] (store, events,
/// supervisor; `node.store` reads through to it) and what only machined's
/// own parts hold: the command line, the lifecycle owner, the configurator
/// and the machine status.
pub struct Node {
    rt: Runtime,
    pub cmdline: Cmdline,
    /// machined's own log ring (`cairnctl logs machined`).
    pub logs: Arc<LogRing>,
    /// Asks the boot sequence to shut down or reboot.
    pub power: mpsc::Sender<PowerAction>,
    /// The one owner of machine-level actions (install, upgrade, rollback,
    /// reset, reboot, shutdown, apply) and of the power state.
    pub lifecycle: Arc<crate::lifecycle::Lifecycle>,
    /// Set once Kubernetes' bring-up has started (it retries until it
    /// succeeds, so it never needs to start twice).
    kubernetes_started: AtomicBool,
    /// Applies machine configs (ApplyConfiguration, ConfirmConfiguration);
    /// set by the boot sequence once STATE is known.
    pub configurator: std::sync::OnceLock<Arc<crate::apply::Configurator>>,
    /// apid's settings file and the lock its writers take.
    pub apid_settings: Arc<crate::secure::ApidSettingsFile>,
    /// Writes the machine status, which lives only in the store; the
    /// mutex makes each read-modify-write whole.
    writer: Mutex<Writer>,
}

impl Deref for Node {
    type Target = Runtime;
    fn deref(&self) -> &Runtime {
        &self.rt
    }
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
        let rt = Runtime::new(supervisor);
        let writer = rt
            .store
            .writer("machinestatus", &[kind::MACHINE_STATUS])
            .expect("a fresh store has no machinestatus writer yet");
        let _ = writer.put(MachineStatusSpec::ID, MachineStatusSpec::default());
        let lifecycle = crate::lifecycle::Lifecycle::new(power.clone(), Some(rt.events.clone()));
        if let Ok(w) = rt.store.writer("lifecycle", &[kind::LIFECYCLE]) {
            lifecycle.publish_to(w);
        }
        Self {
            cmdline,
            logs,
            lifecycle,
            power,
            kubernetes_started: AtomicBool::new(false),
            configurator: std::sync::OnceLock::new(),
            apid_settings: crate::secure::ApidSettingsFile::node(
                rt.store.writer("apid", &[kind::APID_SPEC]).ok(),
            ),
            writer: Mutex::new(writer),
            rt,
        }
    }

    /// The shared handles, for the layers below machined.
    pub fn runtime(&self) -> Runtime {
        self.rt.clone()
    }

    /// Starts Kubernetes' bring-up, once per boot.
    pub fn start_kubernetes(&self) {
        if !self.kubernetes_started.swap(true, Ordering::SeqCst) {
            kubernetes::start(&self.rt);
        }
    }

    /// Changes the machine status resource; records a stage event when
    /// the stage changes.
    pub fn update_status(&self, change: impl FnOnce(&mut MachineStatusSpec)) {
        let writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let mut status = self.status();
        let before = status.stage;
        change(&mut status);
        if status.stage != before {
            self.events
                .record(EventType::Stage, format!("stage {}", status.stage.as_str()));
        }
        let _ = writer.put(MachineStatusSpec::ID, status);
    }

    /// The machine status resource.
    pub fn status(&self) -> MachineStatusSpec {
        self.store
            .spec::<MachineStatusSpec>(MachineStatusSpec::ID)
            .unwrap_or_default()
    }

    pub fn set_stage(&self, stage: Stage) {
        self.update_status(|s| s.stage = stage);
    }

    /// Makes `config` the running machine config, read from `source`.
    pub fn set_running_config(&self, config: config::MachineConfig, source: &str) {
        self.rt.set_running_config(config, source);
        self.update_status(|s| s.config_source = source.to_string());
    }

    /// Whether apid serves maintenance mode (the status resource says).
    pub fn maintenance(&self) -> bool {
        self.status().apid == ApidMode::Maintenance
    }

    /// Enters or leaves maintenance mode: the stage and apid's mode follow.
    pub fn set_maintenance(&self, on: bool) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use runtime::resources::specs::HostnameSpec;

    #[test]
    fn version_reflects_node_state() {
        let (tx, _rx) = mpsc::channel(1);
        let node = Node::new(
            Cmdline::parse("cairn.slot=B"),
            runtime::supervisor::Supervisor::new(),
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
            runtime::supervisor::Supervisor::new(),
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
            runtime::supervisor::Supervisor::new(),
            Arc::new(LogRing::new(1024)),
            tx,
        );
        configured.set_maintenance(false);
        assert_eq!(configured.status().stage, Stage::Running);
        assert_eq!(node.status().apid, ApidMode::Mtls);
        let events: Vec<String> = node
            .store
            .specs::<runtime::resources::specs::EventSpec>()
            .into_iter()
            .map(|(_, e)| e.message)
            .collect();
        assert_eq!(events, vec!["stage maintenance", "stage running"]);
        assert!(node.running_config().is_none());
    }
}
