//! `machine:`: what one node is and how it is set up.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{is_default, is_false, yes, CertAndKey};
use crate::types::{
    ArgName, Cidr, DiskPath, DnsName, Duration, FileMode, FilePath, HardwareAddrSelector, HttpUrl,
    ImageRef, InterfaceAddress, InterfaceName, IpAddress, LabelKey, LabelValue, LogEndpoint, Mtu,
    NetworkHost, RegistryName, ScalarString, SubjectAltName, SysctlName, TaintValue, Token, VlanId,
};

/// The machine document's body: the role of this node and how its disk,
/// network, time, kernel parameters, files, kubelet and registries are set up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MachineSpec {
    /// The node's role: `controlplane` runs etcd and the Kubernetes control
    /// plane as static pods as well as kubelet; `worker` runs kubelet only.
    #[serde(rename = "type")]
    pub machine_type: MachineType,
    /// Shared secret that machines present to control-plane nodes to be
    /// issued certificates when they join. Format `[a-z0-9]{6}.[a-z0-9]{16}`.
    pub token: Token,
    /// The OS CA. It signs apid's server certificate and cairnctl's client
    /// certificates (whose Organization carries the API role). Control-plane
    /// machines carry the key; workers only the certificate.
    pub ca: CertAndKey,
    /// Extra subject alternative names (IPs or DNS names) for apid's server
    /// certificate, beyond the node's own addresses and hostname, e.g. a
    /// load balancer in front of the nodes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cert_sans: Vec<SubjectAltName>,
    /// Installation to a disk. Needed when the node boots from an ISO (mode
    /// `metal`); a raw or qcow2 image is already installed.
    #[serde(default, skip_serializing_if = "is_default")]
    pub install: Install,
    /// Hostname, interfaces and DNS resolvers.
    #[serde(default, skip_serializing_if = "is_default")]
    pub network: Network,
    /// Time synchronisation.
    #[serde(default)]
    pub time: Time,
    /// Kernel parameters to set, by name (`net.ipv4.ip_forward: "1"`). Values
    /// are written as given to /proc/sys.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sysctls: BTreeMap<SysctlName, ScalarString>,
    /// Files to write on the node at boot. Only paths under /var may be
    /// written (the root filesystem is read-only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<File>,
    /// The kubelet.
    #[serde(default, skip_serializing_if = "is_default")]
    pub kubelet: Kubelet,
    /// Container registry settings for containerd.
    #[serde(default, skip_serializing_if = "is_default")]
    pub registries: Registries,
    /// Optional behaviour switches.
    #[serde(default)]
    pub features: Features,
    /// Where machined sends its services' logs and the kernel log.
    #[serde(default, skip_serializing_if = "is_default")]
    pub logging: Logging,
}

/// machined's log shipping.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Logging {
    /// Endpoints that receive every line of machined's services and of the
    /// kernel log as JSON lines (one object per line: time, node, service,
    /// message). With the logging add-on on, its store is one of them
    /// without being listed. Lines are not kept while an endpoint is down.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub destinations: Vec<LogDestination>,
}

/// One log destination.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LogDestination {
    /// `tcp://host:port` or `udp://host:port`.
    pub endpoint: LogEndpoint,
    /// The line format; only `json_lines`.
    #[serde(default)]
    pub format: LogFormat,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum LogFormat {
    /// One JSON object per line.
    #[default]
    #[serde(rename = "json_lines")]
    JsonLines,
}

/// The role of a machine in the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum MachineType {
    /// Runs etcd, kube-apiserver, kube-controller-manager and kube-scheduler
    /// (static pods) and kubelet.
    Controlplane,
    /// Runs kubelet only.
    Worker,
}

impl std::fmt::Display for MachineType {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(match self {
            MachineType::Controlplane => "controlplane",
            MachineType::Worker => "worker",
        })
    }
}

/// Where and how to install Cairn.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Install {
    /// The disk to install to, e.g. `/dev/vda`. No default: installing
    /// erases the disk, so it is never guessed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk: Option<DiskPath>,
    /// Installer image to use for installs and upgrades; by default the
    /// image of the running version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageRef>,
    /// Wipe the whole disk (not only the partition table) before installing.
    #[serde(default, skip_serializing_if = "is_false")]
    pub wipe: bool,
    /// Public keys (Ed25519, PEM) whose signatures this node accepts on
    /// upgrades. When any are listed, `cairnctl upgrade` must send images
    /// signed by one of them (`make image SIGNING_KEY=...` signs; `cairnctl
    /// gen upgrade-key` makes a key pair); unsigned or otherwise signed
    /// images are refused. None: upgrades need no signature.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trusted_keys: Vec<crate::signing::TrustedKey>,
}

/// Node networking.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Network {
    /// The node's hostname; by default `cairn-` and part of the first MAC
    /// address, or the name DHCP hands out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<DnsName>,
    /// Interface settings. Links not listed here are brought up with DHCP
    /// when no interface is configured at all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<Interface>,
    /// DNS resolvers, in order; by default those from DHCP.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<IpAddress>,
}

/// Settings of one network link, named or selected by hardware address.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Interface {
    /// The link's name, e.g. `eth0`. Give either this or `deviceSelector`.
    /// For a bond, the name of the bond link to create.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<InterfaceName>,
    /// Selects the link by its properties instead of by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_selector: Option<DeviceSelector>,
    /// Get addresses, routes and resolvers by DHCP.
    #[serde(default, skip_serializing_if = "is_false")]
    pub dhcp: bool,
    /// Static addresses with prefix length, e.g. `10.5.0.2/24`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<InterfaceAddress>,
    /// Static routes through this link.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<Route>,
    /// The link MTU in bytes; by default the driver's (usually 1500).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<Mtu>,
    /// 802.1Q VLANs on top of this link.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vlans: Vec<Vlan>,
    /// Makes this link a bond of other links.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bond: Option<Bond>,
}

