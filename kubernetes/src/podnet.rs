//! The Pod network across nodes (`cluster.network.cni.name: bridge`), the
//! way flannel's host-gw backend does it: each node's Pods are on its own
//! bridge with addresses from the Node's podCIDR (the CNI config written
//! here), and every node routes each other node's podCIDR via that node's
//! InternalIP, programmed with rtnetlink from the Node objects and removed
//! when a node leaves. Traffic from Pods to anything outside the cluster's
//! Pod networks is masqueraded (one iptables rule per Pod network); Pod to
//! Pod traffic keeps its addresses. The nodes must share a network (the
//! InternalIPs on one link), as host-gw needs.
//!
//! `cni.name: none` writes nothing: the user installs a CNI.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use config::constants::{k8s, payload};
use config::spec::CniName;
use config::MachineConfig;
use host::network::link::{self, Route};
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, ListParams};
use runtime::resources::specs::AddressSpec;
use runtime::Runtime;

use crate::manifests::cni;

/// How often the Nodes are read again when nothing changes; quickly while
/// this node has no podCIDR yet.
const EVERY: Duration = Duration::from_secs(10);
const EARLY: Duration = Duration::from_secs(2);
/// Route metric of Pod routes (below DHCP's default routes' metrics).
pub const METRIC: u32 = 50;
/// The nat chain holding the masquerade rules.
pub const CHAIN: &str = "CAIRN-POD-MASQ";

/// One other node's Pod networks and where to reach them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub name: String,
    pub internal_ip: IpAddr,
    pub pod_cidrs: Vec<ipnet::IpNet>,
}

/// The InternalIP of a Node.
fn internal_ip(node: &Node) -> Option<IpAddr> {
    node.status
        .as_ref()?
        .addresses
        .as_ref()?
        .iter()
        .find(|a| a.type_ == "InternalIP")?
        .address
        .parse()
        .ok()
}

/// Every Node but `me` that has a podCIDR and an InternalIP.
pub fn peers(nodes: &[Node], me: &str) -> Vec<Peer> {
    nodes
        .iter()
        .filter(|n| n.metadata.name.as_deref() != Some(me))
        .filter_map(|n| {
            let pod_cidrs: Vec<ipnet::IpNet> = cni::pod_cidrs(n)
                .iter()
                .filter_map(|c| c.parse().ok())
                .collect();
            (!pod_cidrs.is_empty()).then_some(Peer {
                name: n.metadata.name.clone()?,
                internal_ip: internal_ip(n)?,
                pod_cidrs,
            })
        })
        .collect()
}

/// The link whose network holds `gateway`, from the node's addresses.
fn link_towards(addresses: &[AddressSpec], gateway: IpAddr) -> Option<u32> {
    addresses.iter().find_map(|a| {
        let net: ipnet::IpNet = a.address.parse().ok()?;
        (net.contains(&gateway) && net.addr() != gateway).then_some(a.link_index)
    })
}

/// The routes this node wants: each peer's podCIDRs via its InternalIP on
/// the link of that network (of the same family). Peers on no shared
/// network are returned apart, to be told.
pub fn routes(peers: &[Peer], addresses: &[AddressSpec]) -> (BTreeSet<Route>, Vec<String>) {
    let mut want = BTreeSet::new();
    let mut unreachable = Vec::new();
    for p in peers {
        let Some(index) = link_towards(addresses, p.internal_ip) else {
            unreachable.push(format!("{} ({})", p.name, p.internal_ip));
            continue;
        };
        for c in &p.pod_cidrs {
            if c.addr().is_ipv4() != p.internal_ip.is_ipv4() {
                continue;
            }
            want.insert(Route {
                destination: c.network(),
                prefix_len: c.prefix_len(),
                gateway: Some(p.internal_ip),
                index,
                metric: METRIC,
            });
        }
    }
    (want, unreachable)
}

