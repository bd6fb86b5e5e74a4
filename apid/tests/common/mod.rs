//! Shared pieces of apid's tests: machined's real API server on a temp
//! unix socket, a small fake machine service that echoes the metadata apid
//! sends, apid itself on 127.0.0.1, and TLS clients with or without a
//! client certificate.

#![allow(dead_code)]

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use api::machine::machine_service_client::MachineServiceClient;
use api::machine::{ServiceInfo, ServiceListResponse};
use bytes::{BufMut, Bytes, BytesMut};
use config::pki::CertifiedKey;
use config::MachineConfig;
use http_body_util::StreamBody;
use hyper_util::rt::TokioIo;
use prost::Message as _;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tonic::transport::{Channel, Endpoint};

/// A generated control-plane config.
pub fn generated(name: &str) -> MachineConfig {
    let secrets = config::generate::generate_secrets().unwrap();
    with_secrets(name, secrets)
}

pub fn with_secrets(name: &str, secrets: config::SecretsBundle) -> MachineConfig {
    let input = config::generate::GenerateInput::new(
        name.parse().unwrap(),
        "https://10.5.0.2:6443".parse().unwrap(),
        secrets,
    );
    config::generate::generate_configs(&input).unwrap().0
}

pub fn os_ca(config: &MachineConfig) -> CertifiedKey {
    config.machine.ca.certified_key().unwrap()
}

/// machined's real API server, with a configurator writing STATE under
/// `dir/state` and apid's settings to `dir/apid`.
pub struct Machined {
    pub socket: PathBuf,
    pub node: Arc<machined::state::Node>,
    pub power: tokio::sync::mpsc::Receiver<machined::shutdown::PowerAction>,
    pub state: PathBuf,
}

pub fn start_machined(dir: &Path, hostname: &str, running: Option<&MachineConfig>) -> Machined {
    let socket = dir.join("machined.sock");
    let state = dir.join("state");
    std::fs::create_dir_all(&state).unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let node = Arc::new(machined::state::Node::new(
        host::cmdline::Cmdline::parse("cairn.slot=A"),
        runtime::supervisor::Supervisor::new(),
        Arc::new(runtime::supervisor::logbuf::LogRing::new(1024)),
        tx,
    ));
    node.set_hostname(hostname);
    match running {
        Some(c) => {
            node.set_running_config(c.clone(), "test");
            node.set_maintenance(false);
        }
        None => node.set_maintenance(true),
    }
    let roots = machined::apply::live::Roots {
        root: dir.join("root"),
        set_hostname: false,
    };
    let effects = machined::apply::node::NodeEffects::for_test(&node, roots, dir.join("apid"));
    let files = machined::apply::store::StateFiles::new(&state);
    let configurator = machined::apply::Configurator::new(
        Some(files),
        config::validate::Mode::Cloud,
        effects,
        node.lifecycle.clone(),
    );
    let _ = node.configurator.set(configurator);
    let listener = machined::api::bind(&socket, None).unwrap();
    let (n, p) = (node.clone(), socket.clone());
    tokio::spawn(async move { machined::api::serve(n, listener, &p).await });
    Machined {
        socket,
        node,
        power: rx,
        state,
    }
}

