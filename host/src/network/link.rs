//! Links, addresses and routes over rtnetlink.

use std::net::{IpAddr, Ipv4Addr};

use futures::TryStreamExt;
use rtnetlink::packet_route::address::{AddressAttribute, AddressScope};
use rtnetlink::packet_route::link::BondMode;
use rtnetlink::packet_route::link::{LinkAttribute, LinkFlags, LinkLayerType};
use rtnetlink::{Handle, LinkBond, LinkUnspec, LinkVlan, RouteMessageBuilder};

use super::NetworkError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    pub mac: Option<[u8; 6]>,
    pub is_ethernet: bool,
    pub is_up: bool,
    pub has_carrier: bool,
    /// Backed by hardware (a `device` in sysfs), unlike bond0, dummy0 and
    /// other virtual links the kernel may create at boot.
    pub is_physical: bool,
    pub mtu: u32,
    /// The bond (or bridge) this link is a port of.
    pub controller: Option<u32>,
}

/// An address on a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Address {
    pub index: u32,
    pub ip: IpAddr,
    pub prefix_len: u8,
    /// Global (universe) scope, as opposed to link- or host-local.
    pub global: bool,
}

fn nl(what: &'static str) -> impl Fn(rtnetlink::Error) -> NetworkError {
    move |source| NetworkError::Netlink { what, source }
}

pub async fn links(handle: &Handle) -> Result<Vec<Link>, NetworkError> {
    let msgs: Vec<_> = handle
        .link()
        .get()
        .execute()
        .try_collect()
        .await
        .map_err(nl("list links"))?;
    let mut out: Vec<Link> = msgs
        .into_iter()
        .map(|m| {
            let mut name = String::new();
            let mut mac = None;
            let mut mtu = 0;
            let mut controller = None;
            for a in &m.attributes {
                match a {
                    LinkAttribute::IfName(n) => name = n.clone(),
                    LinkAttribute::Mtu(v) => mtu = *v,
                    LinkAttribute::Controller(c) => controller = Some(*c),
                    LinkAttribute::Address(a) if a.len() == 6 => {
                        let mut b = [0u8; 6];
                        b.copy_from_slice(a);
                        mac = Some(b);
                    }
                    _ => {}
                }
            }
            Link {
                is_physical: std::path::Path::new("/sys/class/net")
                    .join(&name)
                    .join("device")
                    .exists(),
                index: m.header.index,
                name,
                mac,
                is_ethernet: m.header.link_layer_type == LinkLayerType::Ether,
                is_up: m.header.flags.contains(LinkFlags::Up),
                has_carrier: m.header.flags.contains(LinkFlags::LowerUp),
                mtu,
                controller,
            }
        })
        .collect();
    out.sort_by_key(|l| l.index);
    Ok(out)
}

pub async fn set_up(handle: &Handle, index: u32) -> Result<(), NetworkError> {
    handle
        .link()
        .set(LinkUnspec::new_with_index(index).up().build())
        .execute()
        .await
        .map_err(nl("set link up"))
}

pub async fn addresses(handle: &Handle) -> Result<Vec<Address>, NetworkError> {
    let msgs: Vec<_> = handle
        .address()
        .get()
        .execute()
        .try_collect()
        .await
        .map_err(nl("list addresses"))?;
    Ok(msgs
        .into_iter()
        .filter_map(|m| {
            // IFA_LOCAL is the interface's own address on point-to-point
            // links; IFA_ADDRESS otherwise.
            let ip = m
                .attributes
                .iter()
                .find_map(|a| match a {
                    AddressAttribute::Local(ip) => Some(*ip),
                    _ => None,
                })
                .or_else(|| {
                    m.attributes.iter().find_map(|a| match a {
                        AddressAttribute::Address(ip) => Some(*ip),
                        _ => None,
                    })
                })?;
            Some(Address {
                index: m.header.index,
                ip,
                prefix_len: m.header.prefix_len,
                global: m.header.scope == AddressScope::Universe,
            })
        })
        .collect())
}

pub async fn add_address(
    handle: &Handle,
    index: u32,
    ip: Ipv4Addr,
    prefix_len: u8,
) -> Result<(), NetworkError> {
    handle
        .address()
        .add(index, IpAddr::V4(ip), prefix_len)
        .replace()
        .execute()
        .await
        .map_err(nl("add address"))
}

pub async fn del_address(handle: &Handle, addr: &Address) -> Result<(), NetworkError> {
    let mut msgs: Vec<_> = handle
        .address()
        .get()
        .set_link_index_filter(addr.index)
        .set_address_filter(addr.ip)
        .execute()
        .try_collect()
        .await
        .map_err(nl("find address"))?;
    if let Some(m) = msgs.pop() {
        handle
            .address()
            .del(m)
            .execute()
            .await
            .map_err(nl("delete address"))?;
    }
    Ok(())
}

pub async fn set_default_route(
    handle: &Handle,
    index: u32,
    gateway: Ipv4Addr,
) -> Result<(), NetworkError> {
    let route = RouteMessageBuilder::<Ipv4Addr>::new()
        .output_interface(index)
        .gateway(gateway)
        .build();
    handle
        .route()
        .add(route)
        .replace()
        .execute()
        .await
        .map_err(nl("add default route"))
}

