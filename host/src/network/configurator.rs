//! The network configurator: keeps the kernel's links, addresses and
//! routes, resolv.conf, hosts and the hostname matching [`desired`], and
//! converges again whenever the running machine config changes, a link
//! appears or goes, or a DHCP lease changes (and every minute, in case
//! something else changed the network).
//!
//! It removes only what it added itself (static addresses, routes,
//! VLAN and bond links, DHCP clients), so addresses the kernel or someone
//! else set stay alone.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rtnetlink::packet_route::link::BondMode as KernelBondMode;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::desired::{self, Desired, Inputs, RoutePlan};
use super::dhcp_sink::{Leases, LinkSink};
use super::kernel_ip::KernelIp;
use super::link::{self, Link, Route};
use super::{dhcp, lease, resolv, Network};
use runtime::resources::{kind, Filter, Watch, WatchKind};
use runtime::Runtime;

use crate::cmdline::Cmdline;

/// How long boot waits for the first DHCP lease before it goes on.
pub const FIRST_LEASE_TIMEOUT: Duration = Duration::from_secs(30);
/// A config change waits this long before it touches the network, so the
/// reply to apply-config reaches the caller over the network it changes.
const APPLY_DELAY: Duration = Duration::from_secs(1);
const RECHECK: Duration = Duration::from_secs(60);
/// After a pass that could not do everything (a link missing, netlink
/// busy while links change at boot), the next comes this soon.
const RETRY: Duration = Duration::from_secs(2);

struct DhcpClient {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// What the configurator added, so it can take it away again.
#[derive(Default)]
struct Owned {
    addresses: BTreeSet<(String, IpAddr, u8)>,
    routes: BTreeSet<(String, RoutePlan)>,
    virtual_links: BTreeSet<String>,
    dhcp: BTreeMap<String, DhcpClient>,
    /// Problems already told on the console.
    told: BTreeSet<String>,
}

pub struct NetworkConfigurator {
    rt: Runtime,
    /// `hostname=` on the kernel command line.
    cmdline_hostname: Option<String>,
    net: Network,
    kernel_ip: Option<KernelIp>,
    leases: Arc<Leases>,
}

/// Resolves once boot's network configuration is done: the first DHCP
/// lease, [`FIRST_LEASE_TIMEOUT`], or at once without DHCP.
#[derive(Clone)]
pub struct Ready(watch::Receiver<bool>);

impl Ready {
    pub async fn wait(&self) {
        let _ = self.0.clone().wait_for(|r| *r).await;
    }
}

/// Starts the configurator: it keeps the network as the running config
/// (and the kernel command line `cmdline`) want it.
pub fn start(rt: &Runtime, cmdline: &Cmdline, net: Network) -> Ready {
    let kernel_ip = match cmdline.ip() {
        Some(Ok(ip)) => Some(ip),
        Some(Err(e)) => {
            runtime::console!("network: ignoring ip= on the kernel command line: {e}");
            None
        }
        None => None,
    };
    let leases = Arc::new(Leases::default());
    let ready = Ready(leases.first.subscribe());
    let c = NetworkConfigurator {
        rt: rt.clone(),
        cmdline_hostname: cmdline.hostname().map(str::to_string),
        net,
        kernel_ip,
        leases,
    };
    tokio::spawn(c.run());
    ready
}

fn kernel_bond_mode(m: config::spec::BondMode) -> KernelBondMode {
    use config::spec::BondMode as B;
    match m {
        B::BalanceRr => KernelBondMode::BalanceRr,
        B::ActiveBackup => KernelBondMode::ActiveBackup,
        B::BalanceXor => KernelBondMode::BalanceXor,
        B::Broadcast => KernelBondMode::Broadcast,
        B::Lacp => KernelBondMode::Ieee8023Ad,
        B::BalanceTlb => KernelBondMode::BalanceTlb,
        B::BalanceAlb => KernelBondMode::BalanceAlb,
    }
}

impl NetworkConfigurator {
    async fn run(self) {
        let store = self.rt.store.clone();
        let mut configs = Watch::new(&store, Filter::kind(kind::MACHINE_CONFIG), false);
        let mut links = Watch::new(&store, Filter::kind(kind::LINKS), false);
        let mut owned = Owned::default();
        let first = self.leases.first.clone();
        tokio::spawn(async move {
            tokio::time::sleep(FIRST_LEASE_TIMEOUT).await;
            if !*first.borrow() {
                runtime::console!(
                    "network: no DHCP lease yet; continuing, still trying in the background"
                );
            }
            first.send_replace(true);
        });
        loop {
            let settled = self.reconcile(&mut owned).await;
            if owned.dhcp.is_empty() {
                self.leases.first.send_replace(true);
            }
            // Links change state all the time (carrier, counters); only a
            // link coming or going is a reason to converge again.
            let link_added_or_removed = async {
                loop {
                    if matches!(
                        links.next().await.kind,
                        WatchKind::Created | WatchKind::Destroyed
                    ) {
                        return;
                    }
                }
            };
            tokio::select! {
                _ = configs.next() => {
                    tokio::time::sleep(APPLY_DELAY).await;
                }
                () = link_added_or_removed => {}
                () = self.leases.changed.notified() => {}
                () = tokio::time::sleep(if settled { RECHECK } else { RETRY }) => {}
            }
        }
    }

