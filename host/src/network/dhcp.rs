//! A small DHCPv4 client: lease acquisition (DISCOVER, OFFER, REQUEST,
//! ACK), renewal and rebinding. Packets are encoded and decoded with
//! `dhcproto`; they travel over a UDP socket bound to the interface
//! (SO_BINDTODEVICE) with broadcast enabled, so no raw sockets are needed.
//! Replies are asked to be broadcast (the BOOTP broadcast flag), because
//! before the lease the interface has no address to unicast to.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use dhcproto::v4::{DhcpOption, Flags, Message, MessageType, Opcode, OptionCode};
use dhcproto::{Decodable, Encodable};
use tokio::net::UdpSocket;
use tokio::time::Instant;

use futures::future::BoxFuture;

use super::lease::{Renewal, Transport};
use super::NetworkError;

const CLIENT_PORT: u16 = 68;
const SERVER_PORT: u16 = 67;

/// A lease as the server granted it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub address: Ipv4Addr,
    pub prefix_len: u8,
    pub router: Option<Ipv4Addr>,
    pub dns: Vec<Ipv4Addr>,
    pub domain: Option<String>,
    pub hostname: Option<String>,
    /// Option 26: the link MTU the server asks for.
    pub mtu: Option<u16>,
    /// Option 121 (classless static routes): destination, prefix, gateway.
    pub routes: Vec<(Ipv4Addr, u8, Ipv4Addr)>,
    pub server: Ipv4Addr,
    pub lease_time: Duration,
    /// T1: when to start renewing with the server that granted the lease.
    pub renew_after: Duration,
    /// T2: when to start asking any server (rebinding).
    pub rebind_after: Duration,
}

/// The client for one interface.
pub struct Client {
    pub ifname: String,
    pub mac: [u8; 6],
    /// Sent as option 12 so the server can register the name.
    pub hostname: Option<String>,
}

fn dhcp_err(what: &'static str) -> impl Fn(std::io::Error) -> NetworkError {
    move |source| NetworkError::Dhcp {
        what,
        message: source.to_string(),
    }
}

/// Opens the client socket: 0.0.0.0:68 bound to `ifname`, broadcast on.
fn open_socket(ifname: &str) -> Result<UdpSocket, NetworkError> {
    use std::os::fd::AsRawFd;
    let sock = std::net::UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, CLIENT_PORT))
        .map_err(dhcp_err("bind UDP port 68"))?;
    let name = ifname.as_bytes();
    // SAFETY: setsockopt reads `name.len()` bytes from a live slice; the fd
    // is owned by `sock` for the duration of the call.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_BINDTODEVICE,
            name.as_ptr().cast(),
            name.len() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(dhcp_err("bind the DHCP socket to the interface")(
            std::io::Error::last_os_error(),
        ));
    }
    sock.set_broadcast(true)
        .map_err(dhcp_err("enable broadcast"))?;
    sock.set_nonblocking(true)
        .map_err(dhcp_err("set non-blocking"))?;
    UdpSocket::from_std(sock).map_err(dhcp_err("register the socket"))
}

const PARAMS: &[OptionCode] = &[
    OptionCode::SubnetMask,
    OptionCode::Router,
    OptionCode::DomainNameServer,
    OptionCode::DomainName,
    OptionCode::Hostname,
    OptionCode::AddressLeaseTime,
    OptionCode::Renewal,
    OptionCode::Rebinding,
    OptionCode::InterfaceMtu,
    OptionCode::ClasslessStaticRoute,
];

impl Client {
    fn base(&self, xid: u32, kind: MessageType, ciaddr: Ipv4Addr) -> Message {
        let z = Ipv4Addr::UNSPECIFIED;
        let mut m = Message::new_with_id(xid, ciaddr, z, z, z, &self.mac);
        m.set_opcode(Opcode::BootRequest);
        if ciaddr.is_unspecified() {
            m.set_flags(Flags::default().set_broadcast());
        }
        let opts = m.opts_mut();
        opts.insert(DhcpOption::MessageType(kind));
        let mut client_id = vec![1u8];
        client_id.extend_from_slice(&self.mac);
        opts.insert(DhcpOption::ClientIdentifier(client_id));
        opts.insert(DhcpOption::ParameterRequestList(PARAMS.to_vec()));
        if let Some(h) = &self.hostname {
            opts.insert(DhcpOption::Hostname(h.clone()));
        }
        m
    }

