//! What the network should look like, computed from the machine config's
//! `machine.network`, the kernel's `ip=` and `cairn.hostname=`, and the
//! links present. A pure function, so every rule is tested without a
//! kernel; `configurator` makes the kernel match it.
//!
//! Rules:
//! - The config's interfaces, when it lists any, decide everything: a
//!   listed link gets its static addresses and routes, its MTU, DHCP only
//!   with `dhcp: true`; unlisted links are only brought up.
//! - Otherwise `ip=` does (static, or DHCP on its device), and without it
//!   DHCP runs on the first physical Ethernet link.
//! - Resolvers: the config's `nameservers`, else `ip=`'s, else DHCP's.
//! - Hostname: the config's, else `cairn.hostname=`, else `ip=`'s, else
//!   DHCP's, else `cairn-` and the MAC's last bytes.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use config::spec::{BondMode, Interface, Network};

use super::kernel_ip::KernelIp;
use super::link::{first_ethernet, Link};

/// Routes without a metric get this one (as in the config's docs).
pub const DEFAULT_METRIC: u32 = 1024;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct RoutePlan {
    pub destination: IpAddr,
    pub prefix_len: u8,
    pub gateway: Option<IpAddr>,
    pub metric: u32,
}

/// The settings of one link, by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkPlan {
    pub mtu: Option<u32>,
    pub addresses: Vec<(IpAddr, u8)>,
    pub routes: Vec<RoutePlan>,
    pub dhcp: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BondPlan {
    pub name: String,
    pub mode: BondMode,
    pub miimon: u32,
    pub members: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VlanPlan {
    pub name: String,
    pub parent: String,
    pub id: u16,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Desired {
    pub bonds: Vec<BondPlan>,
    pub vlans: Vec<VlanPlan>,
    /// Every link to configure, by name (bonds and VLANs included).
    pub links: BTreeMap<String, LinkPlan>,
    /// Static resolvers; empty: DHCP's.
    pub nameservers: Vec<IpAddr>,
    /// A hostname that is not DHCP's or the default.
    pub hostname: Option<String>,
    /// Config entries that match no link, for the console.
    pub problems: Vec<String>,
}

/// What the config, the command line and the links ask for.
pub struct Inputs<'a> {
    pub config: Option<&'a Network>,
    pub kernel_ip: Option<&'a KernelIp>,
    pub cmdline_hostname: Option<&'a str>,
    pub links: &'a [Link],
}

fn mac_text(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The link an interface entry names: by name, or the first whose MAC
/// matches the selector. A bond's name need not exist yet.
fn resolve_name(i: &Interface, links: &[Link]) -> Option<String> {
    if let Some(name) = &i.interface {
        return Some(name.to_string());
    }
    let selector = i.device_selector.as_ref()?;
    links
        .iter()
        .find(|l| {
            l.mac
                .is_some_and(|m| selector.hardware_addr.matches(&mac_text(&m)))
        })
        .map(|l| l.name.clone())
}

fn routes(list: &[config::spec::Route]) -> Vec<RoutePlan> {
    list.iter()
        .map(|r| RoutePlan {
            destination: r.network.net().network(),
            prefix_len: r.network.net().prefix_len(),
            gateway: r.gateway.as_ref().map(|g| g.addr()),
            metric: r.metric.unwrap_or(DEFAULT_METRIC),
        })
        .collect()
}

fn from_config(net: &Network, links: &[Link], d: &mut Desired) {
    for (n, i) in net.interfaces.iter().enumerate() {
        let Some(name) = resolve_name(i, links) else {
            d.problems.push(format!(
                "machine.network.interfaces[{n}]: no link matches its deviceSelector"
            ));
            continue;
        };
        let plan = LinkPlan {
            mtu: i.mtu.map(|m| m.get()),
            addresses: i
                .addresses
                .iter()
                .map(|a| (a.addr(), a.net().prefix_len()))
                .collect(),
            routes: routes(&i.routes),
            dhcp: i.dhcp,
        };
        if let Some(b) = &i.bond {
            d.bonds.push(BondPlan {
                name: name.clone(),
                mode: b.mode,
                miimon: b.miimon.unwrap_or(100),
                members: b.interfaces.iter().map(ToString::to_string).collect(),
            });
            for m in &b.interfaces {
                d.links.entry(m.to_string()).or_default();
            }
        }
        for v in &i.vlans {
            let vname = format!("{name}.{}", v.vlan_id.get());
            d.vlans.push(VlanPlan {
                name: vname.clone(),
                parent: name.clone(),
                id: v.vlan_id.get(),
            });
            d.links.insert(
                vname,
                LinkPlan {
                    mtu: v.mtu.map(|m| m.get()),
                    addresses: v
                        .addresses
                        .iter()
                        .map(|a| (a.addr(), a.net().prefix_len()))
                        .collect(),
                    routes: routes(&v.routes),
                    dhcp: v.dhcp,
                },
            );
        }
        d.links.insert(name, plan);
    }
}

fn from_kernel_ip(ip: Option<&KernelIp>, links: &[Link], d: &mut Desired) {
    let first = first_ethernet(links).map(|l| l.name.clone());
    match ip {
        Some(KernelIp::Static(s)) => {
            let Some(dev) = s.device.clone().or(first) else {
                d.problems.push("ip=: no Ethernet link to configure".into());
                return;
            };
            let mut plan = LinkPlan {
                addresses: vec![(IpAddr::V4(s.address), s.prefix_len)],
                dhcp: s.dhcp,
                ..LinkPlan::default()
            };
            if let Some(gw) = s.gateway {
                plan.routes.push(RoutePlan {
                    destination: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                    prefix_len: 0,
                    gateway: Some(IpAddr::V4(gw)),
                    metric: DEFAULT_METRIC,
                });
            }
            d.links.insert(dev, plan);
            d.nameservers = s.dns.iter().map(|a| IpAddr::V4(*a)).collect();
            d.hostname = s.hostname.clone();
        }
        Some(KernelIp::Dhcp { device }) => {
            if let Some(dev) = device.clone().or(first) {
                d.links.insert(
                    dev,
                    LinkPlan {
                        dhcp: true,
                        ..LinkPlan::default()
                    },
                );
            }
        }
        Some(KernelIp::Off) | None => match first {
            Some(dev) => {
                d.links.insert(
                    dev,
                    LinkPlan {
                        dhcp: true,
                        ..LinkPlan::default()
                    },
                );
            }
            None => d.problems.push("no Ethernet link for DHCP (yet)".into()),
        },
    }
}

/// Every static address the config gives any link (for apid's certificate).
pub fn static_addresses(net: &Network) -> Vec<IpAddr> {
    net.interfaces
        .iter()
        .flat_map(|i| {
            i.addresses
                .iter()
                .chain(i.vlans.iter().flat_map(|v| v.addresses.iter()))
        })
        .map(|a| a.addr())
        .collect()
}

pub fn desired(inputs: &Inputs<'_>) -> Desired {
    let mut d = Desired::default();
    match inputs.config {
        Some(net) if !net.interfaces.is_empty() => from_config(net, inputs.links, &mut d),
        _ => from_kernel_ip(inputs.kernel_ip, inputs.links, &mut d),
    }
    if let Some(net) = inputs.config {
        if !net.nameservers.is_empty() {
            d.nameservers = net.nameservers.iter().map(|a| a.addr()).collect();
        }
    }
    let config_hostname = inputs
        .config
        .and_then(|n| n.hostname.as_ref())
        .map(|h| h.to_string());
    d.hostname = config_hostname
        .or_else(|| inputs.cmdline_hostname.map(str::to_string))
        .or(d.hostname.take());
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(index: u32, name: &str, mac: u8) -> Link {
        Link {
            index,
            name: name.into(),
            mac: Some([0x52, 0x54, 0, 0x12, 0x34, mac]),
            is_ethernet: true,
            is_up: false,
            has_carrier: true,
            is_physical: true,
            mtu: 1500,
            controller: None,
        }
    }

    fn links() -> Vec<Link> {
        vec![link(2, "eth0", 0x56), link(3, "eth1", 0x57)]
    }

    fn net(yaml: &str) -> Network {
        serde_yaml::from_str(yaml).unwrap()
    }

    fn run(config: Option<&Network>, ip: Option<&str>, host: Option<&str>) -> Desired {
        let ip = ip.map(|v| KernelIp::parse(v).unwrap());
        let l = links();
        desired(&Inputs {
            config,
            kernel_ip: ip.as_ref(),
            cmdline_hostname: host,
            links: &l,
        })
    }

    #[test]
    fn without_config_dhcp_on_the_first_ethernet_link() {
        let d = run(None, None, None);
        assert_eq!(d.links.len(), 1);
        assert!(d.links["eth0"].dhcp);
        assert_eq!(d.hostname, None);
        // A config without interfaces changes nothing about links.
        let n = net("nameservers: [10.0.0.53]\nhostname: n1\n");
        let d = run(Some(&n), None, Some("ignored"));
        assert!(d.links["eth0"].dhcp);
        assert_eq!(d.nameservers, vec!["10.0.0.53".parse::<IpAddr>().unwrap()]);
        assert_eq!(d.hostname.as_deref(), Some("n1"));
    }

    #[test]
    fn kernel_ip_static_sets_address_gateway_dns_and_hostname() {
        let d = run(
            None,
            Some("10.0.2.20::10.0.2.2:255.255.255.0:node1:eth0:off:10.0.2.3"),
            None,
        );
        let p = &d.links["eth0"];
        assert!(!p.dhcp);
        assert_eq!(p.addresses, vec![("10.0.2.20".parse().unwrap(), 24)]);
        assert_eq!(p.routes[0].gateway, Some("10.0.2.2".parse().unwrap()));
        assert_eq!(p.routes[0].prefix_len, 0);
        assert_eq!(d.nameservers, vec!["10.0.2.3".parse::<IpAddr>().unwrap()]);
        assert_eq!(d.hostname.as_deref(), Some("node1"));
        // cairn.hostname wins over ip='s hostname.
        let d = run(
            None,
            Some("10.0.2.20::10.0.2.2:24:node1:eth0:off"),
            Some("other"),
        );
        assert_eq!(d.hostname.as_deref(), Some("other"));
        let d = run(None, Some("eth1:dhcp"), None);
        assert!(d.links["eth1"].dhcp && !d.links.contains_key("eth0"));
    }

    #[test]
    fn config_interfaces_by_name_and_mac_with_vlans_bonds_and_routes() {
        let n = net("interfaces:
  - interface: eth0
    dhcp: true
  - deviceSelector: {hardwareAddr: '52:54:00:12:34:57'}
    addresses: [192.168.100.1/24]
    mtu: 9000
    routes:
      - {network: 0.0.0.0/0, gateway: 192.168.100.254}
      - {network: 10.9.0.0/16, gateway: 192.168.100.253, metric: 10}
    vlans:
      - {vlanId: 42, addresses: [172.16.42.1/24]}
  - interface: bond0
    bond: {interfaces: [eth2, eth3], mode: active-backup}
    addresses: [10.10.0.1/24]
");
        let d = run(
            Some(&n),
            Some("10.0.2.20::10.0.2.2:24:node1:eth0:off"),
            None,
        );
        assert!(
            d.links["eth0"].dhcp && d.links["eth0"].addresses.is_empty(),
            "config replaces ip="
        );
        let e1 = &d.links["eth1"];
        assert_eq!(e1.mtu, Some(9000));
        assert_eq!(e1.addresses, vec![("192.168.100.1".parse().unwrap(), 24)]);
        assert_eq!(e1.routes.len(), 2);
        assert_eq!(e1.routes[0].metric, DEFAULT_METRIC);
        assert_eq!(e1.routes[1].metric, 10);
        assert_eq!(
            d.vlans,
            vec![VlanPlan {
                name: "eth1.42".into(),
                parent: "eth1".into(),
                id: 42
            }]
        );
        assert_eq!(
            d.links["eth1.42"].addresses,
            vec![("172.16.42.1".parse().unwrap(), 24)]
        );
        assert_eq!(d.bonds[0].members, vec!["eth2", "eth3"]);
        assert_eq!(
            (d.bonds[0].mode, d.bonds[0].miimon),
            (BondMode::ActiveBackup, 100)
        );
        assert!(d.links.contains_key("eth2") && d.links.contains_key("bond0"));
        assert_eq!(d.hostname, None, "ip='s hostname goes with the rest of ip=");
        let statics: Vec<String> = static_addresses(&n)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(statics, vec!["192.168.100.1", "172.16.42.1", "10.10.0.1"]);
    }

    #[test]
    fn an_unmatched_selector_is_a_problem_not_a_failure() {
        let n = net("interfaces:\n  - deviceSelector: {hardwareAddr: 'aa:bb:*'}\n    dhcp: true\n");
        let d = run(Some(&n), None, None);
        assert!(d.links.is_empty());
        assert_eq!(d.problems.len(), 1);
        assert!(d.problems[0].contains("interfaces[0]"));
    }
}