/// Selects a link by its properties.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DeviceSelector {
    /// MAC address of the link; `*` matches any characters (`52:54:00:*`).
    pub hardware_addr: HardwareAddrSelector,
}

/// A static route.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Route {
    /// Destination prefix; `0.0.0.0/0` (or `::/0`) is the default route.
    pub network: Cidr,
    /// Next hop; none for an on-link route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddress>,
    /// Route priority (lower wins); default 1024.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<u32>,
}

/// An 802.1Q VLAN on a link.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Vlan {
    /// The VLAN ID (1-4094). The link is named `<parent>.<vlanId>`.
    pub vlan_id: VlanId,
    /// Get addresses by DHCP on the VLAN.
    #[serde(default, skip_serializing_if = "is_false")]
    pub dhcp: bool,
    /// Static addresses with prefix length.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<InterfaceAddress>,
    /// Static routes through the VLAN.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<Route>,
    /// The VLAN link's MTU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<Mtu>,
}

/// Bonding of several links into one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Bond {
    /// The member links.
    pub interfaces: Vec<InterfaceName>,
    /// The bonding mode.
    pub mode: BondMode,
    /// Link monitoring interval in milliseconds; default 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub miimon: Option<u32>,
}

/// Linux bonding modes, as the kernel names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum BondMode {
    #[serde(rename = "balance-rr")]
    BalanceRr,
    #[serde(rename = "active-backup")]
    ActiveBackup,
    #[serde(rename = "balance-xor")]
    BalanceXor,
    #[serde(rename = "broadcast")]
    Broadcast,
    #[serde(rename = "802.3ad")]
    Lacp,
    #[serde(rename = "balance-tlb")]
    BalanceTlb,
    #[serde(rename = "balance-alb")]
    BalanceAlb,
}

/// Time synchronisation (SNTP).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Time {
    /// Do not synchronise time.
    #[serde(default, skip_serializing_if = "is_false")]
    pub disabled: bool,
    /// NTP servers (names or addresses), tried in order.
    #[serde(default = "default_time_servers")]
    pub servers: Vec<NetworkHost>,
    /// How long boot waits for the first synchronisation before it goes on
    /// with an unsynchronised clock.
    #[serde(default = "default_boot_timeout")]
    pub boot_timeout: Duration,
}

impl Default for Time {
    fn default() -> Self {
        Time {
            disabled: false,
            servers: default_time_servers(),
            boot_timeout: default_boot_timeout(),
        }
    }
}

fn default_time_servers() -> Vec<NetworkHost> {
    vec![NetworkHost::Dns("pool.ntp.org".into())]
}

fn default_boot_timeout() -> Duration {
    Duration::from_secs(120)
}

/// A file to write on the node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct File {
    /// Absolute path, under /var.
    pub path: FilePath,
    /// The text to write.
    pub content: String,
    /// Permission bits as an octal string; default `"0644"`.
    #[serde(default)]
    pub permissions: FileMode,
    /// `create` writes the file only when it does not exist, `overwrite`
    /// replaces it, `append` adds to its end. Default `create`.
    #[serde(default)]
    pub op: FileOp,
}

/// How a file is written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum FileOp {
    /// Write only when the file does not exist yet.
    #[default]
    Create,
    /// Replace the file.
    Overwrite,
    /// Append to the file.
    Append,
}

/// kubelet settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Kubelet {
    /// kubelet image; by default `cairn.local/kubelet:<kubernetesVersion>`
    /// (built into the image).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageRef>,
    /// Extra kubelet flags, without leading dashes (`v: "2"`). They override
    /// the flags Cairn sets.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra_args: BTreeMap<ArgName, ScalarString>,
    /// Labels the node registers with.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_labels: BTreeMap<LabelKey, LabelValue>,
    /// Taints the node registers with, as `key: value:Effect`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_taints: BTreeMap<LabelKey, TaintValue>,
    /// Which of the node's addresses Kubernetes uses (the Node's
    /// InternalIP, etcd's peer address, the certificates' first name).
    #[serde(default, skip_serializing_if = "is_default")]
    pub node_ip: NodeIp,
}

/// How the node's Kubernetes address is chosen.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NodeIp {
    /// The first global address (IPv4 first, by link order) inside one of
    /// these networks; empty takes the first global address of any link.
    /// Set it on machines with several networks, e.g. the private network
    /// between the nodes: `[10.5.0.0/24]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub valid_subnets: Vec<Cidr>,
}

/// Container registry settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Registries {
    /// Mirrors by registry name (`docker.io`, or `*` for every registry).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub mirrors: BTreeMap<RegistryName, Mirror>,
}

/// Where to pull a registry's images from instead.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Mirror {
    /// Mirror URLs, tried in order before the registry itself.
    pub endpoints: Vec<HttpUrl>,
}

/// Optional behaviour switches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Features {
    /// Enforce the API role carried in client certificates (`os:admin`,
    /// `os:operator`, `os:reader`). When false every authenticated client
    /// is an admin.
    #[serde(default = "yes")]
    pub rbac: bool,
}

impl Default for Features {
    fn default() -> Self {
        Features { rbac: true }
    }
}