/// A stand-in for machined that answers ServiceList with what apid told
/// it: one service whose `id` is `<name> <x-cairn-role or "-">` and whose
/// `state` is the `nodes` metadata it saw (or "-"); Logs with one message
/// and a stream that stays open; every other method is Unimplemented.
/// (Not Version: apid answers that itself.)
pub fn start_echo(dir: &Path, name: &str) -> PathBuf {
    let socket = dir.join(format!("{name}.sock"));
    let listener = tokio::net::UnixListener::bind(&socket).unwrap();
    let name = name.to_string();
    let svc = tower::service_fn(move |req: http::Request<tonic::body::Body>| {
        let name = name.clone();
        async move {
            let header = |k: &str| {
                req.headers()
                    .get(k)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-")
                    .to_string()
            };
            if req.uri().path() == "/cairn.machine.v1.MachineService/Logs" {
                // One message, then the stream stays open (a `logs -f`).
                let msg = api::machine::Data {
                    bytes: b"first line\n".to_vec(),
                }
                .encode_to_vec();
                let mut framed = BytesMut::with_capacity(msg.len() + 5);
                framed.put_u8(0);
                framed.put_u32(msg.len() as u32);
                framed.put_slice(&msg);
                let first = futures::stream::iter(vec![Ok::<_, tonic::Status>(
                    http_body::Frame::data(Bytes::from(framed)),
                )]);
                let frames = futures::StreamExt::chain(first, futures::stream::pending());
                let resp = http::Response::builder()
                    .header("content-type", "application/grpc")
                    .body(tonic::body::Body::new(StreamBody::new(frames)))
                    .unwrap();
                return Ok(resp);
            }
            if req.uri().path() != "/cairn.machine.v1.MachineService/ServiceList" {
                return Ok::<_, Infallible>(
                    tonic::Status::unimplemented("echo").into_http::<tonic::body::Body>(),
                );
            }
            let reply = ServiceListResponse {
                services: vec![ServiceInfo {
                    id: format!("{name} {}", header("x-cairn-role")),
                    state: header("nodes"),
                    ..Default::default()
                }],
            };
            let msg = reply.encode_to_vec();
            let mut framed = BytesMut::with_capacity(msg.len() + 5);
            framed.put_u8(0);
            framed.put_u32(msg.len() as u32);
            framed.put_slice(&msg);
            let mut trailers = http::HeaderMap::new();
            trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
            let frames = futures::stream::iter(vec![
                Ok::<_, tonic::Status>(http_body::Frame::data(Bytes::from(framed))),
                Ok(http_body::Frame::trailers(trailers)),
            ]);
            let body = tonic::body::Body::new(StreamBody::new(frames));
            let resp = http::Response::builder()
                .header("content-type", "application/grpc")
                .body(body)
                .unwrap();
            Ok(resp)
        }
    });
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .serve_with_incoming(
                svc,
                tokio_stream::wrappers::UnixListenerStream::new(listener),
            )
            .await
    });
    socket
}

/// apid on 127.0.0.1 (a free port), settings from `settings_dir`,
/// reloaded every 100 ms.
pub async fn start_apid(settings_dir: &Path, machined: &Path) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    serve_apid(listener, settings_dir, machined, &[])
}

/// apid on `listener`, which may forward to `members` besides itself.
pub fn serve_apid(
    listener: tokio::net::TcpListener,
    settings_dir: &Path,
    machined: &Path,
    members: &[&str],
) -> u16 {
    let port = listener.local_addr().unwrap().port();
    let source = apid::settings::Source::open(settings_dir).unwrap();
    let sock = machined.to_path_buf();
    let members = members
        .iter()
        .map(|m| apid::peers::NodeAddr::parse(m).unwrap())
        .collect();
    tokio::spawn(async move {
        apid::serve(
            listener,
            source,
            sock,
            Duration::from_millis(100),
            members,
            None,
        )
        .await
    });
    port
}

/// Writes apid settings for mutual TLS with `config`'s OS CA.
pub fn write_secure(dir: &Path, config: &MachineConfig, hostname: &str) {
    let s = machined::secure::secure_settings(config, hostname, &[]).unwrap();
    machined::secure::ApidSettingsFile::new(std::path::PathBuf::from(dir), None)
        .write(&s)
        .unwrap();
}

/// Writes maintenance-mode settings (self-signed certificate).
pub fn write_maintenance(dir: &Path) -> String {
    let cert = machined::maintenance::generate_certificate("maint", &[]).unwrap();
    machined::maintenance::install_settings(
        &cert,
        &machined::secure::ApidSettingsFile::new(std::path::PathBuf::from(dir), None),
    )
    .unwrap();
    cert.fingerprint
}

/// How the client checks apid's certificate.
#[derive(Clone)]
pub enum Verify {
    /// Against this CA, for the name 127.0.0.1.
    Ca(CertifiedKey),
    /// Not at all (maintenance mode has nothing to check against).
    Nothing,
}

