//! What a DHCP lease does to a link: its address, MTU (option 26), default
//! route and classless static routes (option 121); the resolvers and
//! hostname it carries are picked up by the configurator from [`Leases`].

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use rtnetlink::Handle;
use tokio::sync::{watch, Notify};

use super::desired::DEFAULT_METRIC;
use super::dhcp::Lease;
use super::lease::Sink;
use super::link::{self, Route};
use super::NetworkError;

/// The leases held now, by link name, and a wake-up for whoever turns
/// them into resolv.conf and the hostname.
#[derive(Default)]
pub struct Leases {
    pub by_link: Mutex<BTreeMap<String, Lease>>,
    pub changed: Notify,
    /// Turns true at the first lease bound (boot waits for it, bounded).
    pub first: watch::Sender<bool>,
}

impl Leases {
    pub fn snapshot(&self) -> BTreeMap<String, Lease> {
        self.by_link
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

pub struct LinkSink {
    pub handle: Handle,
    pub link: String,
    pub index: u32,
    /// The config sets this link's MTU, so the lease's is ignored.
    pub config_mtu: bool,
    pub leases: Arc<Leases>,
}

fn routes_of(lease: &Lease, index: u32) -> Vec<Route> {
    let v4 = |a: Ipv4Addr| IpAddr::V4(a);
    // RFC 3442: with classless routes present, the router option is ignored.
    if !lease.routes.is_empty() {
        return lease
            .routes
            .iter()
            .map(|(dst, len, gw)| Route {
                destination: v4(*dst),
                prefix_len: *len,
                gateway: (!gw.is_unspecified()).then_some(v4(*gw)),
                index,
                metric: DEFAULT_METRIC,
            })
            .collect();
    }
    lease
        .router
        .map(|gw| Route {
            destination: v4(Ipv4Addr::UNSPECIFIED),
            prefix_len: 0,
            gateway: Some(v4(gw)),
            index,
            metric: DEFAULT_METRIC,
        })
        .into_iter()
        .collect()
}

impl LinkSink {
    async fn drop_lease(&self, lease: &Lease) {
        for r in routes_of(lease, self.index) {
            let _ = link::del_route(&self.handle, &r).await;
        }
        let addr = link::Address {
            index: self.index,
            ip: IpAddr::V4(lease.address),
            prefix_len: lease.prefix_len,
            global: true,
        };
        if let Err(e) = link::del_address(&self.handle, &addr).await {
            tracing::warn!(error = %e, link = %self.link, "cannot remove the DHCP address");
        }
    }
}

impl Sink for LinkSink {
    fn bound<'a>(
        &'a self,
        old: Option<&'a Lease>,
        new: &'a Lease,
    ) -> BoxFuture<'a, Result<(), NetworkError>> {
        Box::pin(async move {
            if let Some(old) =
                old.filter(|o| (o.address, o.prefix_len) != (new.address, new.prefix_len))
            {
                self.drop_lease(old).await;
            }
            if let (Some(mtu), false) = (new.mtu, self.config_mtu) {
                link::set_mtu(&self.handle, self.index, u32::from(mtu)).await?;
            }
            link::add_address(&self.handle, self.index, new.address, new.prefix_len).await?;
            for r in routes_of(new, self.index) {
                link::add_route(&self.handle, &r).await?;
            }
            if old.is_none() {
                runtime::console!(
                    "network: {} has {}/{} from DHCP server {} (gateway {}, lease {}s)",
                    self.link,
                    new.address,
                    new.prefix_len,
                    new.server,
                    new.router.map_or("none".to_string(), |r| r.to_string()),
                    new.lease_time.as_secs()
                );
            }
            self.leases
                .by_link
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(self.link.clone(), new.clone());
            self.leases.changed.notify_one();
            self.leases.first.send_replace(true);
            Ok(())
        })
    }

    fn lost<'a>(&'a self, lease: &'a Lease) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            self.drop_lease(lease).await;
            self.leases
                .by_link
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&self.link);
            self.leases.changed.notify_one();
        })
    }
}