    fn desired(&self, links: &[Link]) -> Desired {
        let config = self.rt.running_config().map(|c| c.machine.network);
        desired::desired(&Inputs {
            config: config.as_ref(),
            kernel_ip: self.kernel_ip.as_ref(),
            cmdline_hostname: self.cmdline_hostname.as_deref(),
            links,
        })
    }

    /// One pass; `false` when something could not be done yet.
    async fn reconcile(&self, owned: &mut Owned) -> bool {
        let h = &self.net.handle;
        let mut problems = Vec::new();
        // The kernel answers a link dump with EBUSY while links change
        // (at boot, as eth0 comes up): try again at once, briefly.
        let mut listed = link::links(h).await;
        for _ in 0..20 {
            if listed.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            listed = link::links(h).await;
        }
        let mut links = match listed {
            Ok(l) => l,
            Err(e) => {
                tracing::info!(error = %e, "cannot list links; trying again shortly");
                return false;
            }
        };
        let want = self.desired(&links);
        problems.extend(want.problems.iter().cloned());

        // Virtual links first: addresses may go on them.
        let exists = |links: &[Link], n: &str| links.iter().any(|l| l.name == n);
        for b in &want.bonds {
            if !exists(&links, &b.name) {
                match link::create_bond(h, &b.name, kernel_bond_mode(b.mode), b.miimon).await {
                    Ok(()) => {
                        owned.virtual_links.insert(b.name.clone());
                    }
                    Err(e) => problems.push(format!("bond {}: {e}", b.name)),
                }
            }
        }
        for v in &want.vlans {
            if exists(&links, &v.name) {
                continue;
            }
            let Some(parent) = links.iter().find(|l| l.name == v.parent) else {
                problems.push(format!("VLAN {}: no link {}", v.name, v.parent));
                continue;
            };
            match link::create_vlan(h, &v.name, parent.index, v.id).await {
                Ok(()) => {
                    owned.virtual_links.insert(v.name.clone());
                }
                Err(e) => problems.push(format!("VLAN {}: {e}", v.name)),
            }
        }
        links = link::links(h).await.unwrap_or(links);
        let index_of = |n: &str| links.iter().find(|l| l.name == n).map(|l| l.index);
        for b in &want.bonds {
            let Some(bond) = index_of(&b.name) else {
                continue;
            };
            for m in &b.members {
                match links.iter().find(|l| l.name == *m) {
                    Some(l) if l.controller != Some(bond) => {
                        if let Err(e) = link::set_controller(h, l.index, bond).await {
                            problems.push(format!("bond {}: port {m}: {e}", b.name));
                        }
                    }
                    Some(_) => {}
                    None => problems.push(format!("bond {}: no link {m}", b.name)),
                }
            }
        }
        // Virtual links this configurator made that are no longer wanted.
        let stale: Vec<String> = owned
            .virtual_links
            .iter()
            .filter(|n| {
                !want.bonds.iter().any(|b| &b.name == *n)
                    && !want.vlans.iter().any(|v| &v.name == *n)
            })
            .cloned()
            .collect();
        for n in stale {
            if let Some(i) = index_of(&n) {
                if let Err(e) = link::delete_link(h, i).await {
                    problems.push(format!("removing {n}: {e}"));
                    continue;
                }
            }
            owned.virtual_links.remove(&n);
        }

        // Every link up (unlisted ones too, so they can be used and seen).
        if let Some(lo) = index_of("lo") {
            let _ = link::set_up(h, lo).await;
        }
        for (name, plan) in &want.links {
            let Some(l) = links.iter().find(|l| l.name == *name) else {
                if !want.bonds.iter().any(|b| b.members.contains(name)) {
                    problems.push(format!("no link named {name}"));
                }
                continue;
            };
            if let Some(mtu) = plan.mtu.filter(|m| *m != l.mtu) {
                if let Err(e) = link::set_mtu(h, l.index, mtu).await {
                    problems.push(format!("{name}: MTU {mtu}: {e}"));
                }
            }
            if !l.is_up {
                if let Err(e) = link::set_up(h, l.index).await {
                    problems.push(format!("{name}: {e}"));
                }
            }
        }

        self.converge_addresses(&want, &links, owned, &mut problems)
            .await;
        self.converge_dhcp(&want, &links, owned).await;
        self.write_names(&want, &links).await;

        let settled = problems.is_empty();
        for p in problems {
            if owned.told.insert(p.clone()) {
                runtime::console!("network: {p}");
            }
        }
        settled
    }