    pub fn discover(&self, xid: u32) -> Message {
        self.base(xid, MessageType::Discover, Ipv4Addr::UNSPECIFIED)
    }

    /// REQUEST in the SELECTING state: for an offered address.
    pub fn request_offer(&self, xid: u32, offer: &Message) -> Message {
        let mut m = self.base(xid, MessageType::Request, Ipv4Addr::UNSPECIFIED);
        m.opts_mut()
            .insert(DhcpOption::RequestedIpAddress(offer.yiaddr()));
        if let Some(DhcpOption::ServerIdentifier(s)) =
            offer.opts().get(OptionCode::ServerIdentifier)
        {
            m.opts_mut().insert(DhcpOption::ServerIdentifier(*s));
        }
        m
    }

    /// REQUEST in the RENEWING/REBINDING states: ciaddr carries the address.
    pub fn request_renew(&self, xid: u32, lease: &Lease) -> Message {
        self.base(xid, MessageType::Request, lease.address)
    }

    /// Acquires a lease, retransmitting with growing intervals, up to
    /// `timeout` in total.
    pub async fn acquire(&self, timeout: Duration) -> Result<Lease, NetworkError> {
        let deadline = Instant::now() + timeout;
        let sock = open_socket(&self.ifname)?;
        let broadcast = SocketAddrV4::new(Ipv4Addr::BROADCAST, SERVER_PORT);
        let mut wait = Duration::from_secs(2);
        while Instant::now() < deadline {
            let xid: u32 = rand_xid();
            send(&sock, &self.discover(xid), broadcast).await?;
            tracing::debug!(interface = %self.ifname, xid, "DHCP discover sent");
            let offer = match recv_reply(
                &sock,
                xid,
                &self.mac,
                &[MessageType::Offer],
                wait.min(deadline - Instant::now()),
            )
            .await?
            {
                Some(o) => o,
                None => {
                    wait = (wait * 2).min(Duration::from_secs(16));
                    continue;
                }
            };
            tracing::debug!(offered = %offer.yiaddr(), "DHCP offer");
            send(&sock, &self.request_offer(xid, &offer), broadcast).await?;
            match recv_reply(
                &sock,
                xid,
                &self.mac,
                &[MessageType::Ack, MessageType::Nak],
                Duration::from_secs(4),
            )
            .await?
            {
                Some(reply) if reply.opts().has_msg_type(MessageType::Ack) => {
                    return parse_lease(&reply)
                }
                Some(_) => {
                    tracing::info!(interface = %self.ifname, "DHCP server declined (NAK); starting over")
                }
                None => tracing::info!(interface = %self.ifname, "no DHCP ACK; starting over"),
            }
        }
        Err(NetworkError::Dhcp {
            what: "acquire a lease",
            message: format!(
                "no usable answer from a DHCP server on {} within {timeout:?}",
                self.ifname
            ),
        })
    }

    /// Renews (unicast to the lease's server) or rebinds (broadcast).
    pub async fn renew(&self, lease: &Lease, rebinding: bool) -> Result<Renewal, NetworkError> {
        let sock = open_socket(&self.ifname)?;
        let to = if rebinding {
            SocketAddrV4::new(Ipv4Addr::BROADCAST, SERVER_PORT)
        } else {
            SocketAddrV4::new(lease.server, SERVER_PORT)
        };
        let xid = rand_xid();
        send(&sock, &self.request_renew(xid, lease), to).await?;
        match recv_reply(
            &sock,
            xid,
            &self.mac,
            &[MessageType::Ack, MessageType::Nak],
            Duration::from_secs(5),
        )
        .await?
        {
            Some(r) if r.opts().has_msg_type(MessageType::Ack) => parse_lease(&r).map(Renewal::Ack),
            Some(_) => Ok(Renewal::Nak),
            None => Ok(Renewal::NoAnswer),
        }
    }

    /// Gives the address back (DHCPRELEASE, unicast to the server; no
    /// answer comes).
    pub async fn release(&self, lease: &Lease) -> Result<(), NetworkError> {
        let sock = open_socket(&self.ifname)?;
        let mut m = self.base(rand_xid(), MessageType::Release, lease.address);
        m.opts_mut()
            .insert(DhcpOption::ServerIdentifier(lease.server));
        send(&sock, &m, SocketAddrV4::new(lease.server, SERVER_PORT)).await
    }
}

/// How long one acquisition may take before the state machine backs off.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);

