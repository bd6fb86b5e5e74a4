//! Specs, then services: the spec controller derives what containerd, the
//! kubelet and etcd run with ([`ContainerdSpec`], [`KubeletSpec`],
//! [`EtcdSpec`]) from the running machine config and the node's hostname
//! and addresses; each
//! service's runner reads its spec every time it starts, and
//! [`restart_on_change`] restarts a service whose spec changed since its
//! process started. So `apply-config --mode no-reboot` changing registry
//! mirrors or kubelet labels is true by construction: nothing captured the
//! old settings.

use std::sync::{Arc, Mutex, Weak};

use config::MachineConfig;
use futures::future::BoxFuture;
use serde::Serialize;

use runtime::resources::machineconfig::MachineConfigSpec;
use runtime::resources::specs::HostnameSpec;
use runtime::resources::{
    kind, yaml_of, Controller, ControllerError, Filter, Input, Kind, Secrets, Spec, Store, Watch,
    Writer, REDACTED,
};
use runtime::supervisor::{State, Supervisor};

pub use crate::etcd::EtcdSpec;

/// containerd's settings: the text of its config file (id `containerd`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerdSpec {
    pub config: String,
}

impl ContainerdSpec {
    pub const ID: &'static str = "containerd";

    pub fn of(cfg: &MachineConfig) -> Self {
        let settings = crate::containerd::Settings::from_config(cfg);
        Self {
            config: crate::containerd::config::render(
                &crate::containerd::ContainerdPaths::node(),
                &settings,
            ),
        }
    }
}

impl Spec for ContainerdSpec {
    const KIND: &'static Kind = kind::CONTAINERD_SPEC;
    fn to_yaml(&self, _: Secrets) -> String {
        yaml_of(self)
    }
}

/// The kubelet's flags and KubeletConfiguration document (id `kubelet`).
/// Sensitive: `machine.kubelet.extraArgs` may carry secrets, so callers
/// below `os:admin` see the flags' names only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KubeletSpec {
    pub flags: Vec<String>,
    pub configuration: String,
}

impl KubeletSpec {
    pub const ID: &'static str = "kubelet";

    pub fn of(cfg: &MachineConfig, facts: &crate::kubelet::NodeRegistration) -> Self {
        Self {
            flags: crate::kubelet::flags(cfg, facts),
            configuration: crate::kubelet::kubelet_configuration(cfg),
        }
    }
}

impl Spec for KubeletSpec {
    const KIND: &'static Kind = kind::KUBELET_SPEC;
    fn to_yaml(&self, secrets: Secrets) -> String {
        match secrets {
            Secrets::Show => yaml_of(self),
            Secrets::Redact => {
                let flags: Vec<String> = self
                    .flags
                    .iter()
                    .map(|f| match f.split_once('=') {
                        Some((name, _)) => format!("{name}={REDACTED}"),
                        None => f.clone(),
                    })
                    .collect();
                yaml_of(&KubeletSpec {
                    flags,
                    configuration: self.configuration.clone(),
                })
            }
        }
    }
}

/// What the node is, beyond its config: the hostname and the address the
/// kubelet registers with, as the store has them now.
pub fn node_facts(store: &Store, cfg: Option<&MachineConfig>) -> crate::kubelet::NodeRegistration {
    crate::kubelet::NodeRegistration {
        hostname: HostnameSpec::current(store),
        node_ip: super::node_ip(store, cfg),
    }
}

/// The services whose specs differ between two configs on a node with
/// `facts`: what applying `new` over `old` restarts.
pub fn services_changed(
    old: &MachineConfig,
    new: &MachineConfig,
    facts: &crate::kubelet::NodeRegistration,
) -> Vec<&'static str> {
    let mut out = Vec::new();
    if ContainerdSpec::of(old) != ContainerdSpec::of(new) {
        out.push(crate::containerd::SERVICE);
    }
    // The hostname a config sets is the one the kubelet registers with.
    let facts_for = |cfg: &MachineConfig| crate::kubelet::NodeRegistration {
        hostname: cfg
            .machine
            .network
            .hostname
            .as_ref()
            .map_or_else(|| facts.hostname.clone(), |h| h.to_string()),
        node_ip: facts.node_ip,
    };
    if KubeletSpec::of(old, &facts_for(old)) != KubeletSpec::of(new, &facts_for(new)) {
        out.push(crate::kubelet::SERVICE);
    }
    let etcd_of = |cfg: &MachineConfig| {
        let f = facts_for(cfg);
        etcd_spec(
            cfg,
            &crate::k8s_pki::NodeFacts {
                hostname: f.hostname,
                addresses: f.node_ip.into_iter().collect(),
            },
        )
    };
    if etcd_of(old) != etcd_of(new) {
        out.push(crate::etcd::SERVICE_ID);
    }
    out
}

