//! apid in front of machined's real API server: maintenance mode, the
//! first ApplyConfiguration that leaves it (machined writes apid's new
//! settings, apid reloads them), then mutual TLS with roles.

mod common;

use std::time::Duration;

use api::machine::*;
use common::*;
use config::pki::{self, Role};
use tonic::Code;

#[tokio::test]
async fn maintenance_apply_switches_apid_to_mutual_tls() {
    let dir = tempfile::tempdir().unwrap();
    let apid_dir = dir.path().join("apid");
    write_maintenance(&apid_dir);
    let m = start_machined(dir.path(), "maint-node", None);
    let port = start_apid(&apid_dir, &m.socket).await;

    let mut anon = client(port, Verify::Nothing, None).await.unwrap();
    let v = anon.version(()).await.unwrap().into_inner();
    assert!(v.maintenance);
    assert_eq!(v.hostname, this_host());
    // Disks is served in maintenance mode (whatever machined answers).
    let disks = anon.disks(()).await;
    assert!(
        disks
            .as_ref()
            .err()
            .is_none_or(|e| e.code() != Code::FailedPrecondition),
        "{disks:?}"
    );
    for e in [
        anon.reboot(RebootRequest::default()).await.unwrap_err(),
        anon.bootstrap(BootstrapRequest {}).await.unwrap_err(),
        anon.read_file(ReadFileRequest {
            path: "/etc/os-release".into(),
        })
        .await
        .unwrap_err(),
    ] {
        assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
        assert!(
            e.message()
                .starts_with("node is in maintenance mode: apply a config first"),
            "{}",
            e.message()
        );
    }
    let e = anon
        .version(with_meta((), &[("nodes", "10.5.0.9")]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");

    // An invalid config changes nothing.
    let cfg = generated("demo");
    let bad = cfg.render().replace("10.244.0.0/16", "10.244.0.0/33");
    let e = anon
        .apply_configuration(ApplyConfigurationRequest {
            data: bad.into_bytes(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message().contains("cluster.network.podSubnets[0]"),
        "{}",
        e.message()
    );
    assert!(!m.state.join("config.yaml").exists());

    // The first config: written to STATE, the node leaves maintenance mode.
    let r = anon
        .apply_configuration(ApplyConfigurationRequest {
            data: cfg.render().into_bytes(),
            mode: ApplyMode::NoReboot as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(r.summary.contains("left maintenance mode"), "{}", r.summary);
    assert_eq!(
        std::fs::read(m.state.join("config.yaml")).unwrap(),
        cfg.render().into_bytes()
    );
    assert!(!m.node.maintenance());
    assert_eq!(m.node.running_config(), Some(cfg.clone()));

    // apid picks its new settings up: the connection made in maintenance
    // mode is not served any more...
    assert!(
        eventually(5, || {
            let mut a = anon.clone();
            async move {
                a.version(())
                    .await
                    .is_err_and(|e| e.code() == Code::Unauthenticated)
            }
        })
        .await,
        "the maintenance connection is still served"
    );
    // ... a new one without a client certificate fails at the handshake ...
    let second = async {
        let mut c = client(port, Verify::Nothing, None).await?;
        c.apply_configuration(ApplyConfigurationRequest {
            data: cfg.render().into_bytes(),
            ..Default::default()
        })
        .await
        .map_err(|s| format!("{s:?}"))
    };
    let e = second.await.unwrap_err();
    assert!(!e.contains("PermissionDenied"), "refused too late: {e}");

    // ... and the OS CA's admin is served, the server verified by the CA.
    let ca = os_ca(&cfg);
    let admin = pki::issue_client_cert(&ca, "admin", Role::Admin, pki::LEAF_VALIDITY).unwrap();
    let mut c = client(port, Verify::Ca(ca.clone()), Some(&admin))
        .await
        .unwrap();
    let v = c.version(()).await.unwrap().into_inner();
    assert!(!v.maintenance);
}

#[tokio::test]
async fn roles_decide_every_call_and_certificates_are_checked_at_the_handshake() {
    let dir = tempfile::tempdir().unwrap();
    let apid_dir = dir.path().join("apid");
    let cfg = generated("demo");
    write_secure(&apid_dir, &cfg, "node-a");
    let mut m = start_machined(dir.path(), "node-a", Some(&cfg));
    let port = start_apid(&apid_dir, &m.socket).await;
    let ca = os_ca(&cfg);
    let cert = |role| pki::issue_client_cert(&ca, "t", role, pki::LEAF_VALIDITY).unwrap();
    let verify = Verify::Ca(ca.clone());

    let mut reader = client(port, verify.clone(), Some(&cert(Role::Reader)))
        .await
        .unwrap();
    assert_eq!(
        reader.version(()).await.unwrap().into_inner().hostname,
        this_host()
    );
    reader.service_list(()).await.unwrap();
    for (rpc, e) in [
        (
            "Reboot",
            reader.reboot(RebootRequest::default()).await.unwrap_err(),
        ),
        (
            "ReadFile",
            reader
                .read_file(ReadFileRequest {
                    path: "/proc/version".into(),
                })
                .await
                .unwrap_err(),
        ),
        (
            "ApplyConfiguration",
            reader
                .apply_configuration(ApplyConfigurationRequest {
                    data: cfg.render().into_bytes(),
                    ..Default::default()
                })
                .await
                .unwrap_err(),
        ),
        ("Kubeconfig", reader.kubeconfig(()).await.unwrap_err()),
    ] {
        assert_eq!(e.code(), Code::PermissionDenied, "{rpc}: {e:?}");
        assert!(
            e.message()
                .starts_with(&format!("role os:reader may not call {rpc}")),
            "{}",
            e.message()
        );
    }

    let mut operator = client(port, verify.clone(), Some(&cert(Role::Operator)))
        .await
        .unwrap();
    let e = operator
        .apply_configuration(ApplyConfigurationRequest {
            data: cfg.render().into_bytes(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    assert!(e.message().contains("needs os:admin"), "{}", e.message());
    operator.reboot(RebootRequest::default()).await.unwrap();
    assert_eq!(
        m.power.recv().await,
        Some(machined::shutdown::PowerAction::Reboot)
    );

    let mut admin = client(port, verify.clone(), Some(&cert(Role::Admin)))
        .await
        .unwrap();
    let r = admin
        .apply_configuration(ApplyConfigurationRequest {
            data: cfg.render().into_bytes(),
            dry_run: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        r.diff.is_empty() && r.summary.contains("nothing would change"),
        "{r:?}"
    );

    // A certificate without a role.
    let mut req = pki::LeafRequest::new("nobody", pki::Usage::Client);
    req.organizations = vec!["system:masters".into()];
    let mut nobody = client(port, verify.clone(), Some(&pki::issue(&ca, &req).unwrap()))
        .await
        .unwrap();
    let e = nobody.version(()).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    assert!(
        e.message().contains("carries no Cairn role"),
        "{}",
        e.message()
    );

    // Another CA's admin and no certificate at all never reach the table.
    let other = os_ca(&generated("other"));
    let stranger =
        pki::issue_client_cert(&other, "stranger", Role::Admin, pki::LEAF_VALIDITY).unwrap();
    for cert in [Some(&stranger), None] {
        let r = async {
            let mut c = client(port, verify.clone(), cert).await?;
            c.version(())
                .await
                .map(|_| ())
                .map_err(|s| format!("{s:?}"))
        }
        .await;
        let e = r.unwrap_err();
        assert!(!e.contains("PermissionDenied"), "{e}");
        // The TLS alert says why (TLS 1.3 delivers it with the first call).
        let alert = if cert.is_some() {
            "UnknownCA"
        } else {
            "CertificateRequired"
        };
        assert!(e.contains(alert), "{e}");
    }
    // apid still serves after the refused handshakes.
    admin.version(()).await.unwrap();
}

#[tokio::test]
async fn oversized_messages_are_refused_and_apid_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let apid_dir = dir.path().join("apid");
    let cfg = generated("demo");
    write_secure(&apid_dir, &cfg, "node-a");
    let m = start_machined(dir.path(), "node-a", Some(&cfg));
    let port = start_apid(&apid_dir, &m.socket).await;
    let ca = os_ca(&cfg);
    let admin = pki::issue_client_cert(&ca, "a", Role::Admin, pki::LEAF_VALIDITY).unwrap();
    let mut c = client(port, Verify::Ca(ca), Some(&admin)).await.unwrap();

    // 20 MB reaches machined, whose validation names the size.
    let garbage: Vec<u8> = (0..20_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let e = c
        .apply_configuration(ApplyConfigurationRequest {
            data: garbage,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("at most"), "{}", e.message());
    assert_eq!(m.node.running_config(), Some(cfg.clone()));

    // Over apid's 32 MiB limit for ApplyConfiguration: refused by apid.
    let e = c
        .apply_configuration(ApplyConfigurationRequest {
            data: vec![b'x'; 40 << 20],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    assert!(
        e.message().contains("apid accepts at most 33554432 bytes"),
        "{}",
        e.message()
    );

    // Other calls: 4 MiB.
    let e = c
        .read_file(ReadFileRequest {
            path: "x".repeat(5 << 20),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        c.version(()).await.unwrap().into_inner().hostname,
        this_host()
    );
}

#[tokio::test]
async fn new_certificates_apply_to_new_connections_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let apid_dir = dir.path().join("apid");
    let cfg = generated("demo");
    write_secure(&apid_dir, &cfg, "node-a");
    let m = start_machined(dir.path(), "node-a", Some(&cfg));
    let port = start_apid(&apid_dir, &m.socket).await;
    let ca = os_ca(&cfg);
    let admin = pki::issue_client_cert(&ca, "a", Role::Admin, pki::LEAF_VALIDITY).unwrap();
    let first = served_certificate(port, &admin).await;
    let mut kept = client(port, Verify::Ca(ca.clone()), Some(&admin))
        .await
        .unwrap();
    kept.version(()).await.unwrap();

    // machined issues a new server certificate from the same CA (e.g.
    // new certSans): new connections get it, open ones carry on.
    write_secure(&apid_dir, &cfg, "node-a-renamed");
    assert!(
        eventually(5, || {
            let admin = admin.clone();
            let first = first.clone();
            async move { served_certificate(port, &admin).await != first }
        })
        .await,
        "apid still presents the old certificate"
    );
    kept.version(()).await.unwrap();
}

/// The load test kept hundreds of half-open connections from one address,
/// and with one global limit on handshakes (each held up to the 10 s
/// handshake timeout) nobody else could connect. Handshakes now take turns
/// per client address, and connections have a share per address.
#[tokio::test]
async fn a_flood_of_half_open_connections_from_one_address_keeps_nobody_else_out() {
    let dir = tempfile::tempdir().unwrap();
    let apid_dir = dir.path().join("apid");
    let cfg = generated("demo");
    write_secure(&apid_dir, &cfg, "node-a");
    let port = start_apid(&apid_dir, &start_echo(dir.path(), "node-a")).await;
    let mut held = Vec::new();
    for _ in 0..300 {
        // Connections over the address's share are closed by apid at once.
        if let Ok(s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
            held.push(s);
        }
    }
    let ca = os_ca(&cfg);
    let admin = pki::issue_client_cert(&ca, "a", Role::Admin, pki::LEAF_VALIDITY).unwrap();
    let started = std::time::Instant::now();
    let mut c = client_from(
        std::net::Ipv4Addr::new(127, 0, 0, 2),
        port,
        Verify::Ca(ca.clone()),
        Some(&admin),
    )
    .await
    .unwrap();
    c.version(()).await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "another address waited {:?} behind the flood",
        started.elapsed()
    );
    // The flooding address itself takes its turns: a burst of its own
    // real clients still gets in (queued, not refused), once the
    // half-open ones are gone.
    drop(held);
    // apid notices the closed ones as their turns come.
    assert!(
        eventually(5, || {
            let (ca, admin) = (ca.clone(), admin.clone());
            async move { client(port, Verify::Ca(ca), Some(&admin)).await.is_ok() }
        })
        .await
    );
    let burst = (0..40).map(|_| {
        let (ca, admin) = (ca.clone(), admin.clone());
        tokio::spawn(async move {
            let mut c = client(port, Verify::Ca(ca), Some(&admin)).await?;
            c.version(()).await.map_err(|e| e.to_string())?;
            Ok::<_, String>(())
        })
    });
    for r in futures::future::join_all(burst).await {
        r.unwrap().unwrap();
    }
}
