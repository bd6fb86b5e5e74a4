//! The connector against a real tonic server over TLS on 127.0.0.1: one
//! that answers only Version, with or without requiring client certs.

use std::convert::Infallible;
use std::task::{Context, Poll};

use api::machine::VersionResponse;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tonic::codegen::{http, BoxFuture, Service};
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};

use super::*;

/// Serves only `MachineService/Version`, answering like a node in
/// maintenance mode.
#[derive(Clone)]
struct VersionOnly;

impl tonic::server::NamedService for VersionOnly {
    const NAME: &'static str = "cairn.machine.v1.MachineService";
}

struct VersionCall;

impl tonic::server::UnaryService<()> for VersionCall {
    type Response = VersionResponse;
    type Future = BoxFuture<tonic::Response<VersionResponse>, tonic::Status>;
    fn call(&mut self, _: tonic::Request<()>) -> Self::Future {
        Box::pin(async {
            Ok(tonic::Response::new(VersionResponse {
                version: "v9.9.9".into(),
                maintenance: true,
                ..Default::default()
            }))
        })
    }
}

impl Service<http::Request<tonic::body::Body>> for VersionOnly {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(tonic_prost::ProstCodec::default());
            Ok(grpc.unary(VersionCall, req).await)
        })
    }
}

struct Pki {
    ca: CertifiedIssuer<'static, KeyPair>,
}

impl Pki {
    fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        Pki {
            ca: CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap(),
        }
    }

    /// A leaf certificate for 127.0.0.1: (cert PEM, key PEM, cert DER, key DER).
    fn leaf(
        &self,
    ) -> (
        String,
        String,
        CertificateDer<'static>,
        PrivateKeyDer<'static>,
    ) {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec!["127.0.0.1".to_string()])
            .unwrap()
            .signed_by(&key, &self.ca)
            .unwrap();
        let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        (cert.pem(), key.serialize_pem(), cert.der().clone(), key_der)
    }
}

/// Starts the server on a free port; returns the node and the DER of the
/// certificate it presents.
async fn serve(pki: &Pki, require_client_ca: Option<&Pki>) -> (Node, Vec<u8>) {
    let (cert_pem, key_pem, cert_der, _) = pki.leaf();
    let client_ca = require_client_ca.map(|p| p.ca.pem());
    let node = serve_pem(cert_pem, key_pem, client_ca).await;
    (node, cert_der.to_vec())
}

