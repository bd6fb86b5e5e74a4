//! What applying a new machine config takes, decided per changed field:
//! whether the node must reboot, and which services restart. One table,
//! [`RULES`]; a field it does not name needs a reboot (the safe answer).
//!
//! containerd, the kubelet and etcd are not in the table: they run from specs
//! derived from the config (`kubernetes::specs`), restart when their spec
//! changes, and the apply reports them by comparing the specs of the old
//! and the new config.

use std::collections::BTreeSet;

use config::MachineConfig;
use serde_json::Value;

/// How a change to a field reaches the running node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Impact {
    /// Applied live by machined (see `live`), restarting these services
    /// if they run.
    Live(&'static [&'static str]),
    /// Only a reboot applies it.
    Reboot,
}

/// Field path prefixes and their impact; the longest matching prefix wins.
pub const RULES: &[(&str, Impact)] = &[
    // Applied live by machined.
    ("machine.network.hostname", Impact::Live(&[])),
    ("machine.sysctls", Impact::Live(&[])),
    ("machine.files", Impact::Live(&[])),
    ("machine.token", Impact::Live(&[])),
    // apid's certificates are issued again; apid reloads them in place.
    ("machine.certSans", Impact::Live(&["apid"])),
    ("machine.ca", Impact::Live(&["apid"])),
    ("machine.features.rbac", Impact::Live(&["apid"])),
    // In the kubelet's and containerd's specs: a changed spec restarts them.
    ("machine.kubelet", Impact::Live(&[])),
    ("machine.registries", Impact::Live(&[])),
    ("cluster.etcd.extraArgs", Impact::Live(&[])),
    // The time and network controllers follow the running config.
    ("machine.time", Impact::Live(&[])),
    ("machine.network", Impact::Live(&[])),
    // The disk layout and the node's role decide what boots; the cluster
    // settings are baked into etcd and the control plane when they start.
    ("machine.install", Impact::Reboot),
    ("machine.type", Impact::Reboot),
    ("machine.features", Impact::Reboot),
    ("cluster", Impact::Reboot),
];

/// The impact of a change to `path`.
pub fn impact(path: &str) -> Impact {
    RULES
        .iter()
        .filter(|(prefix, _)| {
            path == *prefix
                || path
                    .strip_prefix(prefix)
                    .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['))
        })
        .max_by_key(|(prefix, _)| prefix.len())
        .map_or(Impact::Reboot, |(_, i)| *i)
}

/// What applying a config takes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Every changed field path (`machine.certSANs`, `cluster.network.podSubnets`).
    pub changed: Vec<String>,
    /// The changed fields only a reboot applies.
    pub needs_reboot: Vec<String>,
    /// Services that restart (or reload) to pick the change up.
    pub services: BTreeSet<&'static str>,
}

impl Plan {
    pub fn reboot_required(&self) -> bool {
        !self.needs_reboot.is_empty()
    }
}

/// The plan for replacing `running` with `new`. Without a running config
/// (maintenance mode) nothing has started that the config shapes, so the
/// node goes on booting with it: no reboot, nothing to restart.
pub fn plan(running: Option<&MachineConfig>, new: &MachineConfig) -> Plan {
    let Some(old) = running else {
        return Plan::default();
    };
    let mut changed = Vec::new();
    for (name, a, b) in [
        ("machine", to_value(&old.machine), to_value(&new.machine)),
        ("cluster", to_value(&old.cluster), to_value(&new.cluster)),
    ] {
        changed_paths(name, &a, &b, &mut changed);
    }
    let mut plan = Plan::default();
    for path in &changed {
        match impact(path) {
            Impact::Reboot => plan.needs_reboot.push(path.clone()),
            Impact::Live(services) => plan.services.extend(services.iter().copied()),
        }
    }
    plan.changed = changed;
    plan
}

fn to_value<T: serde::Serialize>(v: &T) -> Value {
    // Config types hold only strings, numbers, lists and string-keyed maps.
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// Paths where `a` and `b` differ: down through maps (a map left out
/// because it holds only defaults counts as empty); lists and scalars
/// compare whole.
fn changed_paths(path: &str, a: &Value, b: &Value, out: &mut Vec<String>) {
    let empty = serde_json::Map::new();
    let as_map = |v: &Value| match v {
        Value::Object(m) => Some(m.clone()),
        Value::Null => Some(empty.clone()),
        _ => None,
    };
    if a == b {
        return;
    }
    match (as_map(a), as_map(b)) {
        (Some(ma), Some(mb)) if a.is_object() || b.is_object() => {
            let keys: BTreeSet<&String> = ma.keys().chain(mb.keys()).collect();
            for k in keys {
                let (va, vb) = (
                    ma.get(k).unwrap_or(&Value::Null),
                    mb.get(k).unwrap_or(&Value::Null),
                );
                changed_paths(&format!("{path}.{k}"), va, vb, out);
            }
        }
        _ => out.push(path.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apply::tests::generated;

    #[test]
    fn live_fields_restart_services_and_others_need_a_reboot() {
        let (cfg, _) = generated();
        assert_eq!(plan(Some(&cfg), &cfg), Plan::default());
        assert_eq!(plan(None, &cfg), Plan::default());

        let mut c = cfg.clone();
        c.machine.network.hostname = Some("n2".parse().unwrap());
        c.machine
            .cert_sans
            .push(config::types::SubjectAltName::Dns("lb.example".into()));
        let p = plan(Some(&cfg), &c);
        assert_eq!(
            p.changed,
            vec!["machine.certSans", "machine.network.hostname"]
        );
        assert!(!p.reboot_required());
        assert_eq!(p.services.iter().copied().collect::<Vec<_>>(), vec!["apid"]);

        let mut c = cfg.clone();
        c.cluster.network.pod_subnets = vec!["10.200.0.0/16".parse().unwrap()];
        c.machine.install.disk = Some("/dev/vdb".parse().unwrap());
        let p = plan(Some(&cfg), &c);
        assert!(p.reboot_required());
        assert_eq!(
            p.needs_reboot,
            vec!["machine.install.disk", "cluster.network.podSubnets"]
        );
    }

    #[test]
    fn longest_prefix_wins_and_unknown_fields_reboot() {
        assert_eq!(impact("machine.network.hostname"), Impact::Live(&[]));
        assert_eq!(impact("machine.network.interfaces"), Impact::Live(&[]));
        assert_eq!(impact("machine.time.servers"), Impact::Live(&[]));
        assert_eq!(impact("machine.features.rbac"), Impact::Live(&["apid"]));
        assert_eq!(
            impact("machine.sysctls.net.ipv4.ip_forward"),
            Impact::Live(&[])
        );
        assert_eq!(impact("machine.certSansX"), Impact::Reboot);
        assert_eq!(impact("machine.somethingNew"), Impact::Reboot);
    }
}
