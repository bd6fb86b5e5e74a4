//! The private network between a cluster's VMs: a learning Ethernet switch
//! over unix datagram sockets.
//!
//! Each VM has a NIC `-netdev dgram,local.type=unix,local.path=<net>/<node>.sock,
//! remote.type=unix,remote.path=<net>/hub.sock`: QEMU sends every frame the
//! guest transmits as one datagram to the hub's socket, and receives frames
//! on its own. The hub learns which socket each source MAC address came
//! from, sends a frame for a known address to that socket only, and floods
//! broadcast, multicast and unknown destinations to every other socket in
//! the network directory (so a VM that has not sent anything yet still sees
//! ARP requests). Nothing leaves this machine: no tap device, no bridge, no
//! root needed.
//!
//! Sends never block: a VM that does not read (paused, or gone) loses
//! frames, as a congested switch port would, and never stalls the others.

use std::collections::{BTreeSet, HashMap};
use std::io;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::net::{SendFlags, SocketAddrUnix};

/// The hub's own socket in the network directory.
pub const HUB_SOCKET: &str = "hub.sock";
/// The largest frame relayed (QEMU's dgram backend sends one frame per
/// datagram, without offloads: at most the MTU plus headers).
const MAX_FRAME: usize = 65_536;
/// How long a learned address is trusted without traffic from it.
const AGE: Duration = Duration::from_secs(300);
/// How often [`Hub::serve`] checks that its socket is still there.
const CHECK_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error("binding the hub socket {path}: {source}")]
    Bind { path: PathBuf, source: io::Error },
    #[error("the hub socket path {path} is {len} bytes; unix sockets allow at most 107 (use a shorter cluster directory)")]
    PathTooLong { path: PathBuf, len: usize },
    #[error("receiving on {path}: {source}")]
    Receive { path: PathBuf, source: io::Error },
    #[error("listing {path}: {source}")]
    List { path: PathBuf, source: io::Error },
}

/// What happened to one received frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// Sent to the one socket that owns the destination address.
    Unicast(PathBuf),
    /// Sent to every socket but the sender's (broadcast, multicast or an
    /// address not learned yet); the sockets it reached.
    Flooded(Vec<PathBuf>),
    /// Not relayed: too short for an Ethernet header, from an unnamed
    /// socket, or for an address behind the sender itself.
    Dropped,
}

/// The longest path a unix socket address holds (sun_path less its NUL).
pub const MAX_SOCKET_PATH: usize = 107;

/// Checks that `path` fits in a unix socket address.
pub fn check_socket_path(path: &Path) -> Result<(), HubError> {
    let len = path.as_os_str().len();
    if len > MAX_SOCKET_PATH {
        return Err(HubError::PathTooLong {
            path: path.to_path_buf(),
            len,
        });
    }
    Ok(())
}

/// A learning switch bound in one network directory.
pub struct Hub {
    socket: UnixDatagram,
    dir: PathBuf,
    path: PathBuf,
    /// Source MAC address -> the socket it came from, and when.
    table: HashMap<[u8; 6], (PathBuf, Instant)>,
    buf: Vec<u8>,
}

impl Hub {
    /// Binds `<dir>/hub.sock` (replacing a stale socket file).
    pub fn bind(dir: &Path) -> Result<Hub, HubError> {
        let path = dir.join(HUB_SOCKET);
        check_socket_path(&path)?;
        let _ = std::fs::remove_file(&path);
        let socket = UnixDatagram::bind(&path).map_err(|source| HubError::Bind {
            path: path.clone(),
            source,
        })?;
        Ok(Hub {
            socket,
            dir: dir.to_path_buf(),
            path,
            table: HashMap::new(),
            buf: vec![0; MAX_FRAME],
        })
    }

