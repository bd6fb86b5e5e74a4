//! A minimal SNTP server: answers every request with this host's clock
//! plus a fixed skew. It exists for tests (machined's own, and the VM test
//! that syncs a guest against the host), so it is hand-written rather than
//! a dependency: it only fills in the 48-byte reply of RFC 4330 section 5.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Seconds from 1900 (NTP's era) to 1970 (Unix's).
const NTP_UNIX_DELTA: u64 = 2_208_988_800;

fn ntp_timestamp(t: SystemTime) -> [u8; 8] {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = (d.as_secs() + NTP_UNIX_DELTA) as u32;
    let frac = ((u64::from(d.subsec_nanos()) << 32) / 1_000_000_000) as u32;
    let mut b = [0u8; 8];
    b[..4].copy_from_slice(&secs.to_be_bytes());
    b[4..].copy_from_slice(&frac.to_be_bytes());
    b
}

/// The reply to one request, with the server's clock at `now`.
pub fn reply(request: &[u8], now: SystemTime) -> Option<[u8; 48]> {
    if request.len() < 48 {
        return None;
    }
    let mut r = [0u8; 48];
    // LI 0, version as asked, mode 4 (server).
    r[0] = (request[0] & 0x38) | 4;
    r[1] = 1; // stratum 1: a primary reference
    r[2] = request[2];
    r[3] = 0xEC; // precision about 2^-20 s
    r[12..16].copy_from_slice(b"LOCL");
    let ts = ntp_timestamp(now);
    r[16..24].copy_from_slice(&ts); // reference
    r[24..32].copy_from_slice(&request[40..48]); // originate = client's transmit
    r[32..40].copy_from_slice(&ts); // receive
    r[40..48].copy_from_slice(&ts); // transmit
    Some(r)
}

/// A running responder; stops when dropped.
pub struct Responder {
    pub addr: SocketAddr,
    /// Requests answered so far.
    pub answered: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Responder {
    /// Serves on `bind` (port 0: any) on a thread, answering with the
    /// host's clock moved by `skew` (positive: ahead).
    pub fn start(bind: SocketAddr, skew: Duration, ahead: bool) -> std::io::Result<Responder> {
        let sock = UdpSocket::bind(bind)?;
        sock.set_read_timeout(Some(Duration::from_millis(200)))?;
        let addr = sock.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let answered = Arc::new(AtomicUsize::new(0));
        let (s, a) = (stop.clone(), answered.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            while !s.load(Ordering::SeqCst) {
                let Ok((n, from)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                let now = SystemTime::now();
                let now = if ahead { now + skew } else { now - skew };
                if let Some(r) = reply(&buf[..n], now) {
                    if sock.send_to(&r, from).is_ok() {
                        a.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }
        });
        Ok(Responder {
            addr,
            answered,
            stop,
        })
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}
