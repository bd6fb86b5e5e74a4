//! The DHCP client's state machine (RFC 2131 4.4): INIT (acquire), BOUND
//! until T1, RENEWING (unicast to the server) until T2, REBINDING
//! (broadcast) until the lease expires, then INIT again; a NAK goes
//! straight back to INIT; stopping releases the lease. The wire side
//! ([`Transport`]) and what a lease does to the node ([`Sink`]) are traits,
//! so the timing is tested with tokio's paused clock.

use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::watch;
use tokio::time::Instant;

use super::dhcp::Lease;
use super::NetworkError;
use runtime::supervisor::backoff::Backoff;

/// The answer to a renewal or rebinding REQUEST.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Renewal {
    Ack(Lease),
    Nak,
    NoAnswer,
}

/// Sends and receives DHCP messages for one link.
pub trait Transport: Send + Sync {
    /// DISCOVER/OFFER/REQUEST/ACK until a lease or a timeout.
    fn acquire(&self) -> BoxFuture<'_, Result<Lease, NetworkError>>;
    fn renew<'a>(
        &'a self,
        lease: &'a Lease,
        rebinding: bool,
    ) -> BoxFuture<'a, Result<Renewal, NetworkError>>;
    fn release<'a>(&'a self, lease: &'a Lease) -> BoxFuture<'a, ()>;
}

/// Puts leases into effect.
pub trait Sink: Send + Sync {
    /// A lease was granted or renewed; `old` is the lease it replaces.
    fn bound<'a>(
        &'a self,
        old: Option<&'a Lease>,
        new: &'a Lease,
    ) -> BoxFuture<'a, Result<(), NetworkError>>;
    /// The lease ended (expired, refused, released): undo it.
    fn lost<'a>(&'a self, lease: &'a Lease) -> BoxFuture<'a, ()>;
}

/// RFC 2131 4.4.5: retry after half the time left until `until`, but at
/// least a minute apart (or sooner if less than that is left).
pub fn retry_interval(now: Instant, until: Instant) -> Duration {
    let left = until.saturating_duration_since(now);
    (left / 2)
        .max(Duration::from_secs(60))
        .min(left.max(Duration::from_secs(1)))
}

/// What the client does next with a lease acquired at `acquired`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Sleep until then, then send a REQUEST (rebinding if past T2).
    RequestAt(Instant),
    /// The lease is over.
    Expired,
}

pub fn next(lease: &Lease, acquired: Instant, now: Instant) -> Next {
    let t1 = acquired + lease.renew_after;
    let t2 = acquired + lease.rebind_after;
    let expiry = acquired + lease.lease_time;
    if now >= expiry {
        return Next::Expired;
    }
    if now < t1 {
        return Next::RequestAt(t1);
    }
    let until = if now < t2 { t2 } else { expiry };
    Next::RequestAt((now + retry_interval(now, until)).min(expiry))
}

