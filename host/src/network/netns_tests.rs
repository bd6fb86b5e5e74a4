//! The DHCP client end to end against a small DHCP server, over a veth pair
//! between two network namespaces the test creates (per thread: network
//! namespaces belong to threads, so each side runs on its own thread with
//! its own runtime). Lease times are seconds long so renewal is exercised.

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use dhcproto::v4::{DhcpOption, Message, MessageType, Opcode};
use dhcproto::{Decodable, Encodable};

use super::{link, Network};

const SERVER: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 1);
const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 2);

fn new_netns() -> Option<OwnedFd> {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).ok()?;
    std::fs::File::open("/proc/thread-self/ns/net")
        .ok()
        .map(Into::into)
}

fn bind_to_device(sock: &UdpSocket, dev: &str) {
    // SAFETY: setsockopt reads dev.len() bytes from a live slice.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_BINDTODEVICE,
            dev.as_ptr().cast(),
            dev.len() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "SO_BINDTODEVICE {dev}");
}

fn reply(req: &Message, kind: MessageType) -> Message {
    let mut m = Message::new_with_id(
        req.xid(),
        Ipv4Addr::UNSPECIFIED,
        CLIENT,
        SERVER,
        Ipv4Addr::UNSPECIFIED,
        &req.chaddr()[..6],
    );
    m.set_opcode(Opcode::BootReply);
    let o = m.opts_mut();
    o.insert(DhcpOption::MessageType(kind));
    o.insert(DhcpOption::SubnetMask(Ipv4Addr::new(255, 255, 255, 0)));
    o.insert(DhcpOption::Router(vec![SERVER]));
    o.insert(DhcpOption::DomainNameServer(vec![SERVER]));
    o.insert(DhcpOption::ServerIdentifier(SERVER));
    o.insert(DhcpOption::AddressLeaseTime(6));
    o.insert(DhcpOption::Renewal(2));
    o.insert(DhcpOption::Rebinding(4));
    m
}