async fn serve_pem(cert_pem: String, key_pem: String, client_ca_pem: Option<String>) -> Node {
    let mut tls = ServerTlsConfig::new().identity(Identity::from_pem(cert_pem, key_pem));
    if let Some(ca) = client_ca_pem {
        tls = tls.client_ca_root(Certificate::from_pem(ca));
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    let server = Server::builder()
        .tls_config(tls)
        .unwrap()
        .add_service(VersionOnly);
    tokio::spawn(server.serve_with_incoming(incoming));
    Node {
        host: "127.0.0.1".into(),
        port,
    }
}

/// The whole path a user takes: `gen config` writes a cairnconfig whose
/// admin certificate comes from the OS CA; a node serves with a server
/// certificate from the same CA; cairnctl connects with mutual TLS.
#[tokio::test]
async fn a_generated_cairnconfig_connects_with_mutual_tls() {
    use config::generate::{generate_configs, generate_secrets, GenerateInput};
    use config::types::SubjectAltName;

    let secrets = generate_secrets().unwrap();
    let os_ca = secrets.certs.os.clone();
    let server = config::pki::issue_server_cert(
        &os_ca,
        "node",
        &[SubjectAltName::Ip("127.0.0.1".parse().unwrap())],
        config::pki::LEAF_VALIDITY,
    )
    .unwrap();
    let input = GenerateInput::new(
        "lab".parse().unwrap(),
        "https://127.0.0.1:6443".parse().unwrap(),
        secrets,
    );
    let (_, _, client_config) = generate_configs(&input).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cairnconfig");
    client_config.save(&path, false).unwrap();

    let node = serve_pem(
        server.crt.pem().to_string(),
        server.key.pem().to_string(),
        Some(os_ca.crt.pem().to_string()),
    )
    .await;
    let global = <crate::global::GlobalArgs as clap::FromArgMatches>::from_arg_matches(
        &<crate::global::GlobalArgs as clap::Args>::augment_args(clap::Command::new("t"))
            .get_matches_from([
                "t",
                "--cairnconfig",
                path.to_str().unwrap(),
                "-n",
                &node.to_string(),
            ]),
    )
    .unwrap();
    let target = global.target().unwrap();
    let mut conn = connect(&target.nodes[0], &target.credentials)
        .await
        .unwrap();
    assert_eq!(
        conn.machine.version(()).await.unwrap().into_inner().version,
        "v9.9.9"
    );
}

#[tokio::test]
async fn insecure_mode_answers_version_and_reports_the_fingerprint() {
    let pki = Pki::new();
    let (node, cert) = serve(&pki, None).await;
    let mut conn = connect(&node, &Credentials::Insecure).await.unwrap();
    let v = conn.machine.version(()).await.unwrap().into_inner();
    assert_eq!(v.version, "v9.9.9");
    assert!(v.maintenance);
    assert_eq!(conn.server_fingerprint, Some(sha256_fingerprint(&cert)));
}

/// Hole 3 of the hardening issue: the first config must not go to a man
/// in the middle. With the console's fingerprint pinned, only that node's
/// certificate is accepted.
#[tokio::test]
async fn a_pinned_fingerprint_accepts_only_that_certificate() {
    let pki = Pki::new();
    let (node, cert) = serve(&pki, None).await;
    let right = sha256_fingerprint(&cert);
    let mut conn = connect(
        &node,
        &Credentials::Pinned(right.to_uppercase().replace("SHA256", "sha256")),
    )
    .await
    .unwrap();
    assert!(
        conn.machine
            .version(())
            .await
            .unwrap()
            .into_inner()
            .maintenance
    );

    let wrong = format!("sha256:{}", "ab".repeat(32));
    let message = match connect(&node, &Credentials::Pinned(wrong)).await {
        Ok(mut c) => match c.machine.version(()).await {
            Ok(_) => panic!("a node with another certificate was accepted"),
            Err(s) => s.to_string(),
        },
        Err(e) => e.to_string(),
    };
    assert!(
        message.contains("not the pinned sha256:abab"),
        "the refusal should name both fingerprints: {message}"
    );
}

#[tokio::test]
async fn mutual_tls_with_the_right_ca_answers_version() {
    let pki = Pki::new();
    let (node, _) = serve(&pki, Some(&pki)).await;
    let (_, _, chain, key) = pki.leaf();
    let creds = Credentials::Mutual {
        ca: vec![pki.ca.der().clone()],
        chain: vec![chain],
        key,
    };
    let mut conn = connect(&node, &creds).await.unwrap();
    assert_eq!(
        conn.machine.version(()).await.unwrap().into_inner().version,
        "v9.9.9"
    );
}

#[tokio::test]
async fn a_server_from_another_ca_is_an_unknown_authority() {
    let (server_pki, client_pki) = (Pki::new(), Pki::new());
    let (node, _) = serve(&server_pki, None).await;
    let (_, _, chain, key) = client_pki.leaf();
    let creds = Credentials::Mutual {
        ca: vec![client_pki.ca.der().clone()],
        chain: vec![chain],
        key,
    };
    let err = connect(&node, &creds)
        .await
        .err()
        .expect("must not connect");
    assert_eq!(
        err.to_string(),
        "certificate signed by unknown authority: is this the right cairnconfig for this node?"
    );
}

#[tokio::test]
async fn insecure_against_a_configured_node_says_to_use_a_cairnconfig() {
    let pki = Pki::new();
    let (node, _) = serve(&pki, Some(&pki)).await;
    // With TLS 1.3 the server's refusal arrives after the client finished
    // its side of the handshake: on connect or on the first call.
    let message = match connect(&node, &Credentials::Insecure).await {
        Err(e) => e.to_string(),
        Ok(mut conn) => {
            let status = conn.machine.version(()).await.expect_err("must be refused");
            explain(&status, &node)
        }
    };
    assert!(
        message.contains("requires a client certificate"),
        "{message}"
    );
}

#[tokio::test]
async fn a_closed_port_is_connection_refused() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let node = Node {
        host: "127.0.0.1".into(),
        port,
    };
    let err = connect(&node, &Credentials::Insecure)
        .await
        .err()
        .expect("must not connect");
    assert_eq!(
        err.to_string(),
        format!("connection refused: is the node up and is 127.0.0.1:{port} its apid port?")
    );
}
