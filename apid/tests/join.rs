//! The join port end to end on loopback: apid's :50001 in front of
//! machined's real Security service on a control plane, and the worker's
//! side (`machined::join::requester::request`) asking for its apid
//! certificate with the join token. A wrong token, a name that is not the
//! worker's and a flood are refused; a node without the OS CA key does not
//! serve the port at all.

mod common;

use std::net::{IpAddr, Ipv4Addr};

use common::*;
use config::spec::MachineType;
use machined::join::requester::{names, request, RequestError};

async fn start_join(settings_dir: &std::path::Path, machined: &std::path::Path) -> u16 {
    let api = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let join = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = join.local_addr().unwrap().port();
    let source = apid::settings::Source::open(settings_dir).unwrap();
    let sock = machined.to_path_buf();
    tokio::spawn(async move {
        apid::serve(
            api,
            source,
            sock,
            std::time::Duration::from_millis(100),
            Vec::new(),
            Some(join),
        )
        .await
    });
    port
}

fn worker_of(cp: &config::MachineConfig) -> config::MachineConfig {
    let mut w = cp.clone();
    w.machine.machine_type = MachineType::Worker;
    w.machine.ca = w.machine.ca.without_key();
    w
}

#[tokio::test]
async fn a_worker_gets_its_apid_certificate_with_the_token_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let apid_dir = dir.path().join("apid");
    let cp = generated("demo");
    write_secure(&apid_dir, &cp, "cp-1");
    let m = start_machined(dir.path(), "cp-1", Some(&cp));
    let port = start_join(&apid_dir, &m.socket).await;
    let endpoint = format!("127.0.0.1:{port}");
    let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let worker = worker_of(&cp);

    let (server, ca) = request(&worker, &endpoint, &names(lo, "worker-1"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(ca, cp.machine.ca.crt);
    assert!(config::pki::key_matches(&server.crt, &server.key));
    let events: Vec<String> = m
        .node
        .store
        .specs::<runtime::resources::specs::EventSpec>()
        .into_iter()
        .map(|(_, e)| e.message)
        .collect();
    assert!(
        events
            .iter()
            .any(|e| e.starts_with("issued an apid certificate to 127.0.0.1")),
        "{events:?}"
    );

    // A wrong token: refused, logged, nothing issued.
    let mut wrong = worker.clone();
    wrong.machine.token = "zzzzzz.zzzzzzzzzzzzzzzz".parse().unwrap();
    match request(&wrong, &endpoint, &names(lo, "worker-1")).await {
        Err(RequestError::Refused { message, .. }) => {
            assert!(message.contains("join token is wrong"), "{message}")
        }
        other => panic!("a wrong token was not refused: {other:?}"),
    }
    // Another machine's address: refused.
    let other = vec![config::types::SubjectAltName::Ip(
        "10.5.0.2".parse().unwrap(),
    )];
    match request(&worker, &endpoint, &other).await {
        Err(RequestError::Refused { message, .. }) => {
            assert!(message.contains("10.5.0.2"), "{message}")
        }
        other => panic!("another machine's address was certified: {other:?}"),
    }
    let events: Vec<String> = m
        .node
        .store
        .specs::<runtime::resources::specs::EventSpec>()
        .into_iter()
        .map(|(_, e)| e.message)
        .collect();
    assert!(
        events
            .iter()
            .any(|e| e == "refused 127.0.0.1: wrong join token"),
        "{events:?}"
    );

    // A flood from one address: at most six a minute are looked at.
    let mut exhausted = false;
    for _ in 0..8 {
        if let Err(RequestError::Refused { message, .. }) =
            request(&wrong, &endpoint, &names(lo, "worker-1")).await
        {
            exhausted |= message.contains("too many certificate requests");
        }
    }
    assert!(exhausted, "the flood was never slowed down");
}

#[tokio::test]
async fn a_node_without_the_ca_key_does_not_serve_the_join_port() {
    let dir = tempfile::tempdir().unwrap();
    let apid_dir = dir.path().join("apid");
    let cp = generated("demo");
    // Settings of a node that does not sign (as a joined worker's are).
    let mut s = machined::secure::secure_settings(&cp, "w", &[]).unwrap();
    s.join = false;
    machined::secure::ApidSettingsFile::new(std::path::PathBuf::from(&apid_dir), None)
        .write(&s)
        .unwrap();
    let m = start_machined(dir.path(), "w", Some(&worker_of(&cp)));
    let port = start_join(&apid_dir, &m.socket).await;
    let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let e = request(
        &worker_of(&cp),
        &format!("127.0.0.1:{port}"),
        &names(lo, "x"),
    )
    .await
    .unwrap_err();
    assert!(matches!(e, RequestError::Connect { .. }), "{e}");
}
