use std::net::TcpListener;

use futures::StreamExt as _;

use super::*;
use config::generate::sample_controlplane as generated;
use runtime::supervisor::{Health, Supervisor};

const HOST_ETCD: &str = "/usr/bin/etcd";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn node() -> Runtime {
    let node = Runtime::new(Supervisor::new());
    node.set_hostname("etcd-test");
    node
}

/// etcd's own user, as on a node, when the tests run as root (they do in
/// CI); the directory above the test's files is then opened to it.
fn etcd_user(root: &Path) -> Option<(u32, u32)> {
    use std::os::unix::fs::PermissionsExt as _;
    if !nix::unistd::Uid::effective().is_root() {
        return None;
    }
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755)).unwrap();
    Some((k8s::etcd::UID, k8s::etcd::GID))
}

fn layout(root: &Path) -> EtcdPaths {
    let user = etcd_user(root);
    let mut secrets = k8s_pki::SecretDirs::under(&root.join("secrets"));
    secrets.etcd_owner = user;
    if user.is_some() {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::create_dir_all(root.join("secrets")).unwrap();
        std::fs::set_permissions(root.join("secrets"), std::fs::Permissions::from_mode(0o711))
            .unwrap();
    }
    EtcdPaths {
        binary: HOST_ETCD.into(),
        lib_dir: None,
        data_dir: root.join("etcd-data"),
        secrets,
        client_port: free_port(),
        peer_port: free_port(),
        time_sync_timeout: Duration::ZERO,
        cgroup: None,
        user,
    }
}

#[test]
fn flags_are_tls_everywhere_and_extra_args_override() {
    let (mut cfg, _) = generated();
    cfg.cluster.etcd.extra_args.insert(
        "snapshot-count".parse().unwrap(),
        config::types::ScalarString::new("500"),
    );
    let facts = NodeFacts {
        hostname: "cp-1".into(),
        addresses: vec!["fd00::5".parse().unwrap(), "10.5.0.2".parse().unwrap()],
    };
    let s = EtcdSettings::for_node(&cfg, &facts);
    let args = s.args();
    for want in [
        "--name=cp-1",
        "--data-dir=/var/lib/etcd",
        "--listen-client-urls=https://0.0.0.0:2379",
        "--advertise-client-urls=https://10.5.0.2:2379",
        "--initial-cluster=cp-1=https://10.5.0.2:2380",
        "--initial-cluster-state=new",
        "--client-cert-auth=true",
        "--peer-client-cert-auth=true",
        "--trusted-ca-file=/system/secrets/etcd/ca.crt",
        "--cert-file=/system/secrets/etcd/server.crt",
        "--peer-key-file=/system/secrets/etcd/peer.key",
        "--snapshot-count=500",
    ] {
        assert!(args.contains(&want.to_string()), "{want} not in {args:?}");
    }
    assert_eq!(
        args.iter()
            .filter(|a| a.starts_with("--snapshot-count"))
            .count(),
        1
    );
    let v6 = EtcdSettings::for_node(
        &cfg,
        &NodeFacts {
            hostname: "x".into(),
            addresses: vec!["fd00::5".parse().unwrap()],
        },
    );
    assert!(v6
        .args()
        .contains(&"--advertise-client-urls=https://[fd00::5]:2379".to_string()));
    assert!(v6
        .args()
        .contains(&"--listen-peer-urls=https://[::]:2380".to_string()));
}

#[tokio::test]
async fn bootstrap_refuses_without_a_config_and_on_workers() {
    let tmp = tempfile::tempdir().unwrap();
    let n = node();
    let l = layout(tmp.path());
    assert!(matches!(
        bootstrap_in(&n, &l).await,
        Err(EtcdError::NoConfig)
    ));
    let (mut cfg, _) = generated();
    cfg.machine.machine_type = MachineType::Worker;
    n.set_running_config(cfg, "test");
    assert!(matches!(
        bootstrap_in(&n, &l).await,
        Err(EtcdError::NotControlPlane)
    ));
    assert!(n.supervisor.handle(SERVICE_ID).is_none());
}

