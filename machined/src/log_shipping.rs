//! machined's own logs off the node: every line of every supervised
//! service's log ring, machined's own and the kernel log, as JSON lines
//! (`{"time","node","service","message"}`) to the destinations of
//! `machine.logging.destinations`, and to the logging add-on's store when
//! the add-on is on (so OS logs survive a reboot of the node; Talos's
//! `machine.logging` is the model).
//!
//! Lines go through one bounded broadcast channel: a destination that is
//! down or slow loses the oldest lines it has not taken (counted and said
//! on the console when it comes back); nothing here can hold PID 1 up.

use std::collections::BTreeSet;
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

use config::spec::LogDestination;
use config::types::LogEndpoint;
use config::MachineConfig;
use runtime::resources::{kind, Filter, Watch};
use runtime::supervisor::logbuf::LogRing;
use runtime::supervisor::ServiceHandle;
use tokio::io::AsyncWriteExt;
use tokio::sync::broadcast;

use crate::state::Node;

/// Lines a destination may fall behind before it loses the oldest.
const BUFFER: usize = 4096;
/// Between connection attempts to a destination that is down.
const RETRY: Duration = Duration::from_secs(5);
/// Bounds on a write (a peer that stops reading).
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// One log line as sent.
pub fn json_line(time: SystemTime, node: &str, service: &str, message: &str) -> String {
    let mut s = serde_json::json!({
        "time": humantime::format_rfc3339_nanos(time).to_string(),
        "node": node,
        "service": service,
        "message": message,
    })
    .to_string();
    s.push('\n');
    s
}

/// Where lines go for `cfg`: its destinations, and the logging add-on's
/// store when the add-on is on.
pub fn destinations(cfg: &MachineConfig) -> Vec<LogEndpoint> {
    let mut v: Vec<LogEndpoint> = cfg
        .machine
        .logging
        .destinations
        .iter()
        .map(|d: &LogDestination| d.endpoint.clone())
        .collect();
    if cfg.cluster.addons.logging.enabled {
        if let Some(store) = addons::logging::jsonlines_destination(cfg)
            .and_then(|url| url.parse::<LogEndpoint>().ok())
        {
            if !v.contains(&store) {
                v.push(store);
            }
        }
    }
    v
}

/// Starts shipping: the readers of every log, and a sender per destination
/// of the running config (following config changes).
pub fn start(node: &Arc<Node>) {
    let (tx, _) = broadcast::channel::<Arc<str>>(BUFFER);
    tokio::spawn(follow_services(Arc::downgrade(node), tx.clone()));
    tokio::spawn(follow_ring(
        node.logs.clone(),
        "machined".into(),
        Arc::downgrade(node),
        tx.clone(),
    ));
    tokio::spawn(follow_kernel(Arc::downgrade(node), tx.clone()));
    tokio::spawn(senders(Arc::downgrade(node), tx));
}

/// Follows every service the supervisor runs, as it registers.
async fn follow_services(node: Weak<Node>, tx: broadcast::Sender<Arc<str>>) {
    let Some(mut registered) = node.upgrade().map(|n| n.supervisor.subscribe_registered()) else {
        return;
    };
    let mut following = BTreeSet::new();
    loop {
        registered.borrow_and_update();
        let Some(n) = node.upgrade() else { return };
        let handles: Vec<Arc<ServiceHandle>> = n.supervisor.list();
        drop(n);
        for h in handles {
            if following.insert(h.id.clone()) {
                tokio::spawn(follow_ring(
                    h.logs.clone(),
                    h.id.clone(),
                    node.clone(),
                    tx.clone(),
                ));
            }
        }
        if registered.changed().await.is_err() {
            return;
        }
    }
}

/// Sends every line `ring` gets from now on, and what it holds already.
async fn follow_ring(
    ring: Arc<LogRing>,
    service: String,
    node: Weak<Node>,
    tx: broadcast::Sender<Arc<str>>,
) {
    let mut seq = 0;
    loop {
        let appended = ring.appended();
        let (lines, next) = ring.since(seq);
        seq = next;
        if !lines.is_empty() {
            let Some(host) = node.upgrade().map(|n| n.hostname()) else {
                return;
            };
            let now = SystemTime::now();
            for l in lines {
                let _ = tx.send(json_line(now, &host, &service, &l).into());
            }
        }
        appended.await;
    }
}

/// Sends the kernel log, from the oldest record the kernel holds.
async fn follow_kernel(node: Weak<Node>, tx: broadcast::Sender<Arc<str>>) {
    let mut kmsg = match host::dmesg::Kmsg::open(std::path::Path::new("/dev/kmsg"), true, false) {
        Ok(k) => k,
        Err(e) => {
            tracing::debug!(error = %e, "log shipping: no kernel log");
            return;
        }
    };
    while let Some(chunk) = kmsg.next_chunk().await {
        let Ok(chunk) = chunk else { continue };
        let Some(host) = node.upgrade().map(|n| n.hostname()) else {
            return;
        };
        let now = SystemTime::now();
        for l in chunk.lines() {
            let _ = tx.send(json_line(now, &host, "kernel", l).into());
        }
    }
}