    /// The hub's socket, for the VMs' `remote.path`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Receives one frame (waiting at most `timeout`) and relays it;
    /// `None` when nothing arrived in time.
    pub fn relay_one(&mut self, timeout: Duration) -> Result<Option<Delivery>, HubError> {
        let receive_err = |source| HubError::Receive {
            path: self.path.clone(),
            source,
        };
        self.socket
            .set_read_timeout(Some(timeout.max(Duration::from_millis(1))))
            .map_err(receive_err)?;
        let (len, from) = match self.socket.recv_from(&mut self.buf) {
            Ok(r) => r,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                return Ok(None)
            }
            Err(source) => {
                return Err(HubError::Receive {
                    path: self.path.clone(),
                    source,
                })
            }
        };
        let Some(sender) = from.as_pathname().map(Path::to_path_buf) else {
            return Ok(Some(Delivery::Dropped));
        };
        let frame = self.buf[..len].to_vec();
        self.relay(&frame, sender).map(Some)
    }

    fn relay(&mut self, frame: &[u8], sender: PathBuf) -> Result<Delivery, HubError> {
        if frame.len() < 14 {
            return Ok(Delivery::Dropped);
        }
        let mut dst = [0u8; 6];
        let mut src = [0u8; 6];
        dst.copy_from_slice(&frame[0..6]);
        src.copy_from_slice(&frame[6..12]);
        let now = Instant::now();
        if !is_group(&src) {
            self.table.insert(src, (sender.clone(), now));
        }
        if !is_group(&dst) {
            let known = self
                .table
                .get(&dst)
                .filter(|(_, seen)| now.duration_since(*seen) < AGE)
                .map(|(port, _)| port.clone());
            if let Some(port) = known {
                if port == sender {
                    return Ok(Delivery::Dropped);
                }
                if self.send(frame, &port) {
                    return Ok(Delivery::Unicast(port));
                }
                // Its VM is gone: forget it and flood instead.
                self.table.retain(|_, (p, _)| *p != port);
            }
        }
        let mut reached = Vec::new();
        for port in self.ports(&sender)? {
            if self.send(frame, &port) {
                reached.push(port);
            }
        }
        Ok(Delivery::Flooded(reached))
    }

    /// Every socket to flood to: the sockets in the directory and the
    /// learned ones, less the hub's own and the sender's.
    fn ports(&self, sender: &Path) -> Result<BTreeSet<PathBuf>, HubError> {
        let list_err = |source| HubError::List {
            path: self.dir.clone(),
            source,
        };
        let mut ports: BTreeSet<PathBuf> = self.table.values().map(|(p, _)| p.clone()).collect();
        for entry in std::fs::read_dir(&self.dir).map_err(list_err)? {
            let path = entry.map_err(list_err)?.path();
            if path.extension().is_some_and(|e| e == "sock") {
                ports.insert(path);
            }
        }
        ports.remove(&self.path);
        ports.remove(sender);
        Ok(ports)
    }

    /// Sends without blocking; false when the socket is gone or full.
    fn send(&self, frame: &[u8], port: &Path) -> bool {
        let Ok(addr) = SocketAddrUnix::new(port) else {
            return false;
        };
        rustix::net::sendto(&self.socket, frame, SendFlags::DONTWAIT, &addr).is_ok()
    }

    /// Relays frames until the hub's socket file is removed (the cluster's
    /// directory was deleted) or receiving fails.
    pub fn serve(mut self) -> Result<(), HubError> {
        loop {
            self.relay_one(CHECK_EVERY)?;
            if !self.path.exists() {
                return Ok(());
            }
        }
    }
}