pub async fn set_down(handle: &Handle, index: u32) -> Result<(), NetworkError> {
    handle
        .link()
        .set(LinkUnspec::new_with_index(index).down().build())
        .execute()
        .await
        .map_err(nl("set link down"))
}

pub async fn set_mtu(handle: &Handle, index: u32, mtu: u32) -> Result<(), NetworkError> {
    handle
        .link()
        .set(LinkUnspec::new_with_index(index).mtu(mtu).build())
        .execute()
        .await
        .map_err(nl("set the MTU"))
}

/// Creates the 802.1Q link `name` on `parent`.
pub async fn create_vlan(
    handle: &Handle,
    name: &str,
    parent: u32,
    id: u16,
) -> Result<(), NetworkError> {
    handle
        .link()
        .add(LinkVlan::new(name, parent, id).build())
        .execute()
        .await
        .map_err(nl("create a VLAN link"))
}

/// Creates the bond `name`; `mode` as the kernel names it.
pub async fn create_bond(
    handle: &Handle,
    name: &str,
    mode: BondMode,
    miimon: u32,
) -> Result<(), NetworkError> {
    handle
        .link()
        .add(LinkBond::new(name).mode(mode).miimon(miimon).build())
        .execute()
        .await
        .map_err(nl("create a bond"))
}

/// Makes `index` a port of `controller` (it must be down first).
pub async fn set_controller(
    handle: &Handle,
    index: u32,
    controller: u32,
) -> Result<(), NetworkError> {
    set_down(handle, index).await?;
    handle
        .link()
        .set(
            LinkUnspec::new_with_index(index)
                .controller(controller)
                .build(),
        )
        .execute()
        .await
        .map_err(nl("add a port to a bond"))
}

pub async fn delete_link(handle: &Handle, index: u32) -> Result<(), NetworkError> {
    handle
        .link()
        .del(index)
        .execute()
        .await
        .map_err(nl("delete a link"))
}

/// Adds any address (v4 or v6), replacing an equal one.
pub async fn add_ip(
    handle: &Handle,
    index: u32,
    ip: IpAddr,
    prefix_len: u8,
) -> Result<(), NetworkError> {
    handle
        .address()
        .add(index, ip, prefix_len)
        .replace()
        .execute()
        .await
        .map_err(nl("add address"))
}

/// A route machined manages: destination prefix, optional gateway, link,
/// metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Route {
    pub destination: IpAddr,
    pub prefix_len: u8,
    pub gateway: Option<IpAddr>,
    pub index: u32,
    pub metric: u32,
}

fn route_message(r: &Route) -> Result<rtnetlink::packet_route::route::RouteMessage, NetworkError> {
    let bad = |e: String| {
        NetworkError::Invalid(format!("route to {}/{}: {e}", r.destination, r.prefix_len))
    };
    let mut b = RouteMessageBuilder::<IpAddr>::new()
        .destination_prefix(r.destination, r.prefix_len)
        .map_err(|e| bad(e.to_string()))?
        .output_interface(r.index)
        .priority(r.metric);
    if let Some(gw) = r.gateway {
        b = b.gateway(gw).map_err(|e| bad(e.to_string()))?;
    }
    Ok(b.build())
}

pub async fn add_route(handle: &Handle, r: &Route) -> Result<(), NetworkError> {
    handle
        .route()
        .add(route_message(r)?)
        .replace()
        .execute()
        .await
        .map_err(nl("add a route"))
}

pub async fn del_route(handle: &Handle, r: &Route) -> Result<(), NetworkError> {
    match handle.route().del(route_message(r)?).execute().await {
        Ok(()) => Ok(()),
        // Already gone (the kernel drops routes with their link or address).
        Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ESRCH => Ok(()),
        Err(e) => Err(NetworkError::Netlink {
            what: "delete a route",
            source: e,
        }),
    }
}

/// The link DHCP runs on when nothing says otherwise: the first physical
/// Ethernet link by index.
pub fn first_ethernet(links: &[Link]) -> Option<&Link> {
    links.iter().find(|l| l.is_ethernet && l.is_physical)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_first_ethernet() {
        let l = |index, name: &str, eth, physical| Link {
            index,
            name: name.into(),
            mac: None,
            is_ethernet: eth,
            is_up: false,
            has_carrier: false,
            is_physical: physical,
            mtu: 1500,
            controller: None,
        };
        let links = vec![
            l(1, "lo", false, false),
            l(2, "bond0", true, false),
            l(3, "sit0", false, false),
            l(4, "eth0", true, true),
            l(5, "eth1", true, true),
        ];
        assert_eq!(first_ethernet(&links).unwrap().name, "eth0");
        assert!(first_ethernet(&links[..3]).is_none());
    }

    /// Reads the host's real links over netlink (no changes made).
    #[tokio::test]
    async fn lists_real_links_and_loopback() {
        let (conn, handle, _) = rtnetlink::new_connection().unwrap();
        tokio::spawn(conn);
        let links = links(&handle).await.unwrap();
        assert!(links.iter().any(|l| l.name == "lo"), "{links:?}");
        let addrs = addresses(&handle).await.unwrap();
        assert!(addrs
            .iter()
            .any(|a| a.ip == IpAddr::V4(Ipv4Addr::LOCALHOST) && !a.global));
    }
}
