//! Which nodes apid forwards calls to: members of this cluster only.
//!
//! Why: `-n host:port` names where apid connects. Without a check any
//! caller (a reader too) could make apid open TCP connections to any
//! address and port, and tell from the error whether a port is open,
//! closed or filtered: a port scanner inside the cluster's network. So
//! apid forwards only to nodes it knows, at their apid port, and refuses
//! everything else before connecting, with one message that says nothing
//! about the address ([`NotAMember`]).
//!
//! What the node knows today (see [`Members::for_node`]): its own names
//! and addresses (the SANs of its server certificate: its addresses, its
//! hostname, `machine.certSANs` and loopback) at the apid port and at the
//! port it listens on, plus a list of members given to apid (host or
//! host:port, the apid port by default). machined will feed the cluster's
//! members (the control-plane endpoint's host, the other nodes) into that
//! list as multi-node clusters arrive.

use std::collections::HashSet;
use std::net::IpAddr;

use config::constants::APID_PORT;

use crate::peers::NodeAddr;

/// A forwarding target that is not a member. The text is the same for any
/// address: it must not say whether something answers there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("node {node} is not a member of this cluster")]
pub struct NotAMember {
    /// The node as the caller named it.
    pub node: String,
}

/// A host as compared: an IP address (IPv4-mapped IPv6 as IPv4) or a
/// lowercase DNS name without a trailing dot.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Host {
    Ip(IpAddr),
    Name(String),
}

impl Host {
    /// `None` for hosts that are never members: the unspecified,
    /// multicast and broadcast addresses, and empty names.
    fn of(host: &str) -> Option<Host> {
        let trimmed = host.trim().trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = trimmed.parse::<IpAddr>() {
            let ip = match ip {
                IpAddr::V6(v6) => v6
                    .to_ipv4_mapped()
                    .map(IpAddr::V4)
                    .unwrap_or(IpAddr::V6(v6)),
                v4 => v4,
            };
            let never = ip.is_unspecified()
                || ip.is_multicast()
                || matches!(ip, IpAddr::V4(v4) if v4.is_broadcast());
            return (!never).then_some(Host::Ip(ip));
        }
        let name = trimmed.trim_end_matches('.').to_ascii_lowercase();
        (!name.is_empty()).then_some(Host::Name(name))
    }
}

/// The nodes apid may forward to: host and port pairs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Members {
    known: HashSet<(Host, u16)>,
}

impl Members {
    /// Members from `host` or `host:port` entries (the apid port when none
    /// is given). Entries that do not parse, and hosts that are never
    /// members, are skipped.
    pub fn new<'a>(entries: impl IntoIterator<Item = &'a NodeAddr>) -> Members {
        let mut m = Members::default();
        for e in entries {
            m.add(&e.host, e.port);
        }
        m
    }

    fn add(&mut self, host: &str, port: u16) {
        if let Some(h) = Host::of(host) {
            self.known.insert((h, port));
        }
    }

    /// The node's own names (`own`: the SANs of its server certificate), at
    /// the apid port and at `listen_port` (the port this apid serves on),
    /// and the `cluster` members.
    pub fn for_node<'a>(
        own: impl IntoIterator<Item = &'a str>,
        listen_port: Option<u16>,
        cluster: impl IntoIterator<Item = &'a NodeAddr>,
    ) -> Members {
        let mut m = Members::new(cluster);
        for host in own {
            m.add(host, APID_PORT);
            if let Some(p) = listen_port {
                m.add(host, p);
            }
        }
        m
    }

    /// Whether apid may forward to `node`; the one error otherwise.
    pub fn check(&self, node: &NodeAddr) -> Result<(), NotAMember> {
        let known = Host::of(&node.host).is_some_and(|h| self.known.contains(&(h, node.port)));
        if known {
            Ok(())
        } else {
            Err(NotAMember {
                node: node.to_string(),
            })
        }
    }

    pub fn len(&self) -> usize {
        self.known.len()
    }

    pub fn is_empty(&self) -> bool {
        self.known.is_empty()
    }
}