    async fn converge_addresses(
        &self,
        want: &Desired,
        links: &[Link],
        owned: &mut Owned,
        problems: &mut Vec<String>,
    ) {
        let h = &self.net.handle;
        let index_of = |n: &str| links.iter().find(|l| l.name == n).map(|l| l.index);
        let wanted_addrs: BTreeSet<(String, IpAddr, u8)> = want
            .links
            .iter()
            .flat_map(|(n, p)| p.addresses.iter().map(move |(a, l)| (n.clone(), *a, *l)))
            .collect();
        let wanted_routes: BTreeSet<(String, RoutePlan)> = want
            .links
            .iter()
            .flat_map(|(n, p)| p.routes.iter().map(move |r| (n.clone(), r.clone())))
            .collect();
        let route = |index: u32, r: &RoutePlan| Route {
            destination: r.destination,
            prefix_len: r.prefix_len,
            gateway: r.gateway,
            index,
            metric: r.metric,
        };
        // Routes go before their addresses, and come after them.
        for (n, r) in owned
            .routes
            .difference(&wanted_routes)
            .cloned()
            .collect::<Vec<_>>()
        {
            if let Some(i) = index_of(&n) {
                if let Err(e) = link::del_route(h, &route(i, &r)).await {
                    problems.push(format!(
                        "{n}: removing the route to {}/{}: {e}",
                        r.destination, r.prefix_len
                    ));
                    continue;
                }
            }
            owned.routes.remove(&(n, r));
        }
        for (n, a, l) in owned
            .addresses
            .difference(&wanted_addrs)
            .cloned()
            .collect::<Vec<_>>()
        {
            if let Some(i) = index_of(&n) {
                let addr = link::Address {
                    index: i,
                    ip: a,
                    prefix_len: l,
                    global: true,
                };
                if let Err(e) = link::del_address(h, &addr).await {
                    problems.push(format!("{n}: removing {a}/{l}: {e}"));
                    continue;
                }
            }
            owned.addresses.remove(&(n, a, l));
        }
        let present = link::addresses(h).await.unwrap_or_default();
        for (n, a, l) in &wanted_addrs {
            let Some(i) = index_of(n) else { continue };
            if !present
                .iter()
                .any(|p| p.index == i && p.ip == *a && p.prefix_len == *l)
            {
                if let Err(e) = link::add_ip(h, i, *a, *l).await {
                    problems.push(format!("{n}: adding {a}/{l}: {e}"));
                    continue;
                }
                runtime::console!("network: {n} has {a}/{l} (static)");
            }
            owned.addresses.insert((n.clone(), *a, *l));
        }
        for (n, r) in &wanted_routes {
            let Some(i) = index_of(n) else { continue };
            if let Err(e) = link::add_route(h, &route(i, r)).await {
                problems.push(format!(
                    "{n}: route to {}/{}: {e}",
                    r.destination, r.prefix_len
                ));
                continue;
            }
            owned.routes.insert((n.clone(), r.clone()));
        }
    }