/// Resolves when `stop` turns true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Runs the client until `stop` says so; then releases the lease.
pub async fn run(transport: &dyn Transport, sink: &dyn Sink, mut stop: watch::Receiver<bool>) {
    let mut retry = Backoff::new(Duration::from_secs(5), Duration::from_secs(60));
    'init: loop {
        let acquired = tokio::select! {
            r = transport.acquire() => r,
            () = stopped(&mut stop) => return,
        };
        let mut lease = match acquired {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "DHCP");
                tokio::select! {
                    () = tokio::time::sleep(retry.next_delay()) => continue 'init,
                    () = stopped(&mut stop) => return,
                }
            }
        };
        if let Err(e) = sink.bound(None, &lease).await {
            runtime::console!("network: cannot apply the DHCP lease: {e}");
            tokio::select! {
                () = tokio::time::sleep(retry.next_delay()) => continue 'init,
                () = stopped(&mut stop) => return,
            }
        }
        retry.reset();
        let mut acquired = Instant::now();
        loop {
            let at = match next(&lease, acquired, Instant::now()) {
                Next::Expired => {
                    runtime::console!(
                        "network: DHCP lease for {} expired; starting over",
                        lease.address
                    );
                    sink.lost(&lease).await;
                    continue 'init;
                }
                Next::RequestAt(at) => at,
            };
            tokio::select! {
                () = tokio::time::sleep_until(at) => {}
                () = stopped(&mut stop) => {
                    transport.release(&lease).await;
                    sink.lost(&lease).await;
                    return;
                }
            }
            let now = Instant::now();
            if now >= acquired + lease.lease_time {
                continue;
            }
            let rebinding = now >= acquired + lease.rebind_after;
            match transport.renew(&lease, rebinding).await {
                Ok(Renewal::Ack(new)) => {
                    tracing::info!(address = %new.address, rebinding, "DHCP lease renewed");
                    if let Err(e) = sink.bound(Some(&lease), &new).await {
                        tracing::warn!(error = %e, "cannot apply the renewed lease");
                    }
                    lease = new;
                    acquired = now;
                }
                Ok(Renewal::NoAnswer) => {
                    tracing::info!(rebinding, "no answer to a DHCP renewal; retrying")
                }
                Ok(Renewal::Nak) => {
                    runtime::console!(
                        "network: the DHCP server refused to renew {} (NAK); starting over",
                        lease.address
                    );
                    sink.lost(&lease).await;
                    continue 'init;
                }
                Err(e) => tracing::warn!(error = %e, "DHCP renewal failed; retrying"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::net::Ipv4Addr;
    use std::sync::{Arc, Mutex};

    use super::*;

    fn lease(addr: u8, secs: u64) -> Lease {
        Lease {
            address: Ipv4Addr::new(10, 0, 2, addr),
            prefix_len: 24,
            router: Some(Ipv4Addr::new(10, 0, 2, 2)),
            dns: vec![],
            domain: None,
            hostname: None,
            mtu: None,
            routes: vec![],
            server: Ipv4Addr::new(10, 0, 2, 2),
            lease_time: Duration::from_secs(secs),
            renew_after: Duration::from_secs(secs / 2),
            rebind_after: Duration::from_secs(secs * 7 / 8),
        }
    }

    /// What happened, with the (paused) time since the start.
    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Ev {
        Acquire(u64),
        Renew(u64, bool),
        Release(u64),
        Bound(u64, u8),
        Lost(u64, u8),
    }

    struct Fake {
        start: Instant,
        acquires: Mutex<VecDeque<Lease>>,
        renewals: Mutex<VecDeque<Renewal>>,
        log: Arc<Mutex<Vec<Ev>>>,
    }

    impl Fake {
        fn secs(&self) -> u64 {
            (Instant::now() - self.start).as_secs()
        }
        fn log(&self, e: Ev) {
            self.log.lock().unwrap().push(e);
        }
    }

    impl Transport for Fake {
        fn acquire(&self) -> BoxFuture<'_, Result<Lease, NetworkError>> {
            Box::pin(async move {
                self.log(Ev::Acquire(self.secs()));
                let next = self.acquires.lock().unwrap().pop_front();
                match next {
                    Some(l) => Ok(l),
                    None => futures::future::pending().await,
                }
            })
        }
        fn renew<'a>(
            &'a self,
            _: &'a Lease,
            rebinding: bool,
        ) -> BoxFuture<'a, Result<Renewal, NetworkError>> {
            Box::pin(async move {
                self.log(Ev::Renew(self.secs(), rebinding));
                Ok(self
                    .renewals
                    .lock()
                    .unwrap()
                    .pop_front()
                    .unwrap_or(Renewal::NoAnswer))
            })
        }
        fn release<'a>(&'a self, _: &'a Lease) -> BoxFuture<'a, ()> {
            Box::pin(async move { self.log(Ev::Release(self.secs())) })
        }
    }

    impl Sink for Fake {
        fn bound<'a>(
            &'a self,
            _: Option<&'a Lease>,
            new: &'a Lease,
        ) -> BoxFuture<'a, Result<(), NetworkError>> {
            Box::pin(async move {
                self.log(Ev::Bound(self.secs(), new.address.octets()[3]));
                Ok(())
            })
        }
        fn lost<'a>(&'a self, lease: &'a Lease) -> BoxFuture<'a, ()> {
            Box::pin(async move { self.log(Ev::Lost(self.secs(), lease.address.octets()[3])) })
        }
    }

    /// Runs the client for `secs` of paused time, then stops it.
    async fn run_for(acquires: Vec<Lease>, renewals: Vec<Renewal>, secs: u64) -> Vec<Ev> {
        let fake = Arc::new(Fake {
            start: Instant::now(),
            acquires: Mutex::new(acquires.into()),
            renewals: Mutex::new(renewals.into()),
            log: Arc::default(),
        });
        let (stop_tx, stop_rx) = watch::channel(false);
        let f = fake.clone();
        let task = tokio::spawn(async move { run(&*f, &*f, stop_rx).await });
        tokio::time::sleep(Duration::from_secs(secs)).await;
        stop_tx.send(true).unwrap();
        task.await.unwrap();
        let log = fake.log.lock().unwrap().clone();
        log
    }

    #[tokio::test(start_paused = true)]
    async fn renews_at_t1_and_releases_on_stop() {
        let log = run_for(
            vec![lease(15, 100)],
            vec![Renewal::Ack(lease(15, 100))],
            120,
        )
        .await;
        assert_eq!(
            log,
            vec![
                Ev::Acquire(0),
                Ev::Bound(0, 15),
                Ev::Renew(50, false),
                Ev::Bound(50, 15),
                // Renewed at 50: the next T1 is at 100.
                Ev::Renew(100, false),
                Ev::Release(120),
                Ev::Lost(120, 15),
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn no_answer_rebinds_then_the_lease_expires() {
        // 1000 s lease: T1 500, T2 875, expiry 1000.
        let log = run_for(vec![lease(15, 1000), lease(16, 1000)], vec![], 1001).await;
        let renews: Vec<&Ev> = log.iter().filter(|e| matches!(e, Ev::Renew(..))).collect();
        // Renewing from T1, half the time left to T2 (at least 60 s) apart;
        // then rebinding from T2 until expiry.
        assert_eq!(renews[0], &Ev::Renew(500, false));
        assert_eq!(renews[1], &Ev::Renew(687, false));
        assert!(
            renews
                .iter()
                .any(|e| matches!(e, Ev::Renew(t, true) if *t >= 875)),
            "{log:?}"
        );
        assert!(renews.iter().all(|e| match e {
            Ev::Renew(t, rebinding) => *rebinding == (*t >= 875),
            _ => true,
        }));
        // Expired at 1000: the address goes, a new lease is acquired.
        let at = log
            .iter()
            .position(|e| *e == Ev::Lost(1000, 15))
            .expect("lost at expiry");
        assert_eq!(log[at + 1], Ev::Acquire(1000));
        assert_eq!(log[at + 2], Ev::Bound(1000, 16));
    }

    #[tokio::test(start_paused = true)]
    async fn nak_drops_the_lease_and_starts_over() {
        let log = run_for(vec![lease(15, 100), lease(17, 100)], vec![Renewal::Nak], 60).await;
        assert_eq!(
            log,
            vec![
                Ev::Acquire(0),
                Ev::Bound(0, 15),
                Ev::Renew(50, false),
                Ev::Lost(50, 15),
                Ev::Acquire(50),
                Ev::Bound(50, 17),
                Ev::Release(60),
                Ev::Lost(60, 17),
            ]
        );
    }

    #[test]
    fn retry_interval_halves_with_a_floor() {
        let now = Instant::now();
        let s = Duration::from_secs;
        assert_eq!(retry_interval(now, now + s(1000)), s(500));
        assert_eq!(retry_interval(now, now + s(100)), s(60));
        assert_eq!(retry_interval(now, now + s(30)), s(30));
        assert_eq!(retry_interval(now, now), s(1));
    }
}
