//! Admission limits per client address and in all: how many TLS handshakes
//! run at once ([`Turns`], waited for), how many connections may be open
//! and how many long-lived calls (streams) in flight ([`Gate`], refused
//! beyond).
//!
//! Why per address: one global limit is a door a single client can hold
//! shut. The load test (apid/load) kept 300 half-open TCP connections from
//! one address, and with one global limit of 128 handshakes (each held up
//! to the 10 s handshake timeout) every other client, a health probe from
//! another address included, waited behind them. With a share per address
//! the flooding address is refused at once and everyone else gets in.
//! IPv6 clients are counted by /64 (one host usually has a whole /64).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Why a [`Gate`] refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Full {
    /// This address holds its share.
    Source,
    /// Everyone together holds the whole.
    Total,
}

/// A counted resource with a share per client address and a total.
#[derive(Debug)]
pub struct Gate {
    pub per_source: usize,
    pub total: usize,
    counts: Mutex<(usize, HashMap<IpAddr, usize>)>,
}

/// One unit of a [`Gate`], given back when dropped.
#[derive(Debug)]
pub struct Ticket {
    gate: Arc<Gate>,
    source: IpAddr,
}

/// The address a client is counted under: IPv4 (also when mapped into
/// IPv6) as it is, IPv6 by its /64.
pub fn source_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
        v4 => v4,
    }
}

impl Gate {
    pub fn new(per_source: usize, total: usize) -> Arc<Gate> {
        Arc::new(Gate {
            per_source,
            total,
            counts: Mutex::new((0, HashMap::new())),
        })
    }

    /// A unit for a client at `ip`, if its share and the total allow.
    pub fn enter(self: &Arc<Self>, ip: IpAddr) -> Result<Ticket, Full> {
        let source = source_key(ip);
        let mut c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if c.0 >= self.total {
            return Err(Full::Total);
        }
        let mine = c.1.entry(source).or_insert(0);
        if *mine >= self.per_source {
            return Err(Full::Source);
        }
        *mine += 1;
        c.0 += 1;
        Ok(Ticket {
            gate: self.clone(),
            source,
        })
    }

    /// Units in use, in all.
    pub fn in_use(&self) -> usize {
        self.counts.lock().unwrap_or_else(|e| e.into_inner()).0
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut c = self.gate.counts.lock().unwrap_or_else(|e| e.into_inner());
        c.0 = c.0.saturating_sub(1);
        if let Some(n) = c.1.get_mut(&self.source) {
            *n -= 1;
            if *n == 0 {
                c.1.remove(&self.source);
            }
        }
    }
}

/// Turns per client address and in all, waited for: a burst of
/// connections from one client (cairnctl talking to fifty nodes through one
/// endpoint) takes its turns, while a client that holds its turns (a flood
/// of handshakes that never finish) delays only itself.
#[derive(Debug)]
pub struct Turns {
    per_source: usize,
    sources: Mutex<HashMap<IpAddr, Arc<Semaphore>>>,
    total: Arc<Semaphore>,
}

/// A turn, given back when dropped.
#[derive(Debug)]
pub struct Turn {
    _source: OwnedSemaphorePermit,
    _total: OwnedSemaphorePermit,
}

impl Turns {
    pub fn new(per_source: usize, total: usize) -> Arc<Turns> {
        Arc::new(Turns {
            per_source,
            sources: Mutex::new(HashMap::new()),
            total: Arc::new(Semaphore::new(total)),
        })
    }

    /// Waits for a turn for a client at `ip` (cancel by dropping).
    pub async fn take(&self, ip: IpAddr) -> Turn {
        let source = source_key(ip);
        let semaphore = {
            let mut m = self.sources.lock().unwrap_or_else(|e| e.into_inner());
            // Forget addresses nobody waits for or holds a turn of.
            if m.len() > 1024 {
                m.retain(|_, s| Arc::strong_count(s) > 1);
            }
            m.entry(source)
                .or_insert_with(|| Arc::new(Semaphore::new(self.per_source)))
                .clone()
        };
        // Neither semaphore is ever closed.
        let source = semaphore
            .acquire_owned()
            .await
            .unwrap_or_else(|_| unreachable!());
        let total = self
            .total
            .clone()
            .acquire_owned()
            .await
            .unwrap_or_else(|_| unreachable!());
        Turn {
            _source: source,
            _total: total,
        }
    }
}

