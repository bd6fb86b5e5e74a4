//! machined's runtime: what every other part of the PID 1 stack is built
//! on and nothing of the node itself. The typed resource store with its
//! watches and the controller runner ([`resources`]), the service
//! supervisor with its runners and backoff ([`supervisor`]), the one
//! `waitpid(-1)` ([`reaper`]) and the children started through it
//! ([`exec`]), and logging to the console and `/dev/kmsg` ([`logging`],
//! [`console!`]).
//!
//! [`Runtime`] bundles the three shared handles (store, event log,
//! supervisor) that the host and Kubernetes layers take instead of
//! machined's whole node: readable state lives in the store, so a layer
//! reads the hostname and the running config there.

#[macro_use]
pub mod logging;
pub mod exec;
pub mod keep;
pub mod reaper;
pub mod resources;
pub mod supervisor;

use std::sync::Arc;

use resources::events::EventLog;
use resources::machineconfig::MachineConfigSpec;
use resources::specs::{EventType, HostnameSpec};
use resources::{kind, Store, Writer};
use supervisor::Supervisor;

/// The handles every layer above the runtime shares. Cheap to clone.
#[derive(Clone)]
pub struct Runtime {
    /// The resource store: everything the API lists and watches.
    pub store: Arc<Store>,
    /// The event log (`cairnctl events`).
    pub events: Arc<EventLog>,
    /// The services machined runs.
    pub supervisor: Arc<Supervisor>,
    /// The one writer of the hostname and the running machine config,
    /// which the boot sequence, apply and the network configurator set.
    node: Arc<Writer>,
}

impl Runtime {
    /// A fresh store with its event log, around `supervisor`.
    pub fn new(supervisor: Arc<Supervisor>) -> Self {
        let store = Store::new();
        let fresh = "a fresh store has no writers yet";
        let events = Arc::new(EventLog::new(&store).expect(fresh));
        let node = store
            .writer("node", &[kind::HOSTNAME, kind::MACHINE_CONFIG])
            .expect(fresh);
        Self {
            store,
            events,
            supervisor,
            node: Arc::new(node),
        }
    }

    /// The running machine config, if the node has one.
    pub fn running_config(&self) -> Option<config::MachineConfig> {
        MachineConfigSpec::running(&self.store)
    }

    /// Makes `config` the running machine config (resource
    /// `machineconfig/running`), read from `source`.
    pub fn set_running_config(&self, config: config::MachineConfig, source: &str) {
        let _ = self
            .node
            .put(MachineConfigSpec::RUNNING, MachineConfigSpec(config));
        self.events
            .record(EventType::Config, format!("running config from {source}"));
    }

    /// The node's hostname (empty before the boot sequence set one).
    pub fn hostname(&self) -> String {
        HostnameSpec::current(&self.store)
    }

    pub fn set_hostname(&self, name: &str) {
        let _ = self.node.put(HostnameSpec::ID, HostnameSpec::new(name));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostname_and_config_live_in_the_store() {
        let rt = Runtime::new(Supervisor::new());
        assert_eq!(rt.hostname(), "");
        assert!(rt.running_config().is_none());
        rt.set_hostname("n1");
        assert_eq!(rt.hostname(), "n1");
        let h = rt.store.spec::<HostnameSpec>(HostnameSpec::ID).unwrap();
        assert_eq!(h.hostname, "n1");
        let (cfg, _) = config::generate::sample_controlplane();
        rt.set_running_config(cfg.clone(), "test");
        assert_eq!(rt.running_config(), Some(cfg));
    }
}
