//! The real [`Effects`]: a config goes into effect on this node through
//! `live` (hostname, sysctls, files), apid's settings (certificates for
//! mutual TLS), the supervisor (restarts) and the node's state (the
//! running config resource, maintenance mode).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::{Arc, Weak};

use config::MachineConfig;
use futures::future::BoxFuture;

use super::{live, Effects};
use crate::lifecycle::Guard;
use crate::secure::ApidSettingsFile;
use crate::shutdown::PowerAction;
use crate::state::Node;
use host::network::Network;

pub struct NodeEffects {
    node: Weak<Node>,
    network: Option<Network>,
    roots: live::Roots,
    apid: Arc<ApidSettingsFile>,
    /// Start apid when it is not supervised yet (tests run their own).
    start_apid: bool,
    /// Set once the task that asks a control plane for apid's certificate
    /// runs (a worker's config; see `crate::join`).
    joining: std::sync::atomic::AtomicBool,
}

impl NodeEffects {
    /// For the node machined runs on.
    pub fn new(node: &Arc<Node>, network: Option<Network>) -> Arc<NodeEffects> {
        Arc::new(NodeEffects {
            node: Arc::downgrade(node),
            network,
            roots: live::Roots::node(),
            apid: node.apid_settings.clone(),
            start_apid: true,
            joining: Default::default(),
        })
    }

    /// For tests: files under `roots`, apid's settings in `apid_dir`.
    pub fn for_test(node: &Arc<Node>, roots: live::Roots, apid_dir: PathBuf) -> Arc<NodeEffects> {
        Arc::new(NodeEffects {
            node: Arc::downgrade(node),
            network: None,
            roots,
            apid: ApidSettingsFile::new(apid_dir, None),
            start_apid: false,
            joining: Default::default(),
        })
    }

    /// Issues apid's mutual-TLS certificates for the node as it is now and
    /// writes them for apid; starts apid if it does not run yet (a boot
    /// with a config), else apid reloads them by itself.
    async fn secure_apid(&self, node: &Arc<Node>, config: &MachineConfig) -> Result<(), String> {
        if crate::join::requester::needs_join(config) {
            return self.join(node).await;
        }
        let mut addresses = match &self.network {
            Some(n) => n.node_addresses().await,
            None => Vec::new(),
        };
        // The config's static addresses too: the network configurator puts
        // them on the links only after this config is running.
        addresses.extend(host::network::desired::static_addresses(
            &config.machine.network,
        ));
        addresses.sort_by_key(|a| (a.is_ipv6(), *a));
        addresses.dedup();
        let mut settings = crate::secure::secure_settings(config, &node.hostname(), &addresses)
            .map_err(|e| e.to_string())?;
        settings.members = crate::apid_members::hosts(&node.store, config);
        self.apid.write(&settings).map_err(|e| e.to_string())?;
        if self.start_apid && node.supervisor.handle("apid").is_none() {
            node.supervisor
                .start(crate::secure::apid_service(&self.apid.dir))
                .map_err(|e| format!("cannot start apid: {e}"))?;
        }
        Ok(())
    }
}

impl NodeEffects {
    /// A config without the OS CA key: apid keeps (or starts with) a
    /// maintenance certificate until a control plane signs its own, which
    /// the join task asks for and keeps renewed.
    async fn join(&self, node: &Arc<Node>) -> Result<(), String> {
        use std::sync::atomic::Ordering;
        if self.start_apid && node.supervisor.handle("apid").is_none() {
            let hostname = node.hostname();
            let cert = tokio::task::spawn_blocking(move || {
                crate::maintenance::generate_certificate(&hostname, &[])
            })
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
            crate::maintenance::install_settings(&cert, &self.apid).map_err(|e| e.to_string())?;
            node.supervisor
                .start(crate::secure::apid_service(&self.apid.dir))
                .map_err(|e| format!("cannot start apid: {e}"))?;
        }
        if !self.joining.swap(true, Ordering::SeqCst) {
            tokio::spawn(crate::join::requester::run(
                Arc::downgrade(node),
                self.apid.clone(),
            ));
        }
        Ok(())
    }
}

impl Effects for NodeEffects {
    fn running(&self) -> Option<MachineConfig> {
        self.node.upgrade()?.running_config()
    }

    fn activate<'a>(
        &'a self,
        previous: Option<&'a MachineConfig>,
        config: &'a MachineConfig,
        services: &'a BTreeSet<&'static str>,
        source: &'a str,
    ) -> BoxFuture<'a, Vec<String>> {
        Box::pin(async move {
            let Some(node) = self.node.upgrade() else {
                return vec!["machined is shutting down".into()];
            };
            let (hostname, mut problems) = live::apply(config, &self.roots);
            if let Some(h) = hostname.filter(|h| *h != node.hostname()) {
                node.set_hostname(&h);
                let etc = std::path::Path::new(host::network::resolv::SYSTEM_ETC);
                if self.roots.set_hostname {
                    let _ = host::network::resolv::write_atomic(
                        etc,
                        "hosts",
                        &host::network::resolv::hosts(&h, None),
                    );
                }
            }
            if previous.is_none() || services.contains("apid") {
                if let Err(e) = self.secure_apid(&node, config).await {
                    problems.push(format!("apid: {e}"));
                }
            }
            for id in services.iter().filter(|s| **s != "apid") {
                if node.supervisor.handle(id).is_some() {
                    if let Err(e) = node.supervisor.restart(id).await {
                        problems.push(format!("restarting {id}: {e}"));
                    }
                }
            }
            node.set_running_config(config.clone(), source);
            // Kubernetes follows the running config from now on; only on
            // the real node (tests run without apid and the payload).
            if self.start_apid {
                node.start_kubernetes();
            }
            if previous.is_none() {
                let was = node.maintenance();
                node.set_maintenance(false);
                if was {
                    runtime::console!("config: applied ({source}); the node left maintenance mode");
                }
            }
            for p in &problems {
                runtime::console!("config: {p}");
            }
            problems
        })
    }

    fn snapshot(&self, config: &MachineConfig) -> Option<live::Undo> {
        Some(live::snapshot(config, &self.roots))
    }

    fn restore(&self, undo: &live::Undo) -> Vec<String> {
        live::restore(undo)
    }

    fn spec_restarts(&self, old: &MachineConfig, new: &MachineConfig) -> Vec<&'static str> {
        let Some(node) = self.node.upgrade() else {
            return Vec::new();
        };
        let facts = kubernetes::specs::node_facts(&node.store, Some(new));
        kubernetes::specs::services_changed(old, new, &facts)
            .into_iter()
            // Only what runs restarts; the rest starts with the new spec.
            .filter(|s| node.supervisor.handle(s).is_some())
            .collect()
    }

    fn install(
        &self,
        bytes: &[u8],
        config: &MachineConfig,
        guard: Guard,
    ) -> Result<String, String> {
        let disk = config
            .machine
            .install
            .disk
            .as_ref()
            .ok_or("the config names no install disk")?;
        let target = crate::install::check_target(disk.as_str(), config.machine.install.wipe)
            .map_err(|e| e.to_string())?;
        Ok(crate::install::start(target, bytes.to_vec(), guard))
    }

    fn reboot(&self, guard: Guard) {
        guard.power(PowerAction::Reboot, "apply-config");
    }
}
