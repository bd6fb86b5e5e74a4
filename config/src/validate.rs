//! Semantic checks across fields, after parsing succeeded: role-specific
//! secrets, key/certificate pairs, network consistency, install disk by
//! mode. Every problem is reported, each with its field path.

use std::collections::HashMap;
use std::fmt;

use ipnet::IpNet;

use crate::document::{CLUSTER_KIND, MACHINE_KIND};
use crate::pki;
use crate::spec::{CertAndKey, Interface, MachineType, Route};
use crate::types::Cidr;
use crate::{MachineConfig, ParseError};

/// Where the config will run, which changes what it must contain.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Mode {
    /// Booted from an image that is already on its disk (raw, qcow2,
    /// cloud): no install disk needed.
    #[default]
    Cloud,
    /// Bare metal or a VM booted from the ISO: `machine.install.disk` is
    /// required.
    Metal,
}

impl Mode {
    pub const ALL: [Mode; 2] = [Mode::Cloud, Mode::Metal];
    pub fn name(self) -> &'static str {
        match self {
            Mode::Cloud => "cloud",
            Mode::Metal => "metal",
        }
    }
}

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Mode, String> {
        Mode::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| format!("unknown mode {s:?} (expected cloud or metal)"))
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One semantic problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationError {
    /// `MachineConfig` or `ClusterConfig`.
    pub kind: &'static str,
    /// Field path such as `cluster.ca.key`.
    pub path: String,
    pub message: String,
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}: {}: {}", self.kind, self.path, self.message)
    }
}

/// Every semantic problem (at least one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationErrors(pub Vec<ValidationError>);

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ValidationErrors {}

impl ValidationErrors {
    /// The problems placed in the file the config was parsed from: each
    /// gets its document number and the line and column of its field (or
    /// of the closest present parent), printed like parse errors.
    pub fn locate(&self, source: &[u8]) -> Vec<ParseError> {
        self.0
            .iter()
            .map(|e| {
                let (document, location) = crate::document::locate_field(source, e.kind, &e.path);
                ParseError {
                    document,
                    kind: Some(e.kind.to_string()),
                    path: e.path.clone(),
                    location,
                    message: e.message.clone(),
                }
            })
            .collect()
    }
}

#[derive(Default)]
struct Problems(Vec<ValidationError>);

impl Problems {
    fn machine(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(ValidationError {
            kind: MACHINE_KIND,
            path: path.into(),
            message: message.into(),
        });
    }
    fn cluster(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(ValidationError {
            kind: CLUSTER_KIND,
            path: path.into(),
            message: message.into(),
        });
    }
}

/// Check `config` for `mode`.
pub fn validate(config: &MachineConfig, mode: Mode) -> Result<(), ValidationErrors> {
    let mut p = Problems::default();
    machine_checks(config, mode, &mut p);
    cluster_checks(config, &mut p);
    if p.0.is_empty() {
        Ok(())
    } else {
        Err(ValidationErrors(p.0))
    }
}

const WORKER_NO_KEY: &str =
    "must not be set on a worker: only control-plane machines hold this key";

fn machine_checks(config: &MachineConfig, mode: Mode, p: &mut Problems) {
    let m = &config.machine;
    let controlplane = m.machine_type == MachineType::Controlplane;
    match (controlplane, &m.ca.key) {
        (true, None) => p.machine(
            "machine.ca.key",
            "required on a control-plane machine (it signs apid and client certificates)",
        ),
        (false, Some(_)) => p.machine("machine.ca.key", WORKER_NO_KEY),
        _ => {}
    }
    check_ca("machine.ca", &m.ca, |path, msg| p.machine(path, msg));

    if mode == Mode::Metal && m.install.disk.is_none() {
        p.machine(
            "machine.install.disk",
            "required in metal mode (the disk to install Cairn to, e.g. /dev/vda)",
        );
    }

    let mut names: HashMap<String, usize> = HashMap::new();
    for (i, iface) in m.network.interfaces.iter().enumerate() {
        let path = format!("machine.network.interfaces[{i}]");
        check_interface(&path, iface, p);
        if let Some(name) = &iface.interface {
            if let Some(first) = names.insert(name.to_string(), i) {
                p.machine(
                    format!("{path}.interface"),
                    format!("{name} is configured twice (also in interfaces[{first}])"),
                );
            }
        }
    }

    if !m.time.disabled && m.time.servers.is_empty() {
        p.machine(
            "machine.time.servers",
            "list at least one server, or set machine.time.disabled: true",
        );
    }

    for (i, f) in m.files.iter().enumerate() {
        if !f.path.as_str().starts_with("/var/") {
            p.machine(
                format!("machine.files[{i}].path"),
                format!(
                    "{} is outside /var: the root filesystem is read-only",
                    f.path
                ),
            );
        }
    }
}