/// The masquerade rules: Pods talking outside the Pod networks.
pub fn masquerade_rules(pod_subnets: &[ipnet::IpNet]) -> Vec<Vec<String>> {
    pod_subnets
        .iter()
        .filter(|n| n.addr().is_ipv4())
        .map(|n| {
            [
                "-s",
                &n.to_string(),
                "!",
                "-d",
                &n.to_string(),
                "-m",
                "comment",
                "--comment",
                "cairn: pod traffic leaving the pod network",
                "-j",
                "MASQUERADE",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect()
        })
        .collect()
}

async fn iptables(args: &[&str]) -> Result<String, String> {
    let bin = Path::new(payload::BIN_DIR).join("iptables");
    let out = runtime::exec::run_with_env(
        &bin.display().to_string(),
        args,
        &[
            ("XTABLES_LIBDIR", payload::XTABLES_LIB_DIR),
            ("LD_LIBRARY_PATH", payload::LIB_DIR),
        ],
    )
    .await
    .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(out.output)
    } else {
        Err(format!(
            "iptables {}: {}",
            args.join(" "),
            out.output.trim()
        ))
    }
}

/// Puts the masquerade rules in place, idempotently: the chain, its rules
/// (checked before added), the jump from POSTROUTING.
async fn ensure_masquerade(pod_subnets: &[ipnet::IpNet]) -> Result<(), String> {
    if iptables(&["-t", "nat", "-S", CHAIN]).await.is_err() {
        iptables(&["-t", "nat", "-N", CHAIN]).await?;
    }
    for rule in masquerade_rules(pod_subnets) {
        let rule: Vec<&str> = rule.iter().map(String::as_str).collect();
        let check = [&["-t", "nat", "-C", CHAIN][..], &rule].concat();
        if iptables(&check).await.is_err() {
            iptables(&[&["-t", "nat", "-A", CHAIN][..], &rule].concat()).await?;
        }
    }
    let jump = ["-t", "nat", "-C", "POSTROUTING", "-j", CHAIN];
    if iptables(&jump).await.is_err() {
        iptables(&["-t", "nat", "-A", "POSTROUTING", "-j", CHAIN]).await?;
    }
    Ok(())
}

/// Keeps the CNI config, the Pod routes and the masquerade rules in step
/// with the Nodes, for as long as machined runs. Reads the Nodes with the
/// kubelet's kubeconfig (a node may list Nodes), which on a worker appears
/// once the kubelet has joined.
pub async fn run(rt: Runtime) {
    run_with(
        rt,
        PathBuf::from(k8s::KUBELET_KUBECONFIG),
        PathBuf::from(k8s::CNI_CONF_DIR),
    )
    .await
}