/// With the clock not synchronized, Bootstrap returns at once; etcd is
/// registered (so a second Bootstrap is refused) and its PKI is issued
/// only once the clock is synchronized.
#[tokio::test]
async fn a_bootstrap_waiting_for_the_clock_is_registered_and_issues_the_pki_once_synced() {
    use host::resources::time::TimeStatusSpec;
    runtime::reaper::start();
    let tmp = tempfile::tempdir().unwrap();
    let mut l = layout(tmp.path());
    // Nothing of etcd's runs in this test: the process is `true`.
    l.binary = "/bin/true".into();
    l.time_sync_timeout = Duration::from_secs(60);
    let n = node();
    let (cfg, _) = generated();
    n.set_running_config(cfg, "test");

    tokio::time::timeout(Duration::from_secs(5), bootstrap_in(&n, &l))
        .await
        .expect("Bootstrap does not wait for the clock")
        .unwrap();
    let etcd = n.supervisor.handle(SERVICE_ID).expect("etcd is registered");
    assert!(matches!(
        bootstrap_in(&n, &l).await,
        Err(EtcdError::AlreadyRunning)
    ));
    let server_cert = l.secrets.etcd.join("server.crt");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !server_cert.exists(),
        "PKI issued before the clock is synced"
    );
    assert_eq!(etcd.snapshot().state, State::Preparing);

    let time = n
        .store
        .writer("time", &[runtime::resources::kind::TIME_STATUS])
        .unwrap();
    time.put(
        TimeStatusSpec::ID,
        TimeStatusSpec {
            synced: true,
            ..Default::default()
        },
    )
    .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !server_cert.exists() {
        assert!(tokio::time::Instant::now() < deadline, "no PKI once synced");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    n.supervisor.stop(SERVICE_ID).await.unwrap();
}

async fn wait_healthy(h: &ServiceHandle, within: Duration) {
    let mut rx = h.status.subscribe();
    let ok = tokio::time::timeout(within, rx.wait_for(|s| s.health == Health::Ok)).await;
    if ok.is_err() {
        let s = h.snapshot();
        let (lines, _) = h.logs.tail(Some(40));
        panic!(
            "etcd not healthy within {within:?}: {:?} {} {}\n{}",
            s.state,
            s.message,
            s.health_message,
            lines.join("\n")
        );
    }
}