fn check_interface(path: &str, iface: &Interface, p: &mut Problems) {
    match (&iface.interface, &iface.device_selector) {
        (None, None) => p.machine(
            path.to_string(),
            "give either interface (a link name) or deviceSelector",
        ),
        (Some(_), Some(_)) => p.machine(
            path.to_string(),
            "give interface or deviceSelector, not both",
        ),
        _ => {}
    }
    check_routes(&format!("{path}.routes"), &iface.routes, p);
    let mut ids: HashMap<u16, usize> = HashMap::new();
    for (j, vlan) in iface.vlans.iter().enumerate() {
        if let Some(first) = ids.insert(vlan.vlan_id.get(), j) {
            p.machine(
                format!("{path}.vlans[{j}].vlanId"),
                format!(
                    "VLAN {} is configured twice (also in vlans[{first}])",
                    vlan.vlan_id.get()
                ),
            );
        }
        check_routes(&format!("{path}.vlans[{j}].routes"), &vlan.routes, p);
    }
    if let Some(bond) = &iface.bond {
        if bond.interfaces.is_empty() {
            p.machine(
                format!("{path}.bond.interfaces"),
                "a bond needs at least one member link",
            );
        }
        if iface.interface.is_none() {
            p.machine(
                format!("{path}.interface"),
                "a bond needs a name for the new link",
            );
        }
    }
}

fn check_routes(path: &str, routes: &[Route], p: &mut Problems) {
    for (i, r) in routes.iter().enumerate() {
        if let Some(gw) = r.gateway {
            if gw.addr().is_ipv4() != r.network.is_ipv4() {
                p.machine(
                    format!("{path}[{i}].gateway"),
                    format!(
                        "{gw} and the network {} are of different IP families",
                        r.network
                    ),
                );
            }
        }
    }
}

/// The certificate must be a CA and the key, when present, its key.
fn check_ca(path: &str, ca: &CertAndKey, mut report: impl FnMut(String, String)) {
    if !pki::is_ca(&ca.crt) {
        report(
            format!("{path}.crt"),
            "is not a CA certificate (basicConstraints CA:TRUE)".into(),
        );
    }
    if let Some(key) = &ca.key {
        if !pki::key_matches(&ca.crt, key) {
            report(
                format!("{path}.key"),
                format!("does not belong to {path}.crt"),
            );
        }
    }
}

/// The API server's default `--service-node-port-range`.
const NODE_PORTS: std::ops::RangeInclusive<u16> = 30000..=32767;

