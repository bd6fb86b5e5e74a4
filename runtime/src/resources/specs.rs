//! The specs of every resource type but the machine config (see
//! `machineconfig`). Field names are camelCase in YAML, as in the machine
//! config.

use serde::Serialize;

use super::{kind, yaml_of, Kind, Secrets, Spec};

/// Implements [`Spec`] for a type without secrets, rendered with serde.
macro_rules! plain_spec {
    ($t:ty, $kind:expr) => {
        impl Spec for $t {
            const KIND: &'static Kind = $kind;
            fn to_yaml(&self, _: Secrets) -> String {
                yaml_of(self)
            }
        }
    };
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// The node's hostname (id `hostname`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HostnameSpec {
    pub hostname: String,
}

impl HostnameSpec {
    pub const ID: &'static str = "hostname";
    pub fn new(name: &str) -> Self {
        Self {
            hostname: name.to_string(),
        }
    }

    /// The node's hostname in `store` (empty before the boot sequence set
    /// one).
    pub fn current(store: &super::Store) -> String {
        store
            .spec::<Self>(Self::ID)
            .map(|h| h.hostname)
            .unwrap_or_default()
    }
}
plain_spec!(HostnameSpec, kind::HOSTNAME);

/// Where the node is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stage {
    Booting,
    /// No machine config yet: apid serves only what configures the node.
    Maintenance,
    Running,
    Rebooting,
    ShuttingDown,
}

impl Stage {
    /// One word, as the console status line prints it.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Booting => "booting",
            Stage::Maintenance => "maintenance",
            Stage::Running => "running",
            Stage::Rebooting => "rebooting",
            Stage::ShuttingDown => "shutting-down",
        }
    }
}

/// How apid serves the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ApidMode {
    NotStarted,
    /// TLS with a self-signed certificate, no client certificates.
    Maintenance,
    /// Mutual TLS with the OS CA.
    Mtls,
}

impl ApidMode {
    pub fn describe(self) -> &'static str {
        match self {
            ApidMode::NotStarted => "not started",
            ApidMode::Maintenance => "maintenance mode (TLS, no client certificates)",
            ApidMode::Mtls => "mutual TLS",
        }
    }
}

/// The machine's status (id `machine`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MachineStatusSpec {
    pub stage: Stage,
    pub apid: ApidMode,
    /// Where the running machine config came from; empty without one.
    pub config_source: String,
    /// What joining the cluster waits for (a worker asking a control plane
    /// for apid's certificate); empty when nothing is waited for.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub join: String,
}

impl MachineStatusSpec {
    pub const ID: &'static str = "machine";
}

impl Default for MachineStatusSpec {
    fn default() -> Self {
        Self {
            stage: Stage::Booting,
            apid: ApidMode::NotStarted,
            config_source: String::new(),
            join: String::new(),
        }
    }
}
plain_spec!(MachineStatusSpec, kind::MACHINE_STATUS);

/// One supervised service (id: the service id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSpec {
    pub state: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub message: String,
    pub running: bool,
    /// "ok", "failing" or "unknown".
    pub health: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub health_message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<i32>,
    pub restarts: u32,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
}
plain_spec!(ServiceSpec, kind::SERVICES);

/// A network link (id: its name).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LinkSpec {
    pub index: u32,
    /// Link-layer type: ether, loopback, none, ...
    #[serde(rename = "type")]
    pub link_type: String,
    /// Driver kind for virtual links (bond, bridge, veth, dummy, vlan).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub kind: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub hardware_addr: String,
    pub mtu: u32,
    /// Administratively up (`ip link set up`).
    pub up: bool,
    /// RFC 2863 operational state: up, down, unknown, lowerlayerdown, ...
    pub operational_state: String,
    pub carrier: bool,
    /// Backed by a device (not bond0, dummy0, veth...).
    pub physical: bool,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub master: String,
}
plain_spec!(LinkSpec, kind::LINKS);

/// An address on a link (id `<link>/<address>/<prefix>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AddressSpec {
    /// `address/prefix`.
    pub address: String,
    pub link: String,
    pub link_index: u32,
    /// inet4 or inet6.
    pub family: String,
    /// global, link, host, site.
    pub scope: String,
    /// Assigned for a limited time (DHCP, SLAAC) rather than permanently.
    #[serde(skip_serializing_if = "is_false")]
    pub dynamic: bool,
}
plain_spec!(AddressSpec, kind::ADDRESSES);

/// A route (id `<family>/<table>/<destination>/<gateway>/<link>/<metric>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteSpec {
    pub family: String,
    pub table: String,
    /// `address/prefix`, or `default`.
    pub destination: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub gateway: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub link: String,
    /// Preferred source address.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub source: String,
    pub metric: u32,
    pub scope: String,
    /// Who added it: kernel, boot, static, dhcp, ra, ...
    pub protocol: String,
    /// unicast, local, broadcast, unreachable, ...
    #[serde(rename = "type")]
    pub route_type: String,
}
plain_spec!(RouteSpec, kind::ROUTES);