/// etcd's spec on a control plane; workers run no etcd.
fn etcd_spec(cfg: &MachineConfig, facts: &crate::k8s_pki::NodeFacts) -> Option<EtcdSpec> {
    (cfg.machine.machine_type == config::spec::MachineType::Controlplane)
        .then(|| EtcdSpec::of(cfg, facts))
}

/// Derives [`ContainerdSpec`], [`KubeletSpec`] and (control planes)
/// [`EtcdSpec`] whenever the running
/// config, the hostname or the addresses change; without a running config
/// there are none (and the services wait for them).
#[derive(Default, Clone)]
pub struct SpecController;

impl Controller for SpecController {
    fn name(&self) -> &'static str {
        "kubernetes-specs"
    }

    fn inputs(&self) -> Vec<Input> {
        vec![
            Input::Resource(kind::MACHINE_CONFIG),
            Input::Resource(kind::HOSTNAME),
            Input::Resource(kind::ADDRESSES),
        ]
    }

    fn outputs(&self) -> Vec<&'static Kind> {
        vec![kind::CONTAINERD_SPEC, kind::KUBELET_SPEC, kind::ETCD_SPEC]
    }

    fn run(self, writer: Writer) -> BoxFuture<'static, Result<(), ControllerError>> {
        Box::pin(async move {
            let store = writer.store().clone();
            let filter = Filter {
                kinds: vec![kind::MACHINE_CONFIG, kind::HOSTNAME, kind::ADDRESSES],
                id: None,
            };
            let mut watch = Watch::new(&store, filter, false);
            loop {
                derive(&store, &writer);
                watch.next().await;
            }
        })
    }
}

/// One pass of the spec controller.
pub fn derive(store: &Store, writer: &Writer) {
    let cfg = MachineConfigSpec::running(store);
    let (containerd, kubelet) = match &cfg {
        Some(cfg) => (
            vec![(ContainerdSpec::ID.to_string(), ContainerdSpec::of(cfg))],
            vec![(
                KubeletSpec::ID.to_string(),
                KubeletSpec::of(cfg, &node_facts(store, Some(cfg))),
            )],
        ),
        None => (Vec::new(), Vec::new()),
    };
    let etcd: Vec<(String, EtcdSpec)> = cfg
        .as_ref()
        .and_then(|cfg| etcd_spec(cfg, &crate::k8s_pki::NodeFacts::of_store(store)))
        .map(|spec| (EtcdSpec::ID.to_string(), spec))
        .into_iter()
        .collect();
    // Writes fail only for undeclared outputs, which the controller's
    // outputs() rules out.
    let _ = writer.reconcile(containerd);
    let _ = writer.reconcile(kubelet);
    let _ = writer.reconcile(etcd);
}

/// The spec a service's process last started with, set by its runner.
pub struct StartedWith<T>(Arc<Mutex<Option<T>>>);

impl<T> Clone for StartedWith<T> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<T> Default for StartedWith<T> {
    fn default() -> Self {
        Self(Arc::new(Mutex::new(None)))
    }
}

impl<T: Clone> StartedWith<T> {
    pub fn set(&self, spec: T) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(spec);
    }

    pub fn get(&self) -> Option<T> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// The current spec `id` of type `T`, or why there is none.
pub fn current<T: Spec>(store: &Store, id: &str) -> Result<T, String> {
    store.spec::<T>(id).ok_or_else(|| {
        format!(
            "no {} spec yet (the node has no running config)",
            T::KIND.name
        )
    })
}

/// Restarts `service` whenever its spec `id` differs from the one its
/// process started with. A service an operator stopped stays stopped; one
/// that is waiting for its first start picks the spec up by itself.
pub async fn restart_on_change<T: Spec>(
    store: Arc<Store>,
    supervisor: Weak<Supervisor>,
    service: &'static str,
    id: &'static str,
    started: StartedWith<T>,
) {
    let mut watch = Watch::new(&store, Filter::kind(T::KIND), false);
    loop {
        watch.next().await;
        let Some(sup) = supervisor.upgrade() else {
            return;
        };
        let (Some(now), Some(was)) = (store.spec::<T>(id), started.get()) else {
            continue;
        };
        if now == was {
            continue;
        }
        let Some(handle) = sup.handle(service) else {
            continue;
        };
        let state = handle.snapshot().state;
        if matches!(state, State::Stopped | State::Skipped | State::Finished) {
            continue;
        }
        runtime::console!("service {service}: its spec changed; restarting it with the new one");
        if let Err(e) = sup.restart(service).await {
            runtime::console!("service {service}: cannot restart after a spec change: {e}");
        }
    }
}