/// A client of apid on `127.0.0.1:port`. Connection errors (handshake
/// included) come back as text.
pub async fn client(
    port: u16,
    verify: Verify,
    cert: Option<&CertifiedKey>,
) -> Result<MachineServiceClient<Channel>, String> {
    client_from(std::net::Ipv4Addr::LOCALHOST, port, verify, cert).await
}

/// [`client`] connecting from `source` (a loopback address).
pub async fn client_from(
    source: std::net::Ipv4Addr,
    port: u16,
    verify: Verify,
    cert: Option<&CertifiedKey>,
) -> Result<MachineServiceClient<Channel>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = match &verify {
        Verify::Ca(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            roots
                .add(CertificateDer::from(ca.crt.der().to_vec()))
                .unwrap();
            builder.with_root_certificates(roots)
        }
        Verify::Nothing => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(config::tls::AcceptAnyServerCert::new(
                provider,
            ))),
    };
    let mut tls = match cert {
        Some(c) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from(c.crt.der().to_vec())],
                PrivateKeyDer::from_pem_slice(c.key.pem().as_bytes()).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    tls.alpn_protocols = vec![b"h2".to_vec()];
    let tls = tokio_rustls::TlsConnector::from(Arc::new(tls));
    let connector = tower::service_fn(move |_: tonic::transport::Uri| {
        let tls = tls.clone();
        async move {
            let socket = tokio::net::TcpSocket::new_v4()?;
            socket.bind((source, 0).into())?;
            let tcp = socket
                .connect((std::net::Ipv4Addr::LOCALHOST, port).into())
                .await?;
            let name = ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into());
            Ok::<_, std::io::Error>(TokioIo::new(tls.connect(name, tcp).await?))
        }
    });
    let channel = Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(30))
        .connect_with_connector(connector)
        .await
        .map_err(|e| error_chain(&e))?;
    Ok(MachineServiceClient::new(channel).max_decoding_message_size(64 << 20))
}

pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

/// A request with metadata.
pub fn with_meta<T>(msg: T, meta: &[(&'static str, &str)]) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    for (k, v) in meta {
        r.metadata_mut().append(*k, v.parse().unwrap());
    }
    r
}

/// Polls `f` until it returns true (every 50 ms, at most `secs`).
pub async fn eventually<F, Fut>(secs: u64, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while tokio::time::Instant::now() < deadline {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// The certificate apid presents on a new connection (SHA-256, hex).
pub async fn served_certificate(port: u16, cert: &CertifiedKey) -> String {
    #[derive(Debug)]
    struct Capture(
        Arc<rustls::crypto::CryptoProvider>,
        std::sync::Mutex<Option<Vec<u8>>>,
    );
    impl ServerCertVerifier for Capture {
        fn verify_server_cert(
            &self,
            ee: &CertificateDer<'_>,
            _: &[CertificateDer<'_>],
            _: &ServerName<'_>,
            _: &[u8],
            _: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            *self.1.lock().unwrap() = Some(ee.to_vec());
            Ok(ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            m: &[u8],
            c: &CertificateDer<'_>,
            d: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(
                m,
                c,
                d,
                &self.0.signature_verification_algorithms,
            )
        }
        fn verify_tls13_signature(
            &self,
            m: &[u8],
            c: &CertificateDer<'_>,
            d: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(
                m,
                c,
                d,
                &self.0.signature_verification_algorithms,
            )
        }
        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let capture = Arc::new(Capture(provider.clone(), std::sync::Mutex::new(None)));
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(capture.clone())
        .with_client_auth_cert(
            vec![CertificateDer::from(cert.crt.der().to_vec())],
            PrivateKeyDer::from_pem_slice(cert.key.pem().as_bytes()).unwrap(),
        )
        .unwrap();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let name = ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into());
    let _conn = tokio_rustls::TlsConnector::from(Arc::new(tls))
        .connect(name, tcp)
        .await
        .unwrap();
    let der = capture.1.lock().unwrap().clone().unwrap();
    config::pki::fingerprint(&der)
}

/// This host's name: apid answers Version itself, from its UTS namespace.
pub fn this_host() -> String {
    nix::unistd::gethostname()
        .unwrap()
        .to_string_lossy()
        .into_owned()
}