/// DNS resolvers (id `resolvers`), as in /etc/resolv.conf.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ResolversSpec {
    pub nameservers: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
}

impl ResolversSpec {
    pub const ID: &'static str = "resolvers";

    /// `nameserver` and `search`/`domain` lines of a resolv.conf.
    pub fn parse(text: &str) -> Self {
        let mut spec = Self::default();
        for line in text.lines() {
            let mut words = line.split_whitespace();
            match words.next() {
                Some("nameserver") => spec.nameservers.extend(words.next().map(str::to_string)),
                Some("search") | Some("domain") => {
                    spec.search = words.map(str::to_string).collect()
                }
                _ => {}
            }
        }
        spec
    }
}
plain_spec!(ResolversSpec, kind::RESOLVERS);

/// A mounted filesystem (id: the mount point; the topmost mount wins).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MountSpec {
    pub source: String,
    pub target: String,
    pub filesystem: String,
    pub options: String,
    pub read_only: bool,
}
plain_spec!(MountSpec, kind::MOUNTS);

/// A partition of a disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PartitionSpec {
    pub device: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub number: Option<u32>,
    /// The GPT partition name.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    pub size: u64,
    /// What is on it: `ext4 "STATE"`, `blank`, `unknown`.
    pub contents: String,
}

/// A disk (id: its kernel name, e.g. `vda`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DiskSpec {
    pub device: String,
    pub size: u64,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub model: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub serial: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub wwid: String,
    /// virtio, nvme, sata, scsi, usb, mmc, or empty when unknown.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub transport: String,
    pub read_only: bool,
    pub rotational: bool,
    /// Holds the STATE or EPHEMERAL partition this node runs from.
    pub system_disk: bool,
    /// One line: `gpt: EFI, BIOS, BOOT, ...`, a filesystem, or empty when blank.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub contents: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub partitions: Vec<PartitionSpec>,
}
plain_spec!(DiskSpec, kind::DISKS);

/// What an event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EventType {
    /// A service changed state.
    Service,
    /// A machine config was found, applied or rejected.
    Config,
    /// The node moved to another stage.
    Stage,
    /// Reboot or shutdown.
    Power,
    /// A step of bringing Kubernetes up, or its failure and retry.
    Kubernetes,
    /// A machine joining the cluster: certificates asked for, issued or
    /// refused.
    Join,
    /// A phase of the Kubernetes bring-up reached (the timeline).
    Bringup,
    /// A client certificate minted for a person (`cairnctl config new`).
    Certificate,
    /// A machine-level action entering one of its phases.
    Lifecycle,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Service => "service",
            EventType::Config => "config",
            EventType::Stage => "stage",
            EventType::Power => "power",
            EventType::Kubernetes => "kubernetes",
            EventType::Join => "join",
            EventType::Bringup => "bringup",
            EventType::Certificate => "certificate",
            EventType::Lifecycle => "lifecycle",
        }
    }
}

/// One entry of the event log (id: its sequence number, zero-padded so
/// ids sort in order). The time is the resource's creation time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EventSpec {
    #[serde(rename = "type")]
    pub event_type: EventType,
    pub message: String,
}
plain_spec!(EventSpec, kind::EVENTS);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_render_camel_case_yaml() {
        let s = ServiceSpec {
            state: "Running".into(),
            message: String::new(),
            running: true,
            health: "ok".into(),
            health_message: String::new(),
            pid: Some(42),
            restarts: 0,
            depends_on: vec![],
        };
        assert_eq!(
            Spec::to_yaml(&s, Secrets::Redact),
            "state: Running\nrunning: true\nhealth: ok\npid: 42\nrestarts: 0\n"
        );
        let m = MachineStatusSpec {
            stage: Stage::ShuttingDown,
            apid: ApidMode::Maintenance,
            config_source: String::new(),
            join: String::new(),
        };
        assert_eq!(
            Spec::to_yaml(&m, Secrets::Show),
            "stage: shutting-down\napid: maintenance\nconfigSource: ''\n"
        );
        assert_eq!(Stage::ShuttingDown.as_str(), "shutting-down");
    }

    #[test]
    fn resolv_conf() {
        let r = ResolversSpec::parse(
            "# by machined\nnameserver 10.0.2.3\nnameserver fec0::3\nsearch example.org lan\n",
        );
        assert_eq!(r.nameservers, vec!["10.0.2.3", "fec0::3"]);
        assert_eq!(r.search, vec!["example.org", "lan"]);
        assert_eq!(ResolversSpec::parse(""), ResolversSpec::default());
    }
}
