//! Networking: the network [`configurator`] makes the kernel's links,
//! addresses and routes match what the machine config and the kernel's
//! `ip=` ask for ([`desired`]), runs a DHCP client ([`dhcp`], [`lease`]) on
//! the links that want one, and writes resolv.conf, hosts and the hostname.
//! Boot starts it in the background; apid does not wait for it.

pub mod configurator;
pub mod desired;
pub mod dhcp;
pub mod dhcp_sink;
pub mod kernel_ip;
pub mod lease;
pub mod link;
pub mod netstat;
pub mod resolv;

use std::net::IpAddr;

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
}

#[cfg(test)]
mod netns_tests;