fn cluster_checks(config: &MachineConfig, p: &mut Problems) {
    let c = &config.cluster;
    let controlplane = config.machine.machine_type == MachineType::Controlplane;

    check_ca("cluster.ca", &c.ca, |path, msg| p.cluster(path, msg));
    if let Some(port) = c.addons.dashboard.node_port {
        if !NODE_PORTS.contains(&port) {
            p.cluster(
                "cluster.addons.dashboard.nodePort",
                format!(
                    "{port} is outside the API server's NodePort range {}-{}",
                    NODE_PORTS.start(),
                    NODE_PORTS.end()
                ),
            );
        }
    }
    if let Some(agg) = &c.aggregator_ca {
        check_ca("cluster.aggregatorCa", agg, |path, msg| {
            p.cluster(path, msg)
        });
    }
    if let Some(etcd) = &c.etcd.ca {
        check_ca("cluster.etcd.ca", etcd, |path, msg| p.cluster(path, msg));
    }

    if controlplane {
        let why = "required on a control-plane machine";
        if c.ca.key.is_none() {
            p.cluster(
                "cluster.ca.key",
                format!("{why} (it signs the Kubernetes certificates)"),
            );
        }
        match &c.aggregator_ca {
            None => p.cluster("cluster.aggregatorCa", why),
            Some(a) if a.key.is_none() => p.cluster("cluster.aggregatorCa.key", why),
            _ => {}
        }
        match &c.etcd.ca {
            None => p.cluster("cluster.etcd.ca", format!("{why} (etcd runs there)")),
            Some(e) if e.key.is_none() => p.cluster("cluster.etcd.ca.key", why),
            _ => {}
        }
        if c.service_account.is_none() {
            p.cluster(
                "cluster.serviceAccount",
                format!("{why} (it signs service-account tokens)"),
            );
        }
        if c.secretbox_encryption_secret.is_none() {
            p.cluster(
                "cluster.secretboxEncryptionSecret",
                format!("{why} (it encrypts Secrets in etcd)"),
            );
        }
    } else {
        if c.ca.key.is_some() {
            p.cluster("cluster.ca.key", WORKER_NO_KEY);
        }
        if c.aggregator_ca.as_ref().is_some_and(|a| a.key.is_some()) {
            p.cluster("cluster.aggregatorCa.key", WORKER_NO_KEY);
        }
        if c.etcd.ca.as_ref().is_some_and(|e| e.key.is_some()) {
            p.cluster("cluster.etcd.ca.key", WORKER_NO_KEY);
        }
        if c.service_account.is_some() {
            p.cluster("cluster.serviceAccount", WORKER_NO_KEY);
        }
        if c.secretbox_encryption_secret.is_some() {
            p.cluster("cluster.secretboxEncryptionSecret", WORKER_NO_KEY);
        }
    }

    if c.kubernetes_version.major() != 1 {
        p.cluster(
            "cluster.kubernetesVersion",
            format!("{} is not a Kubernetes 1.x version", c.kubernetes_version),
        );
    }

    let net = &c.network;
    check_subnets("cluster.network.podSubnets", &net.pod_subnets, p);
    check_subnets("cluster.network.serviceSubnets", &net.service_subnets, p);
    // kube-apiserver 1.20 refuses service ranges with more than 20 host
    // bits (IPv4 /12, IPv6 /108).
    const MAX_SERVICE_HOST_BITS: u8 = 20;
    for (i, s) in net.service_subnets.iter().enumerate() {
        let max = s.net().max_prefix_len();
        if max - s.net().prefix_len() > MAX_SERVICE_HOST_BITS {
            p.cluster(
                format!("cluster.network.serviceSubnets[{i}]"),
                format!(
                    "{s} is too large: kube-apiserver allows at most {MAX_SERVICE_HOST_BITS} host bits (a /{})",
                    max - MAX_SERVICE_HOST_BITS
                ),
            );
        }
    }
    for (i, s) in net.pod_subnets.iter().enumerate() {
        let node_prefix = if s.is_ipv4() { 24 } else { 64 };
        if s.net().prefix_len() > node_prefix {
            p.cluster(
                format!("cluster.network.podSubnets[{i}]"),
                format!("{s} is too small: each node gets a /{node_prefix} of it"),
            );
        }
        for (j, svc) in net.service_subnets.iter().enumerate() {
            if overlap(s.net(), svc.net()) {
                p.cluster(
                    format!("cluster.network.podSubnets[{i}]"),
                    format!("{s} overlaps serviceSubnets[{j}] {svc}"),
                );
            }
        }
    }
    let families = |v: &[Cidr]| {
        let mut f: Vec<bool> = v.iter().map(Cidr::is_ipv4).collect();
        f.sort_unstable();
        f
    };
    if families(&net.pod_subnets) != families(&net.service_subnets) {
        p.cluster(
            "cluster.network.serviceSubnets",
            "pod and service subnets must cover the same IP families",
        );
    }
    if let Some(ip) = c.control_plane.endpoint.ip() {
        for s in net.pod_subnets.iter().chain(&net.service_subnets) {
            if s.net().contains(&ip) {
                p.cluster(
                    "cluster.controlPlane.endpoint",
                    format!("the address {ip} lies inside the cluster subnet {s}"),
                );
            }
        }
    }
}

fn check_subnets(path: &str, subnets: &[Cidr], p: &mut Problems) {
    match subnets.len() {
        0 => p.cluster(path, "list at least one subnet"),
        1 => {}
        2 if subnets[0].is_ipv4() != subnets[1].is_ipv4() => {}
        2 => p.cluster(
            path,
            "two subnets must be one IPv4 and one IPv6 (dual-stack)",
        ),
        n => p.cluster(
            path,
            format!("{n} subnets given; at most one IPv4 and one IPv6"),
        ),
    }
}

fn overlap(a: IpNet, b: IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse() {
        assert_eq!("metal".parse::<Mode>().unwrap(), Mode::Metal);
        assert!("container".parse::<Mode>().is_err());
    }

    #[test]
    fn overlap_both_ways() {
        let a: IpNet = "10.0.0.0/8".parse().unwrap();
        let b: IpNet = "10.96.0.0/12".parse().unwrap();
        assert!(overlap(a, b) && overlap(b, a));
        assert!(!overlap(a, "192.168.0.0/16".parse().unwrap()));
    }
}
