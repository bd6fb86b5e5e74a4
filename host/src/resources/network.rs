//! The network controller: links, addresses and routes as the kernel has
//! them (rtnetlink dumps, redone whenever the kernel announces a change and
//! every [`REFRESH`] as a backstop), and the resolvers from resolv.conf.
//!
//! It only observes. The DHCP client in `network` changes the network;
//! these resources show the result, whoever caused it.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::{StreamExt, TryStreamExt};
use rtnetlink::packet_route::address::{
    AddressAttribute, AddressHeaderFlags, AddressMessage, AddressScope,
};
use rtnetlink::packet_route::link::{InfoKind, LinkAttribute, LinkFlags, LinkInfo, LinkMessage};
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute, RouteMessage};
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::{Handle, MulticastGroup, RouteMessageBuilder};

use runtime::resources::controller::{Controller, ControllerError, Input};
use runtime::resources::specs::{AddressSpec, LinkSpec, ResolversSpec, RouteSpec};
use runtime::resources::{kind, Kind, Writer};

/// How often the state is read again without an announcement.
const REFRESH: Duration = Duration::from_secs(30);
/// Announcements come in bursts (an address, its prefix route, a default
/// route, then resolv.conf is rewritten): wait for the burst to settle.
const SETTLE: Duration = Duration::from_millis(300);

#[derive(Clone)]
pub struct NetworkController {
    /// resolv.conf, read for the resolvers.
    pub resolv_conf: PathBuf,
}

impl Default for NetworkController {
    fn default() -> Self {
        Self {
            resolv_conf: Path::new(crate::network::resolv::SYSTEM_ETC).join("resolv.conf"),
        }
    }
}

impl Controller for NetworkController {
    fn name(&self) -> &'static str {
        "network"
    }

    fn inputs(&self) -> Vec<Input> {
        vec![
            Input::External("rtnetlink"),
            Input::External("/etc/resolv.conf"),
        ]
    }

    fn outputs(&self) -> Vec<&'static Kind> {
        vec![kind::LINKS, kind::ADDRESSES, kind::ROUTES, kind::RESOLVERS]
    }

    fn run(self, writer: Writer) -> BoxFuture<'static, Result<(), ControllerError>> {
        Box::pin(async move {
            let groups = [
                MulticastGroup::Link,
                MulticastGroup::Ipv4Ifaddr,
                MulticastGroup::Ipv6Ifaddr,
                MulticastGroup::Ipv4Route,
                MulticastGroup::Ipv6Route,
            ];
            let (conn, handle, mut announcements) =
                match rtnetlink::new_multicast_connection(&groups) {
                    Ok(c) => c,
                    Err(e) => return Err(format!("cannot open rtnetlink: {e}").into()),
                };
            tokio::spawn(conn);
            loop {
                if let Err(e) = refresh(&handle, &writer, &self.resolv_conf).await {
                    tracing::warn!(controller = "network", error = %e, "cannot read the network state");
                }
                tokio::select! {
                    first = announcements.next() => {
                        if first.is_none() {
                            return Err("rtnetlink announcements ended".into());
                        }
                        // Swallow the rest of the burst.
                        let settle = tokio::time::sleep(SETTLE);
                        tokio::pin!(settle);
                        loop {
                            tokio::select! {
                                () = &mut settle => break,
                                more = announcements.next() => if more.is_none() { break },
                            }
                        }
                    }
                    () = tokio::time::sleep(REFRESH) => {}
                }
            }
        })
    }
}

/// Reads links, addresses and routes and reconciles the resources.
pub async fn refresh(
    handle: &Handle,
    writer: &Writer,
    resolv_conf: &Path,
) -> Result<(), rtnetlink::Error> {
    let links: Vec<LinkMessage> = handle.link().get().execute().try_collect().await?;
    let names: BTreeMap<u32, String> = links
        .iter()
        .map(|l| (l.header.index, link_name(l)))
        .collect();
    let addresses: Vec<AddressMessage> = handle.address().get().execute().try_collect().await?;
    let mut routes: Vec<RouteMessage> = handle
        .route()
        .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
        .execute()
        .try_collect()
        .await?;
    let v6: Vec<RouteMessage> = handle
        .route()
        .get(RouteMessageBuilder::<Ipv6Addr>::new().build())
        .execute()
        .try_collect()
        .await?;
    routes.extend(v6);

    let log = |r: Result<bool, runtime::resources::StoreError>| {
        if let Err(e) = r {
            tracing::warn!(controller = "network", error = %e, "cannot write");
        }
    };
    log(writer.reconcile(links.iter().map(|l| (link_name(l), link_spec(l, &names)))));
    log(writer.reconcile(addresses.iter().filter_map(|a| address_spec(a, &names))));
    log(writer.reconcile(routes.iter().filter_map(|r| route_spec(r, &names))));
    let resolvers = std::fs::read_to_string(resolv_conf)
        .map(|t| ResolversSpec::parse(&t))
        .unwrap_or_default();
    log(writer.reconcile([(ResolversSpec::ID.to_string(), resolvers)]));
    Ok(())
}