/// Answers DISCOVER with OFFER and REQUEST with ACK; counts renewals
/// (REQUESTs carrying ciaddr). Runs until `done` or `deadline`.
fn serve_dhcp(dev: &str, renewals: &AtomicUsize, done: &AtomicBool, deadline: Instant) {
    let sock = UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 67)).unwrap();
    bind_to_device(&sock, dev);
    sock.set_broadcast(true).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut buf = [0u8; 1500];
    while Instant::now() < deadline && !done.load(Ordering::SeqCst) {
        let Ok((n, _)) = sock.recv_from(&mut buf) else {
            continue;
        };
        let Ok(req) = Message::from_bytes(&buf[..n]) else {
            continue;
        };
        let kind = match req.opts().msg_type() {
            Some(MessageType::Discover) => MessageType::Offer,
            Some(MessageType::Request) => MessageType::Ack,
            _ => continue,
        };
        let to = if req.ciaddr().is_unspecified() {
            Ipv4Addr::BROADCAST
        } else {
            renewals.fetch_add(1, Ordering::SeqCst);
            req.ciaddr()
        };
        let bytes = reply(&req, kind).to_vec().unwrap();
        let _ = sock.send_to(&bytes, SocketAddrV4::new(to, 68));
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn leases_and_renews_over_a_veth_pair() {
    let renewals = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let (ns_tx, ns_rx) = mpsc::channel::<Option<OwnedFd>>();
    let (moved_tx, moved_rx) = mpsc::channel::<()>();
    let deadline = Instant::now() + Duration::from_secs(40);

    // The server side: its own namespace, dh1 moved into it by the client side.
    let (r, d) = (renewals.clone(), done.clone());
    let server = std::thread::spawn(move || {
        let Some(ns) = new_netns() else {
            ns_tx.send(None).unwrap();
            return;
        };
        ns_tx.send(Some(ns)).unwrap();
        if moved_rx.recv().is_err() {
            return;
        }
        rt().block_on(async {
            let net = Network::connect().unwrap();
            let links = link::links(&net.handle).await.unwrap();
            for l in links.iter().filter(|l| l.name == "lo" || l.name == "dh1") {
                link::set_up(&net.handle, l.index).await.unwrap();
            }
            let dh1 = links
                .iter()
                .find(|l| l.name == "dh1")
                .expect("dh1 in the server namespace");
            link::add_address(&net.handle, dh1.index, SERVER, 24)
                .await
                .unwrap();
        });
        serve_dhcp("dh1", &r, &d, deadline);
    });

    // The client side on its own thread too: the test harness thread must
    // not end up in a private network namespace.
    let client = std::thread::spawn(move || {
        let Some(server_ns) = ns_rx.recv().unwrap() else {
            eprintln!("skipping: cannot create network namespaces (needs root)");
            return;
        };
        let Some(_client_ns) = new_netns() else {
            eprintln!("skipping: cannot create network namespaces (needs root)");
            drop(moved_tx);
            return;
        };
        // Stop the server whether the client side passes or panics.
        struct Done(Arc<AtomicBool>);
        impl Drop for Done {
            fn drop(&mut self) {
                self.0.store(true, Ordering::SeqCst);
            }
        }
        let _done = Done(done);
        rt().block_on(async {
            let net = Network::connect().unwrap();
            net.handle
                .link()
                .add(rtnetlink::LinkVeth::new("dh0", "dh1").build())
                .execute()
                .await
                .unwrap();
            net.handle
                .link()
                .set(
                    rtnetlink::LinkUnspec::new_with_name("dh1")
                        .setns_by_fd(server_ns.as_raw_fd())
                        .build(),
                )
                .execute()
                .await
                .unwrap();
            moved_tx.send(()).unwrap();
            let links = link::links(&net.handle).await.unwrap();
            let lo = links.iter().find(|l| l.name == "lo").unwrap();
            link::set_up(&net.handle, lo.index).await.unwrap();
            let dh0 = links.iter().find(|l| l.name == "dh0").unwrap().clone();
            link::set_up(&net.handle, dh0.index).await.unwrap();

            let leases = std::sync::Arc::new(super::dhcp_sink::Leases::default());
            let sink = super::dhcp_sink::LinkSink {
                handle: net.handle.clone(),
                link: "dh0".into(),
                index: dh0.index,
                config_mtu: false,
                leases: leases.clone(),
            };
            let client = super::dhcp::Client {
                ifname: "dh0".into(),
                mac: dh0.mac.unwrap(),
                hostname: Some("netns-test".into()),
            };
            let (stop, stop_rx) = tokio::sync::watch::channel(false);
            let dhcp =
                tokio::spawn(async move { super::lease::run(&client, &sink, stop_rx).await });
            let mut first = leases.first.subscribe();
            tokio::time::timeout(Duration::from_secs(20), first.wait_for(|b| *b))
                .await
                .expect("a lease within 20 s")
                .unwrap();
            let addrs = link::addresses(&net.handle).await.unwrap();
            assert!(
                addrs
                    .iter()
                    .any(|a| a.index == dh0.index && a.ip == CLIENT && a.prefix_len == 24),
                "no lease applied: {addrs:?}"
            );
            assert_eq!(
                net.node_addresses().await,
                vec![std::net::IpAddr::V4(CLIENT)]
            );

            // T1 is 2 s: renewals (unicast REQUESTs with ciaddr) must follow.
            let until = Instant::now() + Duration::from_secs(15);
            while renewals.load(Ordering::SeqCst) < 2 && Instant::now() < until {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            assert!(
                renewals.load(Ordering::SeqCst) >= 2,
                "lease was not renewed"
            );
            // Still holding the address after renewals.
            let addrs = link::addresses(&net.handle).await.unwrap();
            assert!(addrs.iter().any(|a| a.ip == CLIENT));
            assert_eq!(leases.snapshot()["dh0"].dns, vec![SERVER]);
            // Stopping releases the lease and removes the address.
            stop.send_replace(true);
            dhcp.await.unwrap();
            let addrs = link::addresses(&net.handle).await.unwrap();
            assert!(!addrs.iter().any(|a| a.ip == CLIENT), "{addrs:?}");
            assert!(leases.snapshot().is_empty());
        });
    });
    let result = client.join();
    server.join().unwrap();
    if let Err(p) = result {
        std::panic::resume_unwind(p);
    }
}
