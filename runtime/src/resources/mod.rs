//! machined's control model: typed resources in an in-memory [`Store`]
//! with watches, written by controllers that declare their outputs.
//!
//! A resource is addressed by namespace, type and id, carries a version
//! (bumped on every change of its spec) and created/updated times, and a
//! typed spec that renders as YAML for the API. Every type has exactly one
//! writer: a controller registers the types it produces and the store
//! refuses writes to anything else, so two pieces of code can never fight
//! over one resource (Talos COSI is the model).
//!
//! The kinds of every layer are registered here ([`kind`]), so the API can
//! list them; their spec types and controllers live with their owners (the
//! host crate's network, mounts, disks and time; the kubernetes crate's
//! specs and static pods). The controller here is `services` (the
//! supervisor's view); [`events::EventLog`] writes the event log and
//! [`crate::Runtime`] the hostname and the running machine config.

pub mod controller;
pub mod events;
pub mod machineconfig;
pub mod proto;
pub mod services;
pub mod specs;
pub mod store;
pub mod watch;

pub use controller::{Controller, ControllerError, Input};
pub use store::{Metadata, Resource, Store, StoreError, Writer};
pub use watch::{Filter, Watch, WatchEvent, WatchKind};

use std::any::Any;

/// Namespaces, named by what lives there.
pub mod namespace {
    /// The machine config.
    pub const CONFIG: &str = "config";
    /// The network as the kernel has it.
    pub const NETWORK: &str = "network";
    /// What runs on the node: services, mounts, disks, events, status.
    pub const RUNTIME: &str = "runtime";
    /// Kubernetes objects the node runs itself (static pods).
    pub const KUBERNETES: &str = "k8s";
}

/// One resource type: its name (what `cairnctl get <type>` sends), the
/// namespace it lives in, and whether its spec carries secrets.
#[derive(Debug, PartialEq, Eq)]
pub struct Kind {
    pub name: &'static str,
    pub namespace: &'static str,
    /// Specs of this type hold secrets, shown only to `os:admin` callers.
    pub sensitive: bool,
    /// One line for people, shown in errors listing the types.
    pub description: &'static str,
}

macro_rules! kinds {
    ($($ident:ident = $name:literal in $ns:ident $(, $sens:ident)? : $desc:literal;)*) => {
        /// Every resource type machined serves.
        pub mod kind {
            use super::{namespace, Kind};
            $(pub const $ident: &Kind = &Kind {
                name: $name,
                namespace: namespace::$ns,
                sensitive: kinds!(@sens $($sens)?),
                description: $desc,
            };)*
            /// All of them, in the order `cairnctl` documents them.
            pub const ALL: &[&Kind] = &[$($ident),*];
        }
    };
    (@sens sensitive) => { true };
    (@sens) => { false };
}

kinds! {
    MACHINE_CONFIG = "machineconfig" in CONFIG, sensitive: "the running machine config";
    MACHINE_STATUS = "machinestatus" in RUNTIME: "boot stage, apid mode and config source";
    SERVICES = "services" in RUNTIME: "services the supervisor runs";
    ADDRESSES = "addresses" in NETWORK: "addresses on the node's links";
    LINKS = "links" in NETWORK: "network links";
    ROUTES = "routes" in NETWORK: "routes (all tables but local)";
    RESOLVERS = "resolvers" in NETWORK: "DNS servers and search domains in /etc/resolv.conf";
    HOSTNAME = "hostname" in NETWORK: "the node's hostname";
    TIME_SERVERS = "timeservers" in NETWORK: "the time servers the SNTP client asks, in order";
    TIME_STATUS = "timestatus" in RUNTIME: "whether the clock is synchronised, its last offset and server";
    MOUNTS = "mounts" in RUNTIME: "mounted filesystems";
    DISKS = "disks" in RUNTIME: "block devices, their partitions and contents";
    STATIC_PODS = "staticpods" in KUBERNETES: "pods the node runs without the API server";
    CONTAINERD_SPEC = "containerdspec" in KUBERNETES: "containerd's config, derived from the machine config";
    MEMBERS = "members" in KUBERNETES: "the cluster's nodes as the API server lists them: addresses, role, readiness";
    KUBELET_SPEC = "kubeletspec" in KUBERNETES, sensitive: "the kubelet's flags and configuration, derived from the machine config";
    SECRETS = "secrets" in KUBERNETES: "the Kubernetes and etcd secret files on disk: a digest of each directory and how many files (never their content)";
    ETCD_SPEC = "etcdspec" in KUBERNETES, sensitive: "etcd's member name, advertised address, cluster token and extra args, derived from the machine config (control planes)";
    LIFECYCLE = "lifecycle" in RUNTIME: "the machine-level action under way (install, upgrade, reset...), its phase and since when; the slot on trial; a power action taken";
    APID_SPEC = "apidspec" in RUNTIME: "apid's mode, server certificate (names, expiry, fingerprint; never the key), role checks, forwarding and the members it may forward to, as machined last wrote them";
    EVENTS = "events" in RUNTIME: "the node's event log";
    META = "meta" in RUNTIME: "the META partition: upgrade state, boot counts, the last failed boot";
    PAYLOAD = "payload" in RUNTIME: "the Kubernetes payload: mounted or not, its version and images";
}

impl Kind {
    /// The type called `name`, exactly as listed in [`kind::ALL`].
    pub fn named(name: &str) -> Option<&'static Kind> {
        kind::ALL.iter().copied().find(|k| k.name == name)
    }

    /// The names of every type, for error messages.
    pub fn names() -> String {
        kind::ALL
            .iter()
            .map(|k| k.name)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Whether the caller may see secrets in specs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Secrets {
    Show,
    Redact,
}

/// What redacted secrets are replaced with.
pub const REDACTED: &str = "***";

/// A resource spec: a typed value of one [`Kind`] that renders as YAML.
pub trait Spec: Clone + PartialEq + Send + Sync + 'static {
    const KIND: &'static Kind;
    /// The spec as one YAML document; secrets replaced by [`REDACTED`]
    /// when `secrets` says so.
    fn to_yaml(&self, secrets: Secrets) -> String;
}

/// A spec with its type erased, as the store holds it.
pub trait AnySpec: Send + Sync {
    fn kind(&self) -> &'static Kind;
    fn to_yaml(&self, secrets: Secrets) -> String;
    fn as_any(&self) -> &dyn Any;
    fn same_as(&self, other: &dyn AnySpec) -> bool;
}

impl<T: Spec> AnySpec for T {
    fn kind(&self) -> &'static Kind {
        T::KIND
    }
    fn to_yaml(&self, secrets: Secrets) -> String {
        Spec::to_yaml(self, secrets)
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn same_as(&self, other: &dyn AnySpec) -> bool {
        other.as_any().downcast_ref::<T>() == Some(self)
    }
}

/// YAML of a serializable spec. Spec types hold only strings, numbers,
/// booleans, lists and string-keyed maps, which YAML always represents.
pub fn yaml_of<T: serde::Serialize>(value: &T) -> String {
    serde_yaml::to_string(value).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_is_named_once_and_found() {
        let mut names: Vec<_> = kind::ALL.iter().map(|k| k.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), kind::ALL.len());
        for k in kind::ALL {
            assert_eq!(Kind::named(k.name), Some(*k));
        }
        assert!(Kind::named("widgets").is_none());
        assert!(kind::MACHINE_CONFIG.sensitive);
        assert!(!kind::SERVICES.sensitive);
    }
}