impl Transport for Client {
    fn acquire(&self) -> BoxFuture<'_, Result<Lease, NetworkError>> {
        Box::pin(self.acquire(ACQUIRE_TIMEOUT))
    }
    fn renew<'a>(
        &'a self,
        lease: &'a Lease,
        rebinding: bool,
    ) -> BoxFuture<'a, Result<Renewal, NetworkError>> {
        Box::pin(self.renew(lease, rebinding))
    }
    fn release<'a>(&'a self, lease: &'a Lease) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            if let Err(e) = self.release(lease).await {
                tracing::debug!(error = %e, "DHCP release");
            }
        })
    }
}

fn rand_xid() -> u32 {
    // Only needs to differ between clients and attempts; not a secret.
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    t.subsec_nanos() ^ (std::process::id() << 16) ^ (t.as_secs() as u32)
}

async fn send(sock: &UdpSocket, m: &Message, to: SocketAddrV4) -> Result<(), NetworkError> {
    let bytes = m.to_vec().map_err(|e| NetworkError::Dhcp {
        what: "encode a DHCP message",
        message: e.to_string(),
    })?;
    sock.send_to(&bytes, to)
        .await
        .map_err(dhcp_err("send a DHCP message"))?;
    Ok(())
}

/// Waits up to `wait` for a reply to `xid` of one of `kinds`; others are
/// ignored (other clients' traffic, stray retransmissions).
async fn recv_reply(
    sock: &UdpSocket,
    xid: u32,
    mac: &[u8; 6],
    kinds: &[MessageType],
    wait: Duration,
) -> Result<Option<Message>, NetworkError> {
    let deadline = Instant::now() + wait;
    let mut buf = vec![0u8; 1500];
    loop {
        let n = match tokio::time::timeout_at(deadline, sock.recv_from(&mut buf)).await {
            Err(_) => return Ok(None),
            Ok(r) => r.map_err(dhcp_err("receive a DHCP message"))?.0,
        };
        let Some(m) = decode(&buf[..n]) else {
            continue;
        };
        if m.opcode() == Opcode::BootReply
            && m.xid() == xid
            && m.chaddr().get(..6) == Some(&mac[..])
            && m.opts().msg_type().is_some_and(|t| kinds.contains(&t))
        {
            return Ok(Some(m));
        }
    }
}

/// Decodes a packet off the link, or `None` when it is not one.
///
/// dhcproto 0.15 `debug_assert!`s the lengths of a few options that it reads
/// as fixed-size values: release builds read the option's first bytes,
/// debug builds (the tests) panic on a packet anyone on the link can send.
/// Such packets are refused here, before dhcproto reads them, so both builds
/// behave alike (found by the `dhcp` fuzz target).
pub fn decode(bytes: &[u8]) -> Option<Message> {
    if !asserted_lengths_hold(bytes) {
        return None;
    }
    Message::from_bytes(bytes).ok()
}

/// Where the options start: after the fixed BOOTP header and the magic cookie.
const OPTIONS_AT: usize = 240;

/// Whether the options dhcproto asserts on have the lengths it expects,
/// taken as dhcproto reads them: adjacent options with one code are joined
/// (RFC 3396) until a Pad, an End, another code or the end of the packet; a
/// truncated option ends the reading.
fn asserted_lengths_hold(bytes: &[u8]) -> bool {
    let holds = |code: u8, len: usize| match OptionCode::from(code) {
        OptionCode::RapidCommit => len == 0,
        OptionCode::ClientNetworkInterface => len == 3,
        OptionCode::BulkLeaseQueryBaseTime
        | OptionCode::BulkLeasQueryStartTimeOfState
        | OptionCode::BulkLeaseQueryQueryStartTime
        | OptionCode::BulkLeaseQueryQueryEndTime => len == 4,
        OptionCode::ClientFQDN => len >= 3,
        _ => true,
    };
    let mut rest = bytes.get(OPTIONS_AT..).unwrap_or_default();
    // The code of the option being read and its length so far.
    let mut run: Option<(u8, usize)> = None;
    loop {
        let code = rest.first().copied();
        if let Some((c, len)) = run {
            if code != Some(c) {
                if !holds(c, len) {
                    return false;
                }
                run = None;
            }
        }
        match code {
            None | Some(255) => return true,
            Some(0) => rest = &rest[1..],
            Some(c) => {
                let Some(len) = rest.get(1).map(|&l| usize::from(l)) else {
                    return true;
                };
                let Some(after) = rest.get(2 + len..) else {
                    return true;
                };
                run = Some((c, run.map_or(0, |(_, l)| l) + len));
                rest = after;
            }
        }
    }
}