/// The DNS names and IP addresses a certificate (DER) is valid for, as
/// text; empty when it does not parse.
pub fn certificate_names(der: &[u8]) -> Vec<String> {
    use x509_parser::extensions::GeneralName;
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
        return Vec::new();
    };
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::DNSName(d) => Some(d.to_string()),
            GeneralName::IPAddress(b) => match b.len() {
                4 => <[u8; 4]>::try_from(*b)
                    .ok()
                    .map(|a| IpAddr::from(a).to_string()),
                16 => <[u8; 16]>::try_from(*b)
                    .ok()
                    .map(|a| IpAddr::from(a).to_string()),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> NodeAddr {
        NodeAddr::parse(s).unwrap()
    }

    fn node() -> Members {
        let cluster = [addr("10.5.0.3"), addr("api.example.com:50001")];
        Members::for_node(
            ["10.5.0.2", "node-a", "fd00::2", "127.0.0.1"],
            Some(50100),
            &cluster,
        )
    }

    #[test]
    fn own_names_and_listed_members_at_their_apid_port() {
        let m = node();
        for ok in [
            "10.5.0.2",
            "10.5.0.2:50000",
            "10.5.0.2:50100",
            "NODE-A",
            "node-a.",
            "[fd00::2]:50000",
            "fd00:0::2",
            "[::ffff:10.5.0.2]",
            "10.5.0.3",
            "api.example.com:50001",
            "127.0.0.1:50100",
        ] {
            assert_eq!(m.check(&addr(ok)), Ok(()), "{ok}");
        }
    }

    /// Hole 6 of the hardening issue: any address and port was dialled.
    #[test]
    fn anything_else_is_refused_with_one_message() {
        let m = node();
        for (bad, shown) in [
            // Other ports of members: no port scans of the nodes.
            ("10.5.0.2:22", "10.5.0.2:22"),
            ("127.0.0.1:2379", "127.0.0.1:2379"),
            ("10.5.0.3:50100", "10.5.0.3:50100"),
            ("api.example.com", "api.example.com:50000"),
            // Unknown hosts, whatever listens there.
            ("10.5.0.4", "10.5.0.4:50000"),
            ("169.254.169.254:80", "169.254.169.254:80"),
            ("example.org", "example.org:50000"),
            ("0.0.0.0", "0.0.0.0:50000"),
        ] {
            let e = m.check(&addr(bad)).unwrap_err();
            assert_eq!(
                e.to_string(),
                format!("node {shown} is not a member of this cluster")
            );
        }
    }

    #[test]
    fn addresses_that_are_never_members() {
        let all = [
            addr("0.0.0.0"),
            addr("::"),
            addr("255.255.255.255"),
            addr("224.0.0.1"),
            addr("ff02::1"),
        ];
        let m = Members::for_node(["0.0.0.0", "::", ""], Some(50000), &all);
        assert!(m.is_empty(), "{m:?}");
        for a in &all {
            assert!(m.check(a).is_err());
        }
    }

    #[test]
    fn names_from_a_server_certificate() {
        let ca = config::pki::create_os_ca().unwrap();
        let sans = [
            config::types::SubjectAltName::Ip("10.5.0.2".parse().unwrap()),
            config::types::SubjectAltName::Ip("fd00::2".parse().unwrap()),
            config::types::SubjectAltName::Dns("node-a".into()),
        ];
        let cert = config::pki::issue_server_cert(&ca, "node-a", &sans, config::pki::LEAF_VALIDITY)
            .unwrap();
        assert_eq!(
            certificate_names(cert.crt.der()),
            ["node-a", "10.5.0.2", "fd00::2"]
        );
        assert!(certificate_names(b"not a certificate").is_empty());
    }
}