fn link_name(l: &LinkMessage) -> String {
    l.attributes
        .iter()
        .find_map(|a| match a {
            LinkAttribute::IfName(n) => Some(n.clone()),
            _ => None,
        })
        .unwrap_or_else(|| format!("if{}", l.header.index))
}

fn lower(s: impl std::fmt::Display) -> String {
    s.to_string().to_ascii_lowercase()
}

fn lower_debug(s: impl std::fmt::Debug) -> String {
    format!("{s:?}").to_ascii_lowercase()
}

pub fn link_spec(l: &LinkMessage, names: &BTreeMap<u32, String>) -> LinkSpec {
    let name = link_name(l);
    let mut spec = LinkSpec {
        index: l.header.index,
        link_type: lower(l.header.link_layer_type),
        kind: String::new(),
        hardware_addr: String::new(),
        mtu: 0,
        up: l.header.flags.contains(LinkFlags::Up),
        operational_state: "unknown".into(),
        carrier: l.header.flags.contains(LinkFlags::LowerUp),
        physical: Path::new("/sys/class/net")
            .join(&name)
            .join("device")
            .exists(),
        master: String::new(),
    };
    for a in &l.attributes {
        match a {
            LinkAttribute::Address(mac) if !mac.is_empty() => {
                spec.hardware_addr = mac
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<Vec<_>>()
                    .join(":");
            }
            LinkAttribute::Mtu(m) => spec.mtu = *m,
            LinkAttribute::OperState(s) => spec.operational_state = lower(s),
            LinkAttribute::Controller(i) => {
                spec.master = names.get(i).cloned().unwrap_or_else(|| i.to_string())
            }
            LinkAttribute::LinkInfo(infos) => {
                for i in infos {
                    if let LinkInfo::Kind(k) = i {
                        spec.kind = match k {
                            InfoKind::Other(s) => s.clone(),
                            k => k.to_string(),
                        };
                    }
                }
            }
            _ => {}
        }
    }
    spec
}

fn family(f: AddressFamily) -> String {
    match f {
        AddressFamily::Inet => "inet4".into(),
        AddressFamily::Inet6 => "inet6".into(),
        other => lower_debug(other),
    }
}

fn scope(s: AddressScope) -> String {
    match s {
        AddressScope::Universe => "global".into(),
        s => lower(s),
    }
}

pub fn address_spec(
    a: &AddressMessage,
    names: &BTreeMap<u32, String>,
) -> Option<(String, AddressSpec)> {
    // IFA_LOCAL is the interface's own address on point-to-point links;
    // IFA_ADDRESS otherwise.
    let find = |local: bool| {
        a.attributes.iter().find_map(|at| match at {
            AddressAttribute::Local(ip) if local => Some(*ip),
            AddressAttribute::Address(ip) if !local => Some(*ip),
            _ => None,
        })
    };
    let ip: IpAddr = find(true).or_else(|| find(false))?;
    let link = names
        .get(&a.header.index)
        .cloned()
        .unwrap_or_else(|| a.header.index.to_string());
    let cidr = format!("{ip}/{}", a.header.prefix_len);
    let permanent = a.header.flags.contains(AddressHeaderFlags::Permanent)
        || a.attributes.iter().any(|at| {
            matches!(at, AddressAttribute::Flags(f) if f.contains(rtnetlink::packet_route::address::AddressFlags::Permanent))
        });
    Some((
        format!("{link}/{cidr}"),
        AddressSpec {
            address: cidr,
            link,
            link_index: a.header.index,
            family: family(a.header.family),
            scope: scope(a.header.scope),
            dynamic: !permanent,
        },
    ))
}

