//! Sessions against a real tonic server over TLS on 127.0.0.1 that echoes
//! the `nodes` metadata it receives: forwarding, fan-out, and the advice
//! for refused calls. The server is a fake apid; the TLS, certificates
//! (from a generated cairnconfig) and gRPC are real.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use api::machine::{RebootRequest, ServiceListResponse, VersionResponse};
use clap::Parser;
use config::client::ClientConfig;
use config::types::SubjectAltName;
use tonic::codegen::{http, BoxFuture, Service};
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};

use super::*;

/// Answers Version with the `nodes` metadata as the hostname ("self"
/// without it), refuses Reboot, and refuses ServiceList as maintenance
/// mode does. Records every `nodes` value it sees.
#[derive(Clone)]
struct EchoNodes {
    maintenance: bool,
    seen: Arc<Mutex<Vec<Option<String>>>>,
}

impl tonic::server::NamedService for EchoNodes {
    const NAME: &'static str = "cairn.machine.v1.MachineService";
}

struct Unary<F>(F);

impl<Req, Resp, F> tonic::server::UnaryService<Req> for Unary<F>
where
    F: FnMut(tonic::Request<Req>) -> Result<Resp, Status> + Send + 'static,
    Resp: Send + 'static,
{
    type Response = Resp;
    type Future = BoxFuture<tonic::Response<Resp>, Status>;
    fn call(&mut self, req: tonic::Request<Req>) -> Self::Future {
        let result = (self.0)(req).map(tonic::Response::new);
        Box::pin(async move { result })
    }
}

impl Service<http::Request<tonic::body::Body>> for EchoNodes {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let nodes = req
                .headers()
                .get(NODES_METADATA)
                .map(|v| v.to_str().unwrap_or("?").to_string());
            this.seen.lock().unwrap().push(nodes.clone());
            let path = req
                .uri()
                .path()
                .rsplit('/')
                .next()
                .unwrap_or("")
                .to_string();
            let maintenance = this.maintenance;
            Ok(match path.as_str() {
                "Version" => {
                    let answer = move |_: tonic::Request<()>| {
                        Ok(VersionResponse {
                            version: "v9.9.9".into(),
                            hostname: nodes.clone().unwrap_or_else(|| "self".into()),
                            maintenance,
                            ..Default::default()
                        })
                    };
                    tonic::server::Grpc::new(tonic_prost::ProstCodec::default())
                        .unary(Unary(answer), req)
                        .await
                }
                "Reboot" => {
                    let refuse = |_: tonic::Request<RebootRequest>| -> Result<(), Status> {
                        Err(Status::permission_denied(
                            "role os:reader may not call Reboot: it needs os:operator or higher",
                        ))
                    };
                    tonic::server::Grpc::new(tonic_prost::ProstCodec::default())
                        .unary(Unary(refuse), req)
                        .await
                }
                _ => {
                    let refuse = |_: tonic::Request<()>| -> Result<ServiceListResponse, Status> {
                        Err(Status::failed_precondition(
                            "ServiceList is not available in maintenance mode: apply a machine config first",
                        ))
                    };
                    tonic::server::Grpc::new(tonic_prost::ProstCodec::default())
                        .unary(Unary(refuse), req)
                        .await
                }
            })
        })
    }
}

struct Cluster {
    _dir: tempfile::TempDir,
    cairnconfig: String,
    os_ca: config::pki::CertifiedKey,
}

/// A generated cluster: its cairnconfig (admin) on disk and its OS CA.
fn cluster() -> Cluster {
    let secrets = config::generate::generate_secrets().unwrap();
    let os_ca = secrets.certs.os.clone();
    let input = config::generate::GenerateInput::new(
        "lab".parse().unwrap(),
        "https://127.0.0.1:6443".parse().unwrap(),
        secrets,
    );
    let (_, _, client) = config::generate::generate_configs(&input).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cairnconfig");
    client.save(&path, false).unwrap();
    Cluster {
        cairnconfig: path.to_str().unwrap().to_string(),
        _dir: dir,
        os_ca,
    }
}

