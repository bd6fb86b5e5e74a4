//! Connections to other nodes' apid, for requests whose `nodes` metadata
//! names another node: mutual TLS with apid's `os:impersonator`
//! certificate, the server verified against the OS CA under the name the
//! caller used. One channel per node is kept and reused until the settings
//! change. Connecting (TCP and TLS) is bounded in time, and HTTP/2 pings
//! find a peer that went away, so a dead node does not pin a channel.
//! Only members are ever dialled (`members`; the proxy checks first).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tonic::transport::{Channel, Endpoint};

use crate::settings::Compiled;

/// At most this many peers are remembered; beyond, the cache starts over.
const MAX_PEERS: usize = 64;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// HTTP/2 pings on peer and machined channels: one every interval, and a
/// connection whose ping is not answered within the timeout is closed.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PeerError {
    #[error("{0:?} is not a node address: give host or host:port")]
    BadNode(String),
    #[error("this node has no certificate to forward with (it is in maintenance mode or has no forwarding certificate)")]
    NoForwardingCertificate,
}

/// A node as the caller named it: host (name or IP) and port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NodeAddr {
    pub host: String,
    pub port: u16,
}

impl NodeAddr {
    /// Parses `host`, `host:port`, `[v6]`, `[v6]:port` or a bare IPv6
    /// address; the port defaults to apid's.
    pub fn parse(s: &str) -> Result<NodeAddr, PeerError> {
        let bad = || PeerError::BadNode(s.to_string());
        let s = s.trim();
        let (host, port) = if let Some(rest) = s.strip_prefix('[') {
            let (host, after) = rest.split_once(']').ok_or_else(bad)?;
            let port = match after {
                "" => None,
                p => Some(p.strip_prefix(':').ok_or_else(bad)?),
            };
            (host, port)
        } else if s.matches(':').count() == 1 {
            let (h, p) = s.split_once(':').ok_or_else(bad)?;
            (h, Some(p))
        } else {
            (s, None)
        };
        if host.is_empty() || host.contains(['/', ' ', ',']) {
            return Err(bad());
        }
        // A host with a colon prints as `[host]:port`, which must parse back.
        if (s.starts_with('[') || host.contains(':')) && host.parse::<std::net::Ipv6Addr>().is_err()
        {
            return Err(bad());
        }
        let port = match port {
            Some(p) => p.parse().map_err(|_| bad())?,
            None => config::constants::APID_PORT,
        };
        Ok(NodeAddr {
            host: host.to_string(),
            port,
        })
    }

    fn server_name(&self) -> Result<ServerName<'static>, PeerError> {
        match self.host.parse::<IpAddr>() {
            Ok(ip) => Ok(ServerName::IpAddress(ip.into())),
            Err(_) => ServerName::try_from(self.host.clone())
                .map_err(|_| PeerError::BadNode(self.host.clone())),
        }
    }
}

impl std::fmt::Display for NodeAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Channels to other nodes, for the settings of one generation.
#[derive(Default)]
pub struct Peers {
    cache: Mutex<(u64, HashMap<NodeAddr, Channel>)>,
}

impl Peers {
    /// A channel to `node` (connecting lazily, on first use).
    pub fn channel(&self, node: &NodeAddr, settings: &Compiled) -> Result<Channel, PeerError> {
        let tls = settings
            .forwarding
            .clone()
            .ok_or(PeerError::NoForwardingCertificate)?;
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.0 != settings.generation || cache.1.len() >= MAX_PEERS {
            *cache = (settings.generation, HashMap::new());
        }
        if let Some(c) = cache.1.get(node) {
            return Ok(c.clone());
        }
        let name = node.server_name()?;
        let (host, port) = (node.host.clone(), node.port);
        let connector = tower::service_fn(move |_: tonic::transport::Uri| {
            let (tls, name, host) = (tls.clone(), name.clone(), host.clone());
            async move {
                let connect = async {
                    let tcp = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
                    let _ = tcp.set_nodelay(true);
                    tokio_rustls::TlsConnector::from(tls)
                        .connect(name, tcp)
                        .await
                };
                let io = tokio::time::timeout(CONNECT_TIMEOUT, connect)
                    .await
                    .map_err(|_| {
                        std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            format!("no TLS connection within {} s", CONNECT_TIMEOUT.as_secs()),
                        )
                    })??;
                Ok::<_, std::io::Error>(TokioIo::new(io))
            }
        });
        // The URI only labels the channel; the connector decides where to go.
        let endpoint = Endpoint::from_shared(format!("http://{node}"))
            .map_err(|_| PeerError::BadNode(node.to_string()))?
            .connect_timeout(CONNECT_TIMEOUT)
            .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
            .keep_alive_timeout(KEEPALIVE_TIMEOUT)
            .keep_alive_while_idle(true)
            .initial_stream_window_size(crate::limit::UPSTREAM_STREAM_WINDOW)
            .initial_connection_window_size(crate::limit::UPSTREAM_CONNECTION_WINDOW);
        let channel = endpoint.connect_with_connector_lazy(connector);
        cache.1.insert(node.clone(), channel.clone());
        Ok(channel)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_forms_cairnctl_sends() {
        let p = |s| NodeAddr::parse(s);
        assert_eq!(
            p("10.5.0.2").unwrap(),
            NodeAddr {
                host: "10.5.0.2".into(),
                port: 50000
            }
        );
        assert_eq!(
            p("10.5.0.2:50001").unwrap(),
            NodeAddr {
                host: "10.5.0.2".into(),
                port: 50001
            }
        );
        assert_eq!(
            p("node-1").unwrap(),
            NodeAddr {
                host: "node-1".into(),
                port: 50000
            }
        );
        assert_eq!(
            p("[fd00::1]:7").unwrap(),
            NodeAddr {
                host: "fd00::1".into(),
                port: 7
            }
        );
        assert_eq!(
            p("fd00::1").unwrap(),
            NodeAddr {
                host: "fd00::1".into(),
                port: 50000
            }
        );
        assert_eq!(p("[fd00::1]").unwrap().to_string(), "[fd00::1]:50000");
        // "::ffff:10.0.0.133333333" (found by the node_addr fuzz target) was
        // taken as a host, shown as "[::ffff:10.0.0.133333333]:50000", which
        // did not parse.
        for bad in [
            "",
            "a,b",
            "a:b",
            "[x]:1",
            "[fd00::1]x",
            "h:70000",
            "::ffff:10.0.0.133333333",
            "a:b:c",
            "fe80::1%eth0",
        ] {
            assert!(p(bad).is_err(), "{bad:?}");
        }
    }
}