/// Broadcast and multicast addresses have the group bit set.
fn is_group(mac: &[u8; 6]) -> bool {
    mac[0] & 1 == 1
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: [u8; 6] = [0x52, 0x54, 0, 0xca, 5, 1];
    const B: [u8; 6] = [0x52, 0x54, 0, 0xca, 5, 2];
    const C: [u8; 6] = [0x52, 0x54, 0, 0xca, 5, 3];
    const BROADCAST: [u8; 6] = [0xff; 6];

    fn frame(dst: [u8; 6], src: [u8; 6], payload: &[u8]) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&dst);
        f.extend_from_slice(&src);
        f.extend_from_slice(&[0x08, 0x00]);
        f.extend_from_slice(payload);
        f
    }

    /// A fake VM: a datagram socket in the network directory, as QEMU's.
    struct Endpoint {
        socket: UnixDatagram,
        path: PathBuf,
    }

    impl Endpoint {
        fn new(dir: &Path, name: &str) -> Endpoint {
            let path = dir.join(format!("{name}.sock"));
            let socket = UnixDatagram::bind(&path).unwrap();
            socket.set_nonblocking(true).unwrap();
            Endpoint { socket, path }
        }
        fn send(&self, hub: &Hub, f: &[u8]) {
            self.socket.send_to(f, hub.path()).unwrap();
        }
        /// Every frame waiting for this endpoint.
        fn received(&self) -> Vec<Vec<u8>> {
            let mut out = Vec::new();
            let mut buf = [0u8; 2048];
            while let Ok(n) = self.socket.recv(&mut buf) {
                out.push(buf[..n].to_vec());
            }
            out
        }
    }

    fn relay(hub: &mut Hub) -> Delivery {
        hub.relay_one(Duration::from_secs(2))
            .unwrap()
            .expect("a frame")
    }

    #[test]
    fn frames_between_three_endpoints_flood_until_learned_then_go_to_one() {
        let dir = tempfile::tempdir().unwrap();
        let mut hub = Hub::bind(dir.path()).unwrap();
        let (a, b, c) = (
            Endpoint::new(dir.path(), "a"),
            Endpoint::new(dir.path(), "b"),
            Endpoint::new(dir.path(), "c"),
        );

        // A broadcast (an ARP request) reaches everyone but its sender,
        // also endpoints that never sent anything.
        let who_has = frame(BROADCAST, A, b"who has 10.5.0.3");
        a.send(&hub, &who_has);
        let mut flooded = vec![b.path.clone(), c.path.clone()];
        flooded.sort();
        assert_eq!(relay(&mut hub), Delivery::Flooded(flooded));
        assert_eq!(b.received(), vec![who_has.clone()]);
        assert_eq!(c.received(), vec![who_has]);
        assert!(a.received().is_empty(), "no echo to the sender");

        // The reply goes to A alone: the hub learned A's address.
        let reply = frame(A, C, b"10.5.0.3 is at C");
        c.send(&hub, &reply);
        assert_eq!(relay(&mut hub), Delivery::Unicast(a.path.clone()));
        assert_eq!(a.received(), vec![reply]);
        assert!(b.received().is_empty(), "B does not see A and C's traffic");

        // And back to C alone, learned from the reply.
        let data = frame(C, A, b"payload");
        a.send(&hub, &data);
        assert_eq!(relay(&mut hub), Delivery::Unicast(c.path.clone()));
        assert_eq!(c.received(), vec![data]);
        assert!(b.received().is_empty());

        // B's address is unknown yet: flooded to B and C.
        let to_b = frame(B, A, b"hello B");
        a.send(&hub, &to_b);
        assert!(matches!(relay(&mut hub), Delivery::Flooded(p) if p.len() == 2));
        assert_eq!(b.received(), vec![to_b.clone()]);
        assert_eq!(c.received(), vec![to_b]);
    }

    #[test]
    fn multicast_floods_and_a_gone_endpoint_is_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let mut hub = Hub::bind(dir.path()).unwrap();
        let a = Endpoint::new(dir.path(), "a");
        let b = Endpoint::new(dir.path(), "b");
        // IPv6 neighbour discovery goes to a multicast address.
        let multicast = [0x33, 0x33, 0xff, 0, 0, 2];
        a.send(&hub, &frame(multicast, A, b"ns"));
        assert_eq!(relay(&mut hub), Delivery::Flooded(vec![b.path.clone()]));
        b.send(&hub, &frame(A, B, b"na"));
        assert_eq!(relay(&mut hub), Delivery::Unicast(a.path.clone()));

        // B's VM stops: its socket is closed (the file stays). The socket
        // can outlive the drop for a moment (a process another test forks
        // holds its descriptor until it execs), so B may take one more frame.
        let b_path = b.path.clone();
        drop(b);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            a.send(&hub, &frame(B, A, b"to a stopped VM"));
            match relay(&mut hub) {
                Delivery::Flooded(p) if p.is_empty() => break,
                Delivery::Unicast(p) if p == b_path && std::time::Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                other => panic!("a frame for a stopped VM: {other:?}"),
            }
        }
        assert!(!hub.table.values().any(|(p, _)| *p == b_path));
    }

    #[test]
    fn runts_and_frames_for_the_senders_own_side_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let mut hub = Hub::bind(dir.path()).unwrap();
        let a = Endpoint::new(dir.path(), "a");
        let b = Endpoint::new(dir.path(), "b");
        a.send(&hub, &[1, 2, 3]);
        assert_eq!(relay(&mut hub), Delivery::Dropped);
        a.send(&hub, &frame(BROADCAST, A, b"x"));
        relay(&mut hub);
        b.received();
        // A frame from A's socket for A's own address goes nowhere.
        a.send(&hub, &frame(A, A, b"loop"));
        assert_eq!(relay(&mut hub), Delivery::Dropped);
        assert!(b.received().is_empty());
        assert_eq!(
            hub.relay_one(Duration::from_millis(10)).unwrap(),
            None,
            "nothing more arrived"
        );
    }

    #[test]
    fn serve_stops_when_the_socket_file_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let hub = Hub::bind(dir.path()).unwrap();
        let path = hub.path().to_path_buf();
        let t = std::thread::spawn(move || hub.serve());
        std::fs::remove_file(&path).unwrap();
        t.join().unwrap().unwrap();
    }

    #[test]
    fn a_socket_path_too_long_is_named() {
        let long = PathBuf::from(format!("/tmp/{}", "x".repeat(120)));
        let err = Hub::bind(&long).err().unwrap().to_string();
        assert!(err.contains("at most 107"), "{err}");
    }
}