/// Keeps one sender per destination of the running config.
async fn senders(node: Weak<Node>, tx: broadcast::Sender<Arc<str>>) {
    let Some(store) = node.upgrade().map(|n| n.store.clone()) else {
        return;
    };
    let mut watch = Watch::new(&store, Filter::kind(kind::MACHINE_CONFIG), false);
    let mut running: Vec<(LogEndpoint, tokio::task::JoinHandle<()>)> = Vec::new();
    loop {
        let want = node
            .upgrade()
            .and_then(|n| n.running_config())
            .map(|c| destinations(&c))
            .unwrap_or_default();
        running.retain(|(e, task)| {
            let keep = want.contains(e);
            if !keep {
                task.abort();
            }
            keep
        });
        for e in want {
            if !running.iter().any(|(r, _)| *r == e) {
                let task = tokio::spawn(send(e.clone(), tx.subscribe()));
                running.push((e, task));
            }
        }
        watch.next().await;
    }
}

/// Sends the lines to one destination for as long as it is wanted,
/// reconnecting when it goes away.
async fn send(to: LogEndpoint, mut rx: broadcast::Receiver<Arc<str>>) {
    let addr = format!("{}:{}", to.host, to.port);
    let mut lost: u64 = 0;
    let mut told_down = false;
    loop {
        let connected: Result<Box<dyn Sink>, std::io::Error> = if to.udp {
            udp(&addr).await.map(|s| Box::new(s) as Box<dyn Sink>)
        } else {
            tokio::time::timeout(WRITE_TIMEOUT, tokio::net::TcpStream::connect(&addr))
                .await
                .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()))
                .map(|s| Box::new(s) as Box<dyn Sink>)
        };
        let mut sink = match connected {
            Ok(s) => s,
            Err(e) => {
                if !told_down {
                    runtime::console!(
                        "logging: cannot reach {addr}: {e}; trying every {} s",
                        RETRY.as_secs()
                    );
                    told_down = true;
                }
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        if told_down || lost > 0 {
            runtime::console!("logging: sending to {addr} ({lost} lines lost meanwhile)");
            lost = 0;
        }
        loop {
            let line = match rx.recv().await {
                Ok(l) => l,
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    lost += n;
                    continue;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            };
            if let Err(e) = sink.put(&line).await {
                runtime::console!("logging: {addr}: {e}; reconnecting");
                lost += 1;
                told_down = true;
                break;
            }
        }
    }
}

async fn udp(addr: &str) -> std::io::Result<tokio::net::UdpSocket> {
    let target = tokio::net::lookup_host(addr)
        .await?
        .next()
        .ok_or_else(|| std::io::Error::other("no address"))?;
    let bind = if target.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    };
    let s = tokio::net::UdpSocket::bind(bind).await?;
    s.connect(target).await?;
    Ok(s)
}

/// A connected destination: TCP (a stream of lines) or UDP (a datagram a
/// line).
#[tonic::async_trait]
trait Sink: Send {
    async fn put(&mut self, line: &str) -> std::io::Result<()>;
}

#[tonic::async_trait]
impl Sink for tokio::net::TcpStream {
    async fn put(&mut self, line: &str) -> std::io::Result<()> {
        tokio::time::timeout(WRITE_TIMEOUT, self.write_all(line.as_bytes()))
            .await
            .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()))
    }
}

#[tonic::async_trait]
impl Sink for tokio::net::UdpSocket {
    async fn put(&mut self, line: &str) -> std::io::Result<()> {
        self.send(line.as_bytes()).await.map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncBufReadExt;

    #[test]
    fn lines_are_one_json_object_each() {
        let l = json_line(SystemTime::UNIX_EPOCH, "cp-1", "etcd", "said \"hi\"\n");
        assert!(l.ends_with('\n') && l.matches('\n').count() == 1, "{l:?}");
        let v: serde_json::Value = serde_json::from_str(&l).unwrap();
        assert_eq!(v["node"], "cp-1");
        assert_eq!(v["service"], "etcd");
        assert_eq!(v["message"], "said \"hi\"\n");
        assert_eq!(v["time"], "1970-01-01T00:00:00.000000000Z");
    }

    #[test]
    fn the_logging_add_on_s_store_is_a_destination_unless_turned_off() {
        let (mut cfg, _) = config::generate::sample_controlplane();
        let d = destinations(&cfg);
        assert_eq!(d.len(), 1);
        assert!(!d[0].udp && d[0].port == 5170, "{d:?}");
        cfg.machine.logging.destinations.push(LogDestination {
            endpoint: "udp://192.0.2.7:514".parse().unwrap(),
            format: Default::default(),
        });
        cfg.cluster.addons.logging.enabled = false;
        let d = destinations(&cfg);
        assert_eq!(d.len(), 1);
        assert!(d[0].udp && d[0].host == "192.0.2.7");
    }

    #[tokio::test]
    async fn a_destination_gets_every_line_in_order() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let to: LogEndpoint = format!("tcp://127.0.0.1:{port}").parse().unwrap();
        let (tx, _) = broadcast::channel::<Arc<str>>(BUFFER);
        let task = tokio::spawn(send(to, tx.subscribe()));
        let (conn, _) = listener.accept().await.unwrap();
        let mut lines = tokio::io::BufReader::new(conn).lines();
        for i in 0..3 {
            tx.send(json_line(SystemTime::now(), "n", "s", &format!("line {i}")).into())
                .unwrap();
        }
        for i in 0..3 {
            let l = lines.next_line().await.unwrap().unwrap();
            assert!(l.contains(&format!("line {i}")), "{l}");
        }
        task.abort();
    }
}