/// A log line at most every `every`, counting what was left out, so a
/// flood of refusals does not become a flood of log lines.
#[derive(Debug)]
pub struct Quiet {
    every: Duration,
    start: Instant,
    /// Milliseconds after `start` of the last line, plus one (0: none).
    last: AtomicU64,
    skipped: AtomicU64,
}

impl Quiet {
    pub fn new(every: Duration) -> Quiet {
        Quiet {
            every,
            start: Instant::now(),
            last: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
        }
    }

    /// Whether to log now; if so, how many lines were left out since the
    /// last one.
    pub fn pass(&self) -> Option<u64> {
        let now = self.start.elapsed().as_millis() as u64 + 1;
        let last = self.last.load(Ordering::Relaxed);
        let due = last == 0 || now.saturating_sub(last) >= self.every.as_millis() as u64;
        if due
            && self
                .last
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            return Some(self.skipped.swap(0, Ordering::Relaxed));
        }
        self.skipped.fetch_add(1, Ordering::Relaxed);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_share_per_address_and_a_total() {
        let g = Gate::new(2, 3);
        let a1 = g.enter(ip("10.0.0.1")).unwrap();
        let _a2 = g.enter(ip("10.0.0.1")).unwrap();
        assert_eq!(g.enter(ip("10.0.0.1")).unwrap_err(), Full::Source);
        // Another address still gets in, up to the total.
        let b1 = g.enter(ip("10.0.0.2")).unwrap();
        assert_eq!(g.enter(ip("10.0.0.3")).unwrap_err(), Full::Total);
        assert_eq!(g.in_use(), 3);
        drop(a1);
        drop(b1);
        assert_eq!(g.in_use(), 1);
        let _a3 = g.enter(ip("10.0.0.1")).unwrap();
        let _c = g.enter(ip("10.0.0.3")).unwrap();
    }

    #[test]
    fn ipv6_hosts_count_by_their_64_and_mapped_ipv4_as_ipv4() {
        let g = Gate::new(1, 10);
        let _a = g.enter(ip("fd00:1:2:3::1")).unwrap();
        assert_eq!(g.enter(ip("fd00:1:2:3::ffff")).unwrap_err(), Full::Source);
        let _b = g.enter(ip("fd00:1:2:4::1")).unwrap();
        let _c = g.enter(ip("10.0.0.1")).unwrap();
        assert_eq!(g.enter(ip("::ffff:10.0.0.1")).unwrap_err(), Full::Source);
    }

    #[tokio::test]
    async fn turns_wait_per_address_without_delaying_others() {
        let t = Turns::new(2, 3);
        let a1 = t.take(ip("10.0.0.1")).await;
        let _a2 = t.take(ip("10.0.0.1")).await;
        // A third turn for 10.0.0.1 waits...
        let waiting = tokio::spawn({
            let t = t.clone();
            async move { t.take(ip("10.0.0.1")).await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        // ...while another address gets its turn at once.
        let b = tokio::time::timeout(Duration::from_secs(1), t.take(ip("10.0.0.2")))
            .await
            .expect("another address is not delayed");
        drop(a1);
        drop(b);
        tokio::time::timeout(Duration::from_secs(1), waiting)
            .await
            .expect("the waiting turn comes")
            .unwrap();
    }

    #[test]
    fn quiet_logs_once_per_period_and_counts_the_rest() {
        let q = Quiet::new(Duration::from_secs(3600));
        assert_eq!(q.pass(), Some(0));
        assert_eq!(q.pass(), None);
        assert_eq!(q.pass(), None);
        let q = Quiet::new(Duration::ZERO);
        assert_eq!(q.pass(), Some(0));
        assert_eq!(q.pass(), Some(0));
    }
}