/// Turns an ACK into a lease, applying the RFC 2131 defaults for T1/T2.
pub fn parse_lease(ack: &Message) -> Result<Lease, NetworkError> {
    let o = ack.opts();
    let address = ack.yiaddr();
    if address.is_unspecified() {
        return Err(NetworkError::Dhcp {
            what: "read the lease",
            message: "the ACK carries no address".into(),
        });
    }
    let prefix_len = match o.get(OptionCode::SubnetMask) {
        Some(DhcpOption::SubnetMask(m)) => u32::from(*m).count_ones() as u8,
        _ => 24,
    };
    let router = match o.get(OptionCode::Router) {
        Some(DhcpOption::Router(r)) => r.first().copied(),
        _ => None,
    };
    let dns = match o.get(OptionCode::DomainNameServer) {
        Some(DhcpOption::DomainNameServer(d)) => d.clone(),
        _ => Vec::new(),
    };
    let domain = match o.get(OptionCode::DomainName) {
        Some(DhcpOption::DomainName(d)) if !d.is_empty() => Some(d.clone()),
        _ => None,
    };
    let hostname = match o.get(OptionCode::Hostname) {
        Some(DhcpOption::Hostname(h)) if !h.is_empty() => Some(h.clone()),
        _ => None,
    };
    let mtu = match o.get(OptionCode::InterfaceMtu) {
        Some(DhcpOption::InterfaceMtu(m)) if *m >= 576 => Some(*m),
        _ => None,
    };
    let routes = match o.get(OptionCode::ClasslessStaticRoute) {
        Some(DhcpOption::ClasslessStaticRoute(r)) => r
            .iter()
            .map(|(net, gw)| (net.network(), net.prefix_len(), *gw))
            .collect(),
        _ => Vec::new(),
    };
    let server = match o.get(OptionCode::ServerIdentifier) {
        Some(DhcpOption::ServerIdentifier(s)) => *s,
        _ => ack.siaddr(),
    };
    let secs = |code| match o.get(code) {
        Some(DhcpOption::AddressLeaseTime(t))
        | Some(DhcpOption::Renewal(t))
        | Some(DhcpOption::Rebinding(t)) => Some(Duration::from_secs(u64::from(*t))),
        _ => None,
    };
    let lease_time = secs(OptionCode::AddressLeaseTime).unwrap_or(Duration::from_secs(3600));
    let renew_after = secs(OptionCode::Renewal).unwrap_or(lease_time / 2);
    let rebind_after = secs(OptionCode::Rebinding).unwrap_or(lease_time * 7 / 8);
    Ok(Lease {
        address,
        prefix_len,
        router,
        dns,
        domain,
        hostname,
        mtu,
        routes,
        server,
        lease_time,
        renew_after,
        rebind_after,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> Client {
        Client {
            ifname: "eth0".into(),
            mac: [0x52, 0x54, 0, 0x12, 0x34, 0x56],
            hostname: Some("cairn-123456".into()),
        }
    }

    fn reply(kind: MessageType, xid: u32) -> Message {
        let c = client();
        let mut m = Message::new_with_id(
            xid,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::new(10, 0, 2, 15),
            Ipv4Addr::new(10, 0, 2, 2),
            Ipv4Addr::UNSPECIFIED,
            &c.mac,
        );
        m.set_opcode(Opcode::BootReply);
        let o = m.opts_mut();
        o.insert(DhcpOption::MessageType(kind));
        o.insert(DhcpOption::SubnetMask(Ipv4Addr::new(255, 255, 255, 0)));
        o.insert(DhcpOption::Router(vec![Ipv4Addr::new(10, 0, 2, 2)]));
        o.insert(DhcpOption::DomainNameServer(vec![Ipv4Addr::new(
            10, 0, 2, 3,
        )]));
        o.insert(DhcpOption::ServerIdentifier(Ipv4Addr::new(10, 0, 2, 2)));
        o.insert(DhcpOption::AddressLeaseTime(86400));
        o.insert(DhcpOption::InterfaceMtu(1400));
        o.insert(DhcpOption::Hostname("node7".into()));
        o.insert(DhcpOption::ClasslessStaticRoute(vec![(
            "192.168.50.0/24".parse().unwrap(),
            Ipv4Addr::new(10, 0, 2, 1),
        )]));
        m
    }

    #[test]
    fn discover_asks_for_broadcast_replies_and_options() {
        let bytes = client().discover(42).to_vec().unwrap();
        let m = Message::from_bytes(&bytes).unwrap();
        assert_eq!(m.xid(), 42);
        assert!(m.flags().broadcast());
        assert_eq!(m.opts().msg_type(), Some(MessageType::Discover));
        assert_eq!(&m.chaddr()[..6], &client().mac);
        match m.opts().get(OptionCode::ParameterRequestList) {
            Some(DhcpOption::ParameterRequestList(p)) => {
                assert!(
                    p.contains(&OptionCode::Router) && p.contains(&OptionCode::DomainNameServer)
                )
            }
            other => panic!("no parameter request list: {other:?}"),
        }
    }

    #[test]
    fn request_names_the_offer_and_server() {
        let offer = reply(MessageType::Offer, 7);
        let m = client().request_offer(7, &offer);
        assert_eq!(
            m.opts().get(OptionCode::RequestedIpAddress),
            Some(&DhcpOption::RequestedIpAddress(Ipv4Addr::new(10, 0, 2, 15)))
        );
        assert_eq!(
            m.opts().get(OptionCode::ServerIdentifier),
            Some(&DhcpOption::ServerIdentifier(Ipv4Addr::new(10, 0, 2, 2)))
        );
    }

    #[test]
    fn lease_from_a_qemu_like_ack() {
        let wire = reply(MessageType::Ack, 9).to_vec().unwrap();
        let lease = parse_lease(&Message::from_bytes(&wire).unwrap()).unwrap();
        assert_eq!(lease.address, Ipv4Addr::new(10, 0, 2, 15));
        assert_eq!(lease.prefix_len, 24);
        assert_eq!(lease.router, Some(Ipv4Addr::new(10, 0, 2, 2)));
        assert_eq!(lease.dns, vec![Ipv4Addr::new(10, 0, 2, 3)]);
        assert_eq!(lease.lease_time, Duration::from_secs(86400));
        assert_eq!(lease.renew_after, Duration::from_secs(43200));
        assert_eq!(lease.rebind_after, Duration::from_secs(75600));
        assert_eq!(lease.mtu, Some(1400));
        assert_eq!(lease.hostname.as_deref(), Some("node7"));
        assert_eq!(
            lease.routes,
            vec![(
                Ipv4Addr::new(192, 168, 50, 0),
                24,
                Ipv4Addr::new(10, 0, 2, 1)
            )]
        );

        let renew = client().request_renew(10, &lease);
        assert_eq!(renew.ciaddr(), lease.address);
        assert!(!renew.flags().broadcast());
    }

    /// Options dhcproto asserts the length of, with the wrong length, found
    /// by the `dhcp` fuzz target: refused, not a panic in debug builds.
    #[test]
    fn options_of_the_wrong_length_are_refused_not_a_panic() {
        let ack = reply(MessageType::Ack, 11).to_vec().unwrap();
        assert!(decode(&ack).is_some());
        let with = |opts: &[u8]| {
            let mut b = ack[..OPTIONS_AT].to_vec();
            b.extend_from_slice(opts);
            b.extend_from_slice(&ack[OPTIONS_AT..]);
            b
        };
        let start_time_of_state = u8::from(OptionCode::BulkLeasQueryStartTimeOfState);
        let fqdn = u8::from(OptionCode::ClientFQDN);
        let rapid = u8::from(OptionCode::RapidCommit);
        for bad in [
            vec![start_time_of_state, 2, 0, 0],
            vec![
                start_time_of_state,
                2,
                0,
                0,
                0,
                start_time_of_state,
                2,
                0,
                0,
            ],
            vec![fqdn, 1, 0],
            vec![rapid, 1, 0],
            vec![u8::from(OptionCode::ClientNetworkInterface), 4, 1, 2, 3, 4],
        ] {
            assert!(decode(&with(&bad)).is_none(), "{bad:?}");
        }
        // Split in two (RFC 3396), the lengths add up.
        let split = with(&[start_time_of_state, 2, 0, 0, start_time_of_state, 2, 0, 1]);
        assert!(decode(&split).is_some());
        // A truncated option ends the options; the packet is dhcproto's to judge.
        assert!(decode(&ack[..OPTIONS_AT + 1]).is_some());
    }
}
