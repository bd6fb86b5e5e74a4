//! How often one address may ask for a certificate: a fixed window per
//! caller and one for everybody, so a wrong-token flood costs the control
//! plane a few comparisons a minute, not a signature each.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Calls per window and address, and for all addresses together.
pub const PER_PEER: u32 = 6;
pub const OVERALL: u32 = 60;
pub const WINDOW: Duration = Duration::from_secs(60);

#[derive(Default)]
pub struct RateLimit {
    inner: Mutex<Windows>,
}

#[derive(Default)]
struct Windows {
    per_peer: HashMap<IpAddr, (Instant, u32)>,
    overall: Option<(Instant, u32)>,
}

fn count(window: &mut (Instant, u32), now: Instant, limit: u32) -> bool {
    if now.duration_since(window.0) >= WINDOW {
        *window = (now, 0);
    }
    window.1 += 1;
    window.1 <= limit
}

impl RateLimit {
    /// Whether `peer` may make one more call now.
    pub fn allow(&self, peer: IpAddr, now: Instant) -> bool {
        let mut w = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        // Forget old windows so the map stays as small as the callers.
        w.per_peer
            .retain(|_, (start, _)| now.duration_since(*start) < WINDOW);
        let overall = w.overall.get_or_insert((now, 0));
        if !count(overall, now, OVERALL) {
            return false;
        }
        let mine = w.per_peer.entry(peer).or_insert((now, 0));
        count(mine, now, PER_PEER)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_peer_gets_a_few_calls_a_minute() {
        let l = RateLimit::default();
        let t = Instant::now();
        let a: IpAddr = "10.5.0.3".parse().unwrap();
        let b: IpAddr = "10.5.0.4".parse().unwrap();
        for _ in 0..PER_PEER {
            assert!(l.allow(a, t));
        }
        assert!(!l.allow(a, t), "the seventh call in a minute is refused");
        assert!(l.allow(b, t), "another machine is not held up");
        assert!(l.allow(a, t + WINDOW), "a new minute, new calls");
    }

    #[test]
    fn a_flood_from_many_addresses_is_bounded_too() {
        let l = RateLimit::default();
        let t = Instant::now();
        let allowed = (0..200u32)
            .filter(|i| l.allow(IpAddr::from([10, 9, (i / 250) as u8, (i % 250) as u8]), t))
            .count();
        assert_eq!(allowed, OVERALL as usize);
    }
}