/// The real etcd on the host, with certificates from our PKI: bootstrap
/// once, refuse a second time, list the member, stream a snapshot, and
/// refuse bootstrap again on a "rebooted" node whose data has a member.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_etcd_bootstraps_once_lists_members_and_snapshots() {
    if !Path::new(HOST_ETCD).exists() {
        eprintln!("SKIP: {HOST_ETCD} is not installed (apt-get install etcd-server; images/install-deps.sh does)");
        return;
    }
    runtime::reaper::start();
    let tmp = tempfile::tempdir().unwrap();
    let l = layout(tmp.path());
    let n = node();
    let (cfg, _) = generated();
    n.set_running_config(cfg.clone(), "test");

    bootstrap_in(&n, &l).await.unwrap();
    let h = n.supervisor.handle(SERVICE_ID).unwrap();
    wait_healthy(&h, Duration::from_secs(60)).await;
    if let Some((uid, _)) = l.user {
        // Least privilege: its own user, no capabilities, its data its own.
        let pid = h.snapshot().pid.unwrap();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|v| v.split_whitespace().next().unwrap_or_default().to_string())
                .unwrap()
        };
        assert_eq!(field("Uid:"), uid.to_string(), "{status}");
        assert_eq!(field("CapEff:"), "0000000000000000", "{status}");
        assert_eq!(field("NoNewPrivs:"), "1", "{status}");
        use std::os::unix::fs::MetadataExt as _;
        let member = std::fs::metadata(l.data_dir.join("member")).unwrap();
        assert_eq!(member.uid(), uid);
        let key = std::fs::metadata(l.secrets.etcd.join("server.key")).unwrap();
        assert_eq!((key.uid(), key.mode() & 0o777), (uid, 0o600));
    }
    let again = bootstrap_in(&n, &l).await.unwrap_err();
    assert!(
        matches!(
            again,
            EtcdError::AlreadyBootstrapped(_) | EtcdError::AlreadyRunning
        ),
        "{again}"
    );
    assert!(
        again.to_string().contains("already bootstrapped"),
        "{again}"
    );
    assert!(bootstrapped(&l.data_dir));

    let endpoint = format!("https://127.0.0.1:{}", l.client_port);
    let files = client::ClientFiles::in_dir(&l.secrets.etcd);

    // machined is PID 1: a health check every 10 s must not leave tasks or
    // memory behind (each one connects afresh).
    let rss = || {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .unwrap()
            .to_string();
        line.split_whitespace()
            .nth(1)
            .unwrap()
            .parse::<u64>()
            .unwrap()
    };
    client::health(&endpoint, &files).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (tasks_before, rss_before) = (
        tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks(),
        rss(),
    );
    for _ in 0..100 {
        client::health(&endpoint, &files).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (tasks_after, rss_after) = (
        tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks(),
        rss(),
    );
    eprintln!("100 health checks: tasks {tasks_before} -> {tasks_after}, RSS {rss_before} -> {rss_after} KiB");
    assert!(
        tasks_after <= tasks_before + 2,
        "health checks leak tasks: {tasks_before} -> {tasks_after}"
    );

    let members = client::members(&endpoint, &files).await.unwrap();
    assert_eq!(members.len(), 1);
    assert_eq!(members[0].hostname, "etcd-test");
    assert_eq!(
        members[0].client_urls,
        vec![format!("https://127.0.0.1:{}", l.client_port)]
    );
    assert!(!members[0].is_learner);

    // Write a key so the snapshot carries it.
    let mut c = client::connect(&endpoint, &files, Some(Duration::from_secs(5)))
        .await
        .unwrap();
    c.put("cairn-test-key", "cairn-test-value", None)
        .await
        .unwrap();
    let mut chunks = client::snapshot(&endpoint, &files).await.unwrap();
    let mut snap = Vec::new();
    while let Some(c) = chunks.next().await {
        snap.extend(c.unwrap());
    }
    assert!(snap.len() > 4096, "snapshot of {} bytes", snap.len());
    assert!(
        snap.windows(16).any(|w| w == b"cairn-test-value"),
        "the key is in the snapshot"
    );
    // etcd appends the SHA-256 of the database; cairnctl checks it.
    use sha2::Digest as _;
    let (db, sum) = snap.split_at(snap.len() - 32);
    assert_eq!(sha2::Sha256::digest(db).as_slice(), sum);

    // A client without a certificate from the etcd CA is refused.
    let foreign = tempfile::tempdir().unwrap();
    let other = config::pki::create_etcd_ca().unwrap();
    let crt = config::pki::issue(
        &other,
        &config::pki::LeafRequest::new("x", config::pki::Usage::Client),
    )
    .unwrap();
    std::fs::copy(&files.ca, foreign.path().join("ca.crt")).unwrap();
    std::fs::write(foreign.path().join("client.crt"), crt.crt.pem()).unwrap();
    std::fs::write(foreign.path().join("client.key"), crt.key.pem()).unwrap();
    assert!(
        client::members(&endpoint, &client::ClientFiles::in_dir(foreign.path()))
            .await
            .is_err()
    );

    n.supervisor.stop(SERVICE_ID).await.unwrap();

    // After a reboot: a new supervisor, the data is still there.
    let rebooted = node();
    rebooted.set_running_config(cfg.clone(), "test");
    let err = bootstrap_in(&rebooted, &l).await.unwrap_err();
    assert!(matches!(err, EtcdError::AlreadyBootstrapped(_)), "{err}");
    // The boot path starts it from its data, and it keeps the key.
    let h = start_in(&rebooted, &cfg, &NodeFacts::of(&rebooted), &l)
        .await
        .unwrap();
    wait_healthy(&h, Duration::from_secs(60)).await;
    let mut c = client::connect(&endpoint, &files, Some(Duration::from_secs(5)))
        .await
        .unwrap();
    let got = c.get("cairn-test-key", None).await.unwrap();
    assert_eq!(got.kvs()[0].value(), b"cairn-test-value");
    rebooted.supervisor.stop(SERVICE_ID).await.unwrap();
}
