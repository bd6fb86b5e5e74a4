//! The time controller against a real SNTP responder on the loopback,
//! with a clock that records corrections instead of making them.

use std::sync::Arc;
use std::time::Duration;

use super::*;
use clock::RecordingClock;
use responder::Responder;
use runtime::supervisor::Supervisor;
use runtime::Runtime;

fn node() -> Runtime {
    Runtime::new(Supervisor::new())
}

fn with_time(edit: impl FnOnce(&mut config::spec::Time)) -> config::MachineConfig {
    let (mut cfg, _) = config::generate::sample_controlplane();
    edit(&mut cfg.machine.time);
    cfg
}

fn start(node: &Runtime, port: u16) -> Arc<RecordingClock> {
    let clock = Arc::new(RecordingClock::default());
    let c = TimeController {
        clock: clock.clone(),
        port,
    };
    runtime::resources::controller::spawn(&node.store, c).unwrap();
    clock
}

fn status(node: &Runtime) -> TimeStatusSpec {
    node.store
        .spec::<TimeStatusSpec>(TimeStatusSpec::ID)
        .unwrap_or_default()
}

#[tokio::test]
async fn steps_to_the_servers_time_and_turns_synced() {
    let server =
        Responder::start("127.0.0.1:0".parse().unwrap(), Duration::from_secs(5), true).unwrap();
    let node = node();
    let clock = start(&node, server.addr.port());
    // No config yet: nothing is asked, nothing is synced.
    assert!(!wait_synced(&node, Duration::from_millis(300)).await);
    assert_eq!(status(&node).message, "waiting for a machine config");

    let cfg = with_time(|t| t.servers = vec!["127.0.0.1".parse().unwrap()]);
    node.set_running_config(cfg, "test");
    assert!(
        wait_synced(&node, Duration::from_secs(10)).await,
        "{:?}",
        status(&node)
    );
    let s = status(&node);
    assert_eq!(
        (s.server.as_str(), s.last_correction.as_str()),
        ("127.0.0.1", "step")
    );
    assert!((s.offset_seconds - 5.0).abs() < 0.5, "{s:?}");
    let c = clock.corrections.lock().unwrap().clone();
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].0, Correction::Step);
    assert!((c[0].1 - 5_000_000).abs() < 500_000, "{c:?}");
    let servers = node
        .store
        .spec::<TimeServersSpec>(TimeServersSpec::ID)
        .unwrap();
    assert_eq!(servers.servers, vec!["127.0.0.1"]);
}

#[tokio::test]
async fn no_answer_is_not_synced_and_disabled_needs_no_wait() {
    // A port nobody listens on: the query fails.
    let unused = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = unused.local_addr().unwrap().port();
    drop(unused);
    let node = node();
    let _clock = start(&node, port);
    node.set_running_config(
        with_time(|t| t.servers = vec!["127.0.0.1".parse().unwrap()]),
        "test",
    );
    assert!(!wait_synced(&node, Duration::from_secs(2)).await);
    // The query times out after QUERY_TIMEOUT; then the status says why.
    for _ in 0..100 {
        if !status(&node).message.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let s = status(&node);
    assert!(!s.synced);
    assert!(s.message.starts_with("no time server answered"), "{s:?}");

    node.set_running_config(with_time(|t| t.disabled = true), "test");
    assert!(wait_synced(&node, Duration::from_secs(5)).await);
    let s = status(&node);
    assert!(s.disabled && !s.synced, "{s:?}");
    assert!(node
        .store
        .spec::<TimeServersSpec>(TimeServersSpec::ID)
        .unwrap()
        .servers
        .is_empty());
}

#[test]
fn responder_answers_only_whole_requests() {
    assert!(responder::reply(&[0u8; 10], SystemTime::now()).is_none());
    let mut req = [0u8; 48];
    req[0] = 0x23; // version 4, client
    req[40..48].copy_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
    let r = responder::reply(&req, SystemTime::now()).unwrap();
    assert_eq!(r[0] & 0x7, 4);
    assert_eq!(&r[24..32], &[1, 2, 3, 4, 5, 6, 7, 8]);
}
