//! Addresses Kubernetes derives from the config and the network: the
//! cluster DNS service IP and the node's own IP.

use std::net::IpAddr;

use config::MachineConfig;

use runtime::resources::specs::AddressSpec;
use runtime::resources::Store;

/// The `n`th address of a network (`10.96.0.0/12`, 10 -> `10.96.0.10`).
pub fn nth_address(net: ipnet::IpNet, n: u32) -> Option<IpAddr> {
    let ip = match net.network() {
        IpAddr::V4(a) => IpAddr::V4(u32::from(a).checked_add(n)?.into()),
        IpAddr::V6(a) => IpAddr::V6(u128::from(a).checked_add(u128::from(n))?.into()),
    };
    net.contains(&ip).then_some(ip)
}

/// The cluster DNS Service's IP: the 10th address of the first service
/// subnet (kubeadm's convention).
pub fn dns_service_ip(cfg: &MachineConfig) -> Option<IpAddr> {
    cfg.cluster
        .network
        .service_subnets
        .first()
        .and_then(|s| nth_address(s.net(), 10))
}

/// Links whose addresses are not the node's (loopback, the pod bridge,
/// pod veths, kube-proxy's dummy).
fn is_node_link(link: &str) -> bool {
    !(link == "lo"
        || link == "cni0"
        || link.starts_with("veth")
        || link.starts_with("kube-")
        || link == "docker0")
}

/// The node's global addresses on node links, the one Kubernetes uses
/// first: inside `machine.kubelet.nodeIp.validSubnets` when that is set,
/// then IPv4 before IPv6, then by link index.
pub fn node_addresses(store: &Store, cfg: Option<&MachineConfig>) -> Vec<IpAddr> {
    let subnets: Vec<ipnet::IpNet> = cfg
        .map(|c| {
            c.machine
                .kubelet
                .node_ip
                .valid_subnets
                .iter()
                .map(|s| s.net())
                .collect()
        })
        .unwrap_or_default();
    let mut addrs: Vec<(bool, bool, u32, IpAddr)> = store
        .specs::<AddressSpec>()
        .into_iter()
        .map(|(_, a)| a)
        .filter(|a| a.scope == "global" && is_node_link(&a.link))
        .filter_map(|a| {
            let ip: IpAddr = a.address.split('/').next()?.parse().ok()?;
            let outside = !subnets.is_empty() && !subnets.iter().any(|n| n.contains(&ip));
            Some((outside, a.family != "inet4", a.link_index, ip))
        })
        .collect();
    addrs.sort();
    let mut v: Vec<IpAddr> = addrs.into_iter().map(|(_, _, _, ip)| ip).collect();
    v.dedup();
    v
}

/// The address the node registers with (the Node's InternalIP): the first
/// of [`node_addresses`]; none while `validSubnets` matches no address.
pub fn node_ip(store: &Store, cfg: Option<&MachineConfig>) -> Option<IpAddr> {
    let first = node_addresses(store, cfg).into_iter().next()?;
    let subnets = cfg
        .map(|c| c.machine.kubelet.node_ip.valid_subnets.as_slice())
        .unwrap_or_default();
    (subnets.is_empty() || subnets.iter().any(|n| n.net().contains(&first))).then_some(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenth_address_of_the_service_subnet() {
        assert_eq!(
            nth_address("10.96.0.0/12".parse().unwrap(), 10),
            Some("10.96.0.10".parse().unwrap())
        );
        assert_eq!(
            nth_address("fd00::/108".parse().unwrap(), 10),
            Some("fd00::a".parse().unwrap())
        );
        assert_eq!(nth_address("10.0.0.0/29".parse().unwrap(), 10), None);
        let cfg = super::super::testutil::machine_config();
        assert_eq!(dns_service_ip(&cfg), Some("10.96.0.10".parse().unwrap()));
    }

    #[test]
    fn node_ip_skips_pod_links() {
        let store = Store::new();
        let w = store
            .writer("test", &[runtime::resources::kind::ADDRESSES])
            .unwrap();
        let a = |addr: &str, link: &str, idx: u32, fam: &str| AddressSpec {
            address: addr.into(),
            link: link.into(),
            link_index: idx,
            family: fam.into(),
            scope: "global".into(),
            dynamic: false,
        };
        w.put("1", a("10.244.0.1/24", "cni0", 1, "inet4")).unwrap();
        w.put("2", a("fd00::5/64", "eth0", 2, "inet6")).unwrap();
        assert_eq!(node_ip(&store, None), Some("fd00::5".parse().unwrap()));
        w.put("3", a("10.5.0.2/24", "eth0", 2, "inet4")).unwrap();
        assert_eq!(node_ip(&store, None), Some("10.5.0.2".parse().unwrap()));
    }

    #[test]
    fn valid_subnets_choose_the_private_network() {
        let store = Store::new();
        let w = store
            .writer("test", &[runtime::resources::kind::ADDRESSES])
            .unwrap();
        let put = |id: &str, addr: &str, link: &str, idx: u32| {
            w.put(
                id,
                AddressSpec {
                    address: addr.into(),
                    link: link.into(),
                    link_index: idx,
                    family: "inet4".into(),
                    scope: "global".into(),
                    dynamic: false,
                },
            )
            .unwrap();
        };
        put("a", "10.0.2.15/24", "eth0", 2);
        let mut cfg = crate::testutil::machine_config();
        cfg.machine.kubelet.node_ip.valid_subnets = vec!["10.5.0.0/24".parse().unwrap()];
        // Only the user network so far: no node IP yet, rather than a wrong one.
        assert_eq!(node_ip(&store, Some(&cfg)), None);
        put("b", "10.5.0.3/24", "eth1", 3);
        assert_eq!(
            node_ip(&store, Some(&cfg)),
            Some("10.5.0.3".parse().unwrap())
        );
        assert_eq!(
            node_addresses(&store, Some(&cfg)),
            vec![
                "10.5.0.3".parse::<IpAddr>().unwrap(),
                "10.0.2.15".parse().unwrap()
            ]
        );
        // Without the setting the first link's address is the node's.
        assert_eq!(node_ip(&store, None), Some("10.0.2.15".parse().unwrap()));
    }
}