/// Serves `EchoNodes` with a certificate from `ca` (requiring client
/// certificates from it), or self-signed without client auth when `ca` is
/// `None` (maintenance mode).
async fn serve(ca: Option<&config::pki::CertifiedKey>) -> (Node, EchoNodes) {
    let tls = match ca {
        Some(ca) => {
            let server = config::pki::issue_server_cert(
                ca,
                "node",
                &[SubjectAltName::Ip("127.0.0.1".parse().unwrap())],
                config::pki::LEAF_VALIDITY,
            )
            .unwrap();
            ServerTlsConfig::new()
                .identity(Identity::from_pem(server.crt.pem(), server.key.pem()))
                .client_ca_root(Certificate::from_pem(ca.crt.pem()))
        }
        None => {
            // Like machined's maintenance certificate: self-signed.
            let own = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
            ServerTlsConfig::new().identity(Identity::from_pem(
                own.cert.pem(),
                own.signing_key.serialize_pem(),
            ))
        }
    };
    let echo = EchoNodes {
        maintenance: ca.is_none(),
        seen: Arc::default(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    let server = Server::builder()
        .tls_config(tls)
        .unwrap()
        .add_service(echo.clone());
    tokio::spawn(server.serve_with_incoming(incoming));
    (
        Node {
            host: "127.0.0.1".into(),
            port,
        },
        echo,
    )
}

fn global(argv: &[&str]) -> GlobalArgs {
    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        global: GlobalArgs,
    }
    Cli::parse_from(std::iter::once("cairnctl").chain(argv.iter().copied())).global
}

async fn hostnames(session: &Session) -> Vec<(String, Result<String, String>)> {
    session
        .each(|c| async move {
            c.call("Version", (), |mut m, r| async move { m.version(r).await })
                .await
                .map(|v| v.hostname)
        })
        .await
        .into_iter()
        .map(|r| (r.node, r.result))
        .collect()
}

#[tokio::test]
async fn nodes_behind_an_endpoint_are_named_in_metadata_one_per_call() {
    let c = cluster();
    let (endpoint, echo) = serve(Some(&c.os_ca)).await;
    let ep = endpoint.to_string();
    let g = global(&[
        "--cairnconfig",
        &c.cairnconfig,
        "-e",
        &ep,
        "-n",
        "10.5.0.3,10.5.0.4:7,127.0.0.1",
    ]);
    let session = Session::open(&g).await.unwrap();
    assert_eq!(session.len(), 3);
    let answers = hostnames(&session).await;
    assert_eq!(
        answers,
        [
            (
                "10.5.0.3:50000".to_string(),
                Ok("10.5.0.3:50000".to_string())
            ),
            ("10.5.0.4:7".to_string(), Ok("10.5.0.4:7".to_string())),
            // Not the endpoint (other port): forwarded too.
            (
                "127.0.0.1:50000".to_string(),
                Ok("127.0.0.1:50000".to_string())
            ),
        ]
    );

    // The endpoint itself as the node: served locally, no metadata.
    echo.seen.lock().unwrap().clear();
    let g = global(&["--cairnconfig", &c.cairnconfig, "-e", &ep, "-n", &ep]);
    let answers = hostnames(&Session::open(&g).await.unwrap()).await;
    assert_eq!(answers, [(ep.clone(), Ok("self".to_string()))]);
    assert_eq!(*echo.seen.lock().unwrap(), [None]);
}

#[tokio::test]
async fn without_endpoints_each_node_is_its_own() {
    let (a, echo_a) = serve(None).await;
    let (b, echo_b) = serve(None).await;
    let nodes = format!("{a},{b}");
    let session = Session::open(&global(&["--insecure", "-n", &nodes]))
        .await
        .unwrap();
    let answers = hostnames(&session).await;
    assert!(
        answers.iter().all(|(_, r)| r.as_deref() == Ok("self")),
        "{answers:?}"
    );
    assert_eq!(*echo_a.seen.lock().unwrap(), [None]);
    assert_eq!(*echo_b.seen.lock().unwrap(), [None]);
}

#[tokio::test]
async fn one_unreachable_node_does_not_stop_the_others() {
    let (a, _) = serve(None).await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let nodes = format!("{a},127.0.0.1:{port}");
    let session = Session::open(&global(&["--insecure", "-n", &nodes]))
        .await
        .unwrap();
    let answers = hostnames(&session).await;
    assert_eq!(answers[0].1, Ok("self".to_string()));
    let err = answers[1].1.clone().unwrap_err();
    assert!(
        err.starts_with("connection refused: is the node up"),
        "{err}"
    );
    let results: Vec<NodeResult<()>> = answers
        .into_iter()
        .map(|(node, r)| NodeResult {
            node,
            result: r.map(|_| ()),
        })
        .collect();
    assert_eq!(report_errors(&results), ExitCode::FAILURE);
}

#[tokio::test]
async fn refusals_name_the_role_and_the_call() {
    let c = cluster();
    let (endpoint, _) = serve(Some(&c.os_ca)).await;
    // A reader certificate from the same CA, in a cairnconfig of its own.
    let reader = config::pki::issue_client_cert(
        &c.os_ca,
        "ci",
        config::pki::Role::Reader,
        config::pki::LEAF_VALIDITY,
    )
    .unwrap();
    let mut client = ClientConfig::load(std::path::Path::new(&c.cairnconfig)).unwrap();
    let context = client.contexts.get_mut("lab").unwrap();
    context.crt = reader.crt;
    context.key = reader.key;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("reader");
    client.save(&path, false).unwrap();

    let ep = endpoint.to_string();
    let g = global(&["--cairnconfig", path.to_str().unwrap(), "-e", &ep]);
    let session = Session::open(&g).await.unwrap();
    let node = session.single("test").unwrap();
    let err = node
        .call("Reboot", RebootRequest::default(), |mut m, r| async move {
            m.reboot(r).await
        })
        .await
        .unwrap_err();
    assert_eq!(
        err,
        "your certificate's role os:reader may not call Reboot; use an admin cairnconfig"
    );
}

#[tokio::test]
async fn maintenance_mode_is_recognised_from_both_sides() {
    let c = cluster();
    let (node, _) = serve(None).await;
    let n = node.to_string();
    // mTLS against a node still in maintenance mode: its self-signed
    // certificate is not from our CA; cairnctl asks it and says why.
    let session = Session::open(&global(&["--cairnconfig", &c.cairnconfig, "-e", &n]))
        .await
        .unwrap();
    match &session.clients[0] {
        Err(e) => assert_eq!(e.message, MAINTENANCE_ADVICE),
        Ok(_) => panic!("a self-signed node must not pass mTLS"),
    }
    // --insecure, but a call maintenance mode does not serve.
    let session = Session::open(&global(&["--insecure", "-n", &n]))
        .await
        .unwrap();
    let client = session.single("test").unwrap();
    let err = client
        .call("ServiceList", (), |mut m, r| async move {
            m.service_list(r).await
        })
        .await
        .unwrap_err();
    assert!(
        err.starts_with("node is in maintenance mode: only version, apply-config and disks"),
        "{err}"
    );
}

#[test]
fn status_advice_for_each_code() {
    let node = Node::parse("10.5.0.2").unwrap();
    let explain = |s: Status| explain_status(&s, "ApplyConfiguration", Some("os:operator"), &node);
    assert_eq!(
        explain(Status::permission_denied(
            "role os:operator may not call ApplyConfiguration: it needs os:admin or higher"
        )),
        "your certificate's role os:operator may not call ApplyConfiguration; use an admin cairnconfig"
    );
    assert_eq!(
        explain(Status::permission_denied(
            "cairn.local/pause:3.2 is a system image: it is never removed"
        )),
        "cairn.local/pause:3.2 is a system image: it is never removed",
        "the node's own refusals pass through, not as a role problem"
    );
    assert_eq!(
        explain(Status::invalid_argument(
            "MachineConfig: machine.network.hostname: bad"
        )),
        "MachineConfig: machine.network.hostname: bad",
        "the server's field errors pass through"
    );
    assert!(explain(Status::unimplemented("x"))
        .starts_with("10.5.0.2:50000 does not serve ApplyConfiguration"));
    assert_eq!(
        explain_status(
            &Status::permission_denied("certificate \"x\" carries no Cairn role"),
            "Reboot",
            None,
            &node
        ),
        "this client may not call Reboot (certificate \"x\" carries no Cairn role); use an admin cairnconfig"
    );
    assert!(explain(Status::unauthenticated("x")).contains("is this the right cairnconfig?"));
}