pub async fn run_with(rt: Runtime, kubeconfig: PathBuf, cni_dir: PathBuf) {
    let mut client = None;
    let mut owned: BTreeSet<Route> = BTreeSet::new();
    let mut handle = None;
    let mut told: BTreeSet<String> = BTreeSet::new();
    let mut masq_done = false;
    loop {
        let cfg: Option<MachineConfig> = rt.running_config();
        let bridge = cfg
            .as_ref()
            .is_some_and(|c| c.cluster.network.cni.name == CniName::Bridge);
        let mut have_cidr = false;
        if bridge {
            if client.is_none() {
                client = crate::manifests::client(&kubeconfig).await.ok();
            }
            if handle.is_none() {
                handle = match rtnetlink::new_connection() {
                    Ok((conn, h, _)) => {
                        tokio::spawn(conn);
                        Some(h)
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "podnet: cannot open rtnetlink");
                        None
                    }
                };
            }
            if let (Some(c), Some(h), Some(cfg)) = (&client, &handle, &cfg) {
                let me = rt.hostname();
                match Api::<Node>::all(c.clone())
                    .list(&ListParams::default())
                    .await
                {
                    Ok(list) => {
                        // This node's CNI config, from its podCIDR.
                        if let Some(mine) = list
                            .items
                            .iter()
                            .find(|n| n.metadata.name.as_deref() == Some(me.as_str()))
                        {
                            let cidrs = cni::pod_cidrs(mine);
                            if !cidrs.is_empty() {
                                have_cidr = true;
                                match cni::write(&cni_dir, &cidrs) {
                                    Ok(true) => runtime::console!(
                                        "cni: {} written for podCIDR {}",
                                        cni::CONFLIST,
                                        cidrs.join(",")
                                    ),
                                    Ok(false) => {}
                                    Err(e) => runtime::console!(
                                        "cni: cannot write {}: {e}",
                                        cni_dir.join(cni::CONFLIST).display()
                                    ),
                                }
                            }
                        }
                        // Routes to every other node's Pods.
                        let addresses: Vec<AddressSpec> = rt
                            .store
                            .specs::<AddressSpec>()
                            .into_iter()
                            .map(|(_, a)| a)
                            .collect();
                        let (want, unreachable) = routes(&peers(&list.items, &me), &addresses);
                        for u in unreachable {
                            if told.insert(u.clone()) {
                                runtime::console!(
                                    "podnet: node {u} is on no network this node is on; its Pods are unreachable (host-gw routing needs one shared network)"
                                );
                            }
                        }
                        for r in owned.difference(&want) {
                            if let Err(e) = link::del_route(h, r).await {
                                runtime::console!(
                                    "podnet: cannot remove the route to {}/{}: {e}",
                                    r.destination,
                                    r.prefix_len
                                );
                            }
                        }
                        for r in &want {
                            if !owned.contains(r) {
                                match link::add_route(h, r).await {
                                    Ok(()) => runtime::console!(
                                        "podnet: pods {}/{} via {}",
                                        r.destination,
                                        r.prefix_len,
                                        r.gateway.map(|g| g.to_string()).unwrap_or_default()
                                    ),
                                    Err(e) => {
                                        runtime::console!(
                                            "podnet: cannot add the route to {}/{}: {e}",
                                            r.destination,
                                            r.prefix_len
                                        );
                                        continue;
                                    }
                                }
                            }
                        }
                        owned = want;
                        if !masq_done {
                            let subnets: Vec<ipnet::IpNet> = cfg
                                .cluster
                                .network
                                .pod_subnets
                                .iter()
                                .map(|s| s.net())
                                .collect();
                            match ensure_masquerade(&subnets).await {
                                Ok(()) => masq_done = true,
                                Err(e) => runtime::console!("podnet: {e}"),
                            }
                        }
                    }
                    Err(e) => tracing::debug!(error = %e, "podnet: cannot list the Nodes"),
                }
            }
        }
        tokio::time::sleep(if have_cidr { EVERY } else { EARLY }).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{NodeAddress, NodeSpec, NodeStatus};
    use kube::api::ObjectMeta;

    fn node(name: &str, ip: &str, cidr: Option<&str>) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            spec: Some(NodeSpec {
                pod_cidr: cidr.map(str::to_string),
                ..Default::default()
            }),
            status: Some(NodeStatus {
                addresses: Some(vec![NodeAddress {
                    type_: "InternalIP".into(),
                    address: ip.into(),
                }]),
                ..Default::default()
            }),
        }
    }

    fn addr(a: &str, index: u32) -> AddressSpec {
        AddressSpec {
            address: a.into(),
            link: format!("eth{index}"),
            link_index: index,
            family: "inet4".into(),
            scope: "global".into(),
            dynamic: false,
        }
    }

    #[test]
    fn each_other_node_s_pods_via_its_internal_ip_on_the_shared_link() {
        let nodes = vec![
            node("cp-1", "10.5.0.2", Some("10.244.0.0/24")),
            node("w-1", "10.5.0.3", Some("10.244.1.0/24")),
            node("w-2", "10.5.0.4", None), // no podCIDR yet
            node("far", "192.168.9.9", Some("10.244.9.0/24")), // no shared network
        ];
        let p = peers(&nodes, "w-1");
        assert_eq!(p.len(), 2);
        let addresses = vec![addr("10.0.2.15/24", 2), addr("10.5.0.3/24", 3)];
        let (want, unreachable) = routes(&p, &addresses);
        assert_eq!(
            want.into_iter().collect::<Vec<_>>(),
            vec![Route {
                destination: "10.244.0.0".parse().unwrap(),
                prefix_len: 24,
                gateway: Some("10.5.0.2".parse().unwrap()),
                index: 3,
                metric: METRIC,
            }]
        );
        assert_eq!(unreachable, vec!["far (192.168.9.9)"]);
    }

    #[test]
    fn pods_leaving_the_pod_network_are_masqueraded() {
        let rules = masquerade_rules(&["10.244.0.0/16".parse().unwrap()]);
        assert_eq!(rules.len(), 1);
        let r = rules[0].join(" ");
        assert!(r.starts_with("-s 10.244.0.0/16 ! -d 10.244.0.0/16"), "{r}");
        assert!(r.ends_with("-j MASQUERADE"), "{r}");
    }
}