    async fn converge_dhcp(&self, want: &Desired, links: &[Link], owned: &mut Owned) {
        let stale: Vec<String> = owned
            .dhcp
            .keys()
            .filter(|n| {
                !want.links.get(*n).is_some_and(|p| p.dhcp) || !links.iter().any(|l| &l.name == *n)
            })
            .cloned()
            .collect();
        for n in stale {
            if let Some(c) = owned.dhcp.remove(&n) {
                runtime::console!("network: stopping DHCP on {n}");
                c.stop.send_replace(true);
                if tokio::time::timeout(Duration::from_secs(5), c.task)
                    .await
                    .is_err()
                {
                    tracing::warn!(link = %n, "the DHCP client did not stop in time");
                }
            }
        }
        for (name, plan) in want.links.iter().filter(|(_, p)| p.dhcp) {
            if owned.dhcp.contains_key(name) {
                continue;
            }
            let Some(l) = links.iter().find(|l| l.name == *name) else {
                continue;
            };
            let Some(mac) = l.mac else {
                runtime::console!("network: {name} has no MAC address; no DHCP");
                continue;
            };
            runtime::console!("network: asking for a DHCP lease on {name}");
            let node_hostname = Some(self.rt.hostname());
            let client = dhcp::Client {
                ifname: name.clone(),
                mac,
                hostname: node_hostname.filter(|h| !h.is_empty()),
            };
            let sink = LinkSink {
                handle: self.net.handle.clone(),
                link: name.clone(),
                index: l.index,
                config_mtu: plan.mtu.is_some(),
                leases: self.leases.clone(),
            };
            let (stop, stop_rx) = watch::channel(false);
            let task = tokio::spawn(async move {
                // dhcproto draws transaction ids from the blocking system RNG.
                crate::entropy::ready().await;
                lease::run(&client, &sink, stop_rx).await;
            });
            owned.dhcp.insert(name.clone(), DhcpClient { stop, task });
        }
    }

    /// resolv.conf, the hostname and hosts, from the desired state and
    /// the leases.
    async fn write_names(&self, want: &Desired, links: &[Link]) {
        let node = &self.rt;
        let leases = self.leases.snapshot();
        let nameservers: Vec<IpAddr> = if want.nameservers.is_empty() {
            leases
                .values()
                .flat_map(|l| l.dns.iter().map(|d| IpAddr::V4(*d)))
                .collect()
        } else {
            want.nameservers.clone()
        };
        let domain = leases.values().find_map(|l| l.domain.clone());
        let etc = Path::new(resolv::SYSTEM_ETC);
        let source = if want.nameservers.is_empty() {
            "the DHCP lease"
        } else {
            "the machine config or ip="
        };
        let text = resolv::resolv_conf(&nameservers, domain.as_deref(), source);
        write_if_changed(etc, "resolv.conf", &text);

        let hostname = want
            .hostname
            .clone()
            .or_else(|| leases.values().find_map(|l| l.hostname.clone()))
            .unwrap_or_else(|| {
                crate::hostname::default_hostname(link::first_ethernet(links).and_then(|l| l.mac))
            });
        if hostname != node.hostname() {
            if let Err(e) = nix::unistd::sethostname(&hostname) {
                runtime::console!("network: cannot set the hostname {hostname}: {e}");
            } else {
                runtime::console!("network: hostname {hostname}");
            }
            node.set_hostname(&hostname);
        }
        write_if_changed(etc, "hostname", &format!("{hostname}\n"));
        let address = want
            .links
            .values()
            .flat_map(|p| p.addresses.iter().map(|(a, _)| *a))
            .chain(leases.values().map(|l| IpAddr::V4(l.address)))
            .next();
        write_if_changed(etc, "hosts", &resolv::hosts(&hostname, address));
    }
}

fn write_if_changed(dir: &Path, name: &str, text: &str) {
    if std::fs::read_to_string(dir.join(name)).ok().as_deref() == Some(text) {
        return;
    }
    if let Err(e) = resolv::write_atomic(dir, name, text) {
        tracing::warn!(error = %e, file = name, "cannot write");
    }
}