fn route_addr(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(ip) => Some(IpAddr::V4(*ip)),
        RouteAddress::Inet6(ip) => Some(IpAddr::V6(*ip)),
        _ => None,
    }
}

fn table_name(t: u32) -> String {
    match t {
        254 => "main".into(),
        253 => "default".into(),
        255 => "local".into(),
        n => n.to_string(),
    }
}

/// The local table (addresses of this host, broadcast) is left out: it
/// restates the addresses.
pub fn route_spec(r: &RouteMessage, names: &BTreeMap<u32, String>) -> Option<(String, RouteSpec)> {
    let mut table = u32::from(r.header.table);
    let (mut dst, mut gateway, mut source, mut oif, mut metric) = (None, None, None, None, 0);
    for a in &r.attributes {
        match a {
            RouteAttribute::Table(t) => table = *t,
            RouteAttribute::Destination(d) => dst = route_addr(d),
            RouteAttribute::Gateway(g) => gateway = route_addr(g),
            RouteAttribute::PrefSource(s) => source = route_addr(s),
            RouteAttribute::Oif(i) => oif = Some(*i),
            RouteAttribute::Priority(p) => metric = *p,
            _ => {}
        }
    }
    if table == 255 {
        return None;
    }
    let plen = r.header.destination_prefix_length;
    let destination = match dst {
        Some(ip) => format!("{ip}/{plen}"),
        None if plen == 0 => "default".into(),
        None => format!("?/{plen}"),
    };
    let link = oif
        .map(|i| names.get(&i).cloned().unwrap_or_else(|| i.to_string()))
        .unwrap_or_default();
    let gateway = gateway.map(|g| g.to_string()).unwrap_or_default();
    let spec = RouteSpec {
        family: family(r.header.address_family),
        table: table_name(table),
        destination,
        gateway,
        link,
        source: source.map(|s| s.to_string()).unwrap_or_default(),
        metric,
        scope: lower(r.header.scope),
        protocol: lower(r.header.protocol),
        route_type: lower_debug(r.header.kind),
    };
    let id = format!(
        "{}/{}/{}/{}/{}/{}",
        spec.family, spec.table, spec.destination, spec.gateway, spec.link, spec.metric
    );
    Some((id, spec))
}

#[cfg(test)]
mod tests {
    use super::*;
    use runtime::resources::specs::AddressSpec;
    use runtime::resources::Store;

    /// Reads the host's real network (nothing is changed).
    #[tokio::test]
    async fn reads_the_hosts_links_addresses_and_routes() {
        let (conn, handle, _) = rtnetlink::new_connection().unwrap();
        tokio::spawn(conn);
        let store = Store::new();
        let c = NetworkController::default();
        let writer = store.writer("network", &c.outputs()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let resolv = dir.path().join("resolv.conf");
        std::fs::write(&resolv, "nameserver 192.0.2.53\n").unwrap();
        refresh(&handle, &writer, &resolv).await.unwrap();

        let lo = store.spec::<LinkSpec>("lo").expect("lo link");
        assert_eq!(lo.link_type, "loopback");
        assert!(lo.up);
        assert!(!lo.physical);
        let addrs = store.specs::<AddressSpec>();
        let (id, a) = addrs
            .iter()
            .find(|(_, a)| a.address == "127.0.0.1/8")
            .expect("127.0.0.1/8");
        assert_eq!(id, "lo/127.0.0.1/8");
        assert_eq!(
            (a.family.as_str(), a.scope.as_str(), a.dynamic),
            ("inet4", "host", false)
        );
        // No local-table routes; every route names its table.
        let routes = store.specs::<RouteSpec>();
        assert!(routes.iter().all(|(_, r)| r.table != "local"), "{routes:?}");
        let res = store.spec::<ResolversSpec>("resolvers").unwrap();
        assert_eq!(res.nameservers, vec!["192.0.2.53"]);
        // A second refresh with nothing changed bumps no version.
        let before = store.get(kind::LINKS, "lo").unwrap().metadata.version;
        refresh(&handle, &writer, &resolv).await.unwrap();
        assert_eq!(
            store.get(kind::LINKS, "lo").unwrap().metadata.version,
            before
        );
    }
}
