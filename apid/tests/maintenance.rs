//! apid in maintenance mode against machined's real API server on a unix
//! socket: TLS without client certificates, Version forwarded, everything
//! else refused with a clear status.

use std::sync::Arc;
use std::time::Duration;

use api::machine::machine_service_client::MachineServiceClient;
use api::machine::{ApplyConfigurationRequest, BootstrapRequest, RebootRequest};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

struct Cert {
    cert_pem: String,
    key_pem: String,
}

fn localhost_cert() -> Cert {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params
        .subject_alt_names
        .push(rcgen::SanType::IpAddress("127.0.0.1".parse().unwrap()));
    let cert = params.self_signed(&key).unwrap();
    Cert {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    }
}

async fn tls_client(port: u16, ca_pem: &str) -> MachineServiceClient<Channel> {
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca_pem))
        .domain_name("localhost");
    let mut last = None;
    for _ in 0..50 {
        match Endpoint::from_shared(format!("https://127.0.0.1:{port}"))
            .unwrap()
            .tls_config(tls.clone())
            .unwrap()
            .connect()
            .await
        {
            Ok(ch) => return MachineServiceClient::new(ch),
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("cannot connect to apid: {last:?}");
}

#[tokio::test]
async fn forwards_version_and_refuses_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("machined.sock");

    // machined's API server with a node in maintenance mode.
    let (tx, _rx) = tokio::sync::mpsc::channel(1);
    let node = Arc::new(machined::state::Node::new(
        machined::cmdline::Cmdline::parse("cairn.slot=A"),
        machined::supervisor::Supervisor::new(),
        Arc::new(machined::supervisor::logbuf::LogRing::new(1024)),
        tx,
    ));
    node.set_hostname("maint-node");
    node.set_maintenance(true);
    let listener = machined::api::bind(&sock, None).unwrap();
    let p = sock.clone();
    tokio::spawn(async move { machined::api::serve(node, listener, &p).await });

    let cert = localhost_cert();
    let tcp = apid::listen("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let port = tcp.local_addr().unwrap().port();
    let (c, k) = (cert.cert_pem.clone(), cert.key_pem.clone());
    tokio::spawn(
        async move { apid::serve_maintenance(tcp, c.as_bytes(), k.as_bytes(), sock).await },
    );

    let mut client = tls_client(port, &cert.cert_pem).await;
    let v = client.version(()).await.unwrap().into_inner();
    assert_eq!(v.hostname, "maint-node");
    assert!(v.maintenance);
    assert_eq!(v.booted_slot, "A");
    assert_eq!(v.version, config::version::VERSION);

    let e = client.bootstrap(BootstrapRequest {}).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition);
    assert!(
        e.message().contains("not available in maintenance mode"),
        "{}",
        e.message()
    );
    let e = client.reboot(RebootRequest::default()).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition);

    let e = client
        .apply_configuration(ApplyConfigurationRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unimplemented);
    assert!(
        e.message().contains("ApplyConfiguration"),
        "{}",
        e.message()
    );
}

/// The real binary: certificate and key from inherited descriptors,
/// privileges dropped, Unavailable with a clear message when machined is
/// not there.
#[tokio::test]
async fn binary_reads_descriptors_and_reports_missing_machined() {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;

    let dir = tempfile::tempdir().unwrap();
    let cert = localhost_cert();
    std::fs::write(dir.path().join("cert.pem"), &cert.cert_pem).unwrap();
    std::fs::write(dir.path().join("key.pem"), &cert.key_pem).unwrap();
    let cf = std::fs::File::open(dir.path().join("cert.pem")).unwrap();
    let kf = std::fs::File::open(dir.path().join("key.pem")).unwrap();
    let (cfd, kfd) = (cf.as_raw_fd(), kf.as_raw_fd());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();

    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_apid"));
    cmd.args([
        "--maintenance",
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--machined-socket",
        dir.path().join("absent.sock").to_str().unwrap(),
        "--cert-fd",
        "7",
        "--key-fd",
        "8",
    ]);
    // SAFETY: dup2 on integers in the child before exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(cfd, 7) < 0 || libc::dup2(kfd, 8) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();

    let mut client = tls_client(port, &cert.cert_pem).await;
    let e = client.version(()).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unavailable, "{e:?}");
    assert!(
        e.message().contains("apid cannot reach machined"),
        "{}",
        e.message()
    );

    // It dropped every capability although started as root.
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap();
    let cap_eff = status.lines().find(|l| l.starts_with("CapEff:")).unwrap();
    assert!(cap_eff.ends_with("0000000000000000"), "{cap_eff}");
    let nnp = status
        .lines()
        .find(|l| l.starts_with("NoNewPrivs:"))
        .unwrap();
    assert!(nnp.ends_with('1'), "{nnp}");

    child.kill().unwrap();
    child.wait().unwrap();
}
