//! Networking for boot-to-API: loopback and the first Ethernet link up, an
//! IPv4 address by DHCP (kept renewed), the default route, resolv.conf and
//! hosts. A later issue grows this into the network controllers (static
//! addresses, VLANs, bonds); the pieces here (link, dhcp, resolv) are meant
//! to be reused by them.

pub mod dhcp;
pub mod kernel_ip;
pub mod link;
pub mod resolv;

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use rtnetlink::Handle;

use link::Link;

#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("cannot open a netlink socket: {0}")]
    Connect(#[source] std::io::Error),
    #[error("netlink: cannot {what}: {source}")]
    Netlink {
        what: &'static str,
        #[source]
        source: rtnetlink::Error,
    },
    #[error("DHCP: cannot {what}: {message}")]
    Dhcp { what: &'static str, message: String },
    #[error("{0}")]
    Invalid(String),
}

/// A netlink connection for reading and changing the network.
#[derive(Clone)]
pub struct Network {
    handle: Handle,
}

/// How long the first DHCP attempt may hold up boot before machined goes
/// on (and keeps trying in the background).
const FIRST_LEASE_TIMEOUT: Duration = Duration::from_secs(30);

impl Network {
    /// Opens the netlink connection (its task runs on the current runtime).
    pub fn connect() -> Result<Self, NetworkError> {
        let (conn, handle, _) = rtnetlink::new_connection().map_err(NetworkError::Connect)?;
        tokio::spawn(conn);
        Ok(Self { handle })
    }

    /// Brings up `lo` and returns the link to configure, also up.
    pub async fn bring_up_links(&self) -> Result<Option<Link>, NetworkError> {
        let links = link::links(&self.handle).await?;
        if let Some(lo) = links.iter().find(|l| l.name == "lo") {
            link::set_up(&self.handle, lo.index).await?;
        }
        let Some(primary) = link::first_ethernet(&links).cloned() else {
            return Ok(None);
        };
        link::set_up(&self.handle, primary.index).await?;
        Ok(Some(primary))
    }

    /// Global addresses on every link but loopback, IPv4 first.
    pub async fn node_addresses(&self) -> Vec<IpAddr> {
        let mut addrs: Vec<IpAddr> = match link::addresses(&self.handle).await {
            Ok(a) => a
                .into_iter()
                .filter(|a| a.global && !a.ip.is_loopback())
                .map(|a| a.ip)
                .collect(),
            Err(e) => {
                tracing::warn!(error = %e, "cannot list addresses");
                Vec::new()
            }
        };
        addrs.sort_by_key(|a| (a.is_ipv6(), *a));
        addrs.dedup();
        addrs
    }

    /// Configures `link` by DHCP unless it (or the kernel's `ip=`) already
    /// has. Waits for the first lease up to a bound; renewal and retries
    /// continue in a background task.
    pub async fn configure(&self, link: &Link, kernel_autoconfig: bool, hostname: &str) {
        let has_v4 = link::addresses(&self.handle)
            .await
            .map(|a| {
                a.iter()
                    .any(|a| a.index == link.index && a.ip.is_ipv4() && a.global)
            })
            .unwrap_or(false);
        if kernel_autoconfig || has_v4 {
            crate::console!(
                "network: {} was configured by the kernel (ip=); no DHCP",
                link.name
            );
            return;
        }
        let Some(mac) = link.mac else {
            crate::console!("network: {} has no MAC address; no DHCP", link.name);
            return;
        };
        crate::console!("network: asking for a DHCP lease on {}", link.name);
        let client = dhcp::Client {
            ifname: link.name.clone(),
            mac,
            hostname: Some(hostname.to_string()),
        };
        let this = self.clone();
        let index = link.index;
        let hostname = hostname.to_string();
        let (first_tx, first_rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move { this.dhcp_loop(client, index, hostname, first_tx).await });
        if tokio::time::timeout(FIRST_LEASE_TIMEOUT, first_rx)
            .await
            .is_err()
        {
            crate::console!(
                "network: no DHCP lease on {} yet; continuing, still trying in the background",
                link.name
            );
        }
    }

    async fn apply_lease(
        &self,
        index: u32,
        lease: &dhcp::Lease,
        hostname: &str,
    ) -> Result<(), NetworkError> {
        link::add_address(&self.handle, index, lease.address, lease.prefix_len).await?;
        if let Some(gw) = lease.router {
            link::set_default_route(&self.handle, index, gw).await?;
        }
        let etc = Path::new(resolv::SYSTEM_ETC);
        if let Err(e) = resolv::write_atomic(
            etc,
            "resolv.conf",
            &resolv::resolv_conf(&lease.dns, lease.domain.as_deref()),
        ) {
            tracing::warn!(error = %e, "cannot write resolv.conf");
        }
        if let Err(e) = resolv::write_atomic(
            etc,
            "hosts",
            &resolv::hosts(hostname, Some(IpAddr::V4(lease.address))),
        ) {
            tracing::warn!(error = %e, "cannot write hosts");
        }
        Ok(())
    }

    /// Acquire, apply, renew at T1, rebind at T2, start over at expiry.
    async fn dhcp_loop(
        self,
        client: dhcp::Client,
        index: u32,
        hostname: String,
        first: tokio::sync::oneshot::Sender<()>,
    ) {
        let mut first = Some(first);
        // dhcproto draws transaction ids from the blocking system RNG.
        crate::entropy::ready().await;
        let mut retry = crate::supervisor::backoff::Backoff::new(
            Duration::from_secs(5),
            Duration::from_secs(60),
        );
        loop {
            let lease = match client.acquire(FIRST_LEASE_TIMEOUT).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(error = %e, "DHCP");
                    tokio::time::sleep(retry.next_delay()).await;
                    continue;
                }
            };
            retry.reset();
            let mut lease = lease;
            let mut acquired = tokio::time::Instant::now();
            if let Err(e) = self.apply_lease(index, &lease, &hostname).await {
                crate::console!("network: cannot apply the DHCP lease: {e}");
                tokio::time::sleep(retry.next_delay()).await;
                continue;
            }
            crate::console!(
                "network: {} has {}/{} from DHCP server {} (gateway {}, lease {}s)",
                client.ifname,
                lease.address,
                lease.prefix_len,
                lease.server,
                lease.router.map_or("none".to_string(), |r| r.to_string()),
                lease.lease_time.as_secs()
            );
            if let Some(tx) = first.take() {
                let _ = tx.send(());
            }
            // Keep the lease alive until it cannot be.
            loop {
                let now = tokio::time::Instant::now();
                let t1 = acquired + lease.renew_after;
                let t2 = acquired + lease.rebind_after;
                let expiry = acquired + lease.lease_time;
                if now >= expiry {
                    crate::console!(
                        "network: DHCP lease for {} expired; starting over",
                        lease.address
                    );
                    let addr = link::Address {
                        index,
                        ip: IpAddr::V4(lease.address),
                        prefix_len: lease.prefix_len,
                        global: true,
                    };
                    let _ = link::del_address(&self.handle, &addr).await;
                    break;
                }
                let next = if now < t1 {
                    t1
                } else {
                    now + retry_interval(now, if now < t2 { t2 } else { expiry })
                };
                tokio::time::sleep_until(next).await;
                let rebinding = tokio::time::Instant::now() >= t2;
                match client.renew(&lease, rebinding).await {
                    Ok(Some(new)) => {
                        tracing::info!(address = %new.address, "DHCP lease renewed");
                        if new.address != lease.address || new.prefix_len != lease.prefix_len {
                            let _ = self.apply_lease(index, &new, &hostname).await;
                        }
                        lease = new;
                        acquired = tokio::time::Instant::now();
                    }
                    Ok(None) => tracing::info!("no answer to DHCP renewal; retrying"),
                    Err(e) => {
                        tracing::warn!(error = %e, "DHCP renewal refused; starting over");
                        break;
                    }
                }
            }
        }
    }
}

/// RFC 2131 4.4.5: retry after half the time left until `until`, but at
/// least a minute apart (or sooner if less than that is left).
fn retry_interval(now: tokio::time::Instant, until: tokio::time::Instant) -> Duration {
    let left = until.saturating_duration_since(now);
    (left / 2)
        .max(Duration::from_secs(60))
        .min(left.max(Duration::from_secs(1)))
}

#[cfg(test)]
mod netns_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_interval_halves_with_a_floor() {
        let now = tokio::time::Instant::now();
        assert_eq!(
            retry_interval(now, now + Duration::from_secs(1000)),
            Duration::from_secs(500)
        );
        assert_eq!(
            retry_interval(now, now + Duration::from_secs(100)),
            Duration::from_secs(60)
        );
        assert_eq!(
            retry_interval(now, now + Duration::from_secs(30)),
            Duration::from_secs(30)
        );
        assert_eq!(retry_interval(now, now), Duration::from_secs(1));
    }
}
