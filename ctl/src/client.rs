//! Connections from cairnctl to apid: TLS over TCP, with tonic on top.
//!
//! One connector serves both modes, so errors look the same in both:
//! - insecure (maintenance mode): TLS without verifying the server and
//!   without a client certificate; the server's certificate fingerprint is
//!   kept so the user can compare it with the one on the node's console;
//! - mTLS: the server must chain to the cluster CA, and we present the
//!   client certificate from the cairnconfig.
//!
//! The connector is written here rather than using tonic's `ClientTlsConfig`
//! because that cannot skip verification and does not expose the peer
//! certificate.

use std::error::Error as StdError;
use std::fmt;
use std::io;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use api::machine::machine_service_client::MachineServiceClient;
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use sha2::{Digest, Sha256};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tonic::transport::{Channel, Endpoint};

use config::tls::AcceptAnyServerCert;

/// How long to wait for TCP and TLS to come up.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a single call may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("node {0:?}: expected host or host:port")]
    BadNode(String),
    #[error("no nodes given: pass -n <host>[:port]")]
    NoNodes,
    #[error("no client config (~/.cairn/config, or pass --cairnconfig); use --insecure for nodes in maintenance mode")]
    NoClientConfig,
    #[error(transparent)]
    Config(#[from] config::client::ClientConfigError),
    #[error("the client key in the cairnconfig: {0}")]
    BadKey(String),
    #[error("TLS settings: {0}")]
    Tls(#[from] rustls::Error),
    #[error("{0}")]
    Connect(String),
}

/// A node to talk to: host (name or IP) and apid port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub host: String,
    pub port: u16,
}

impl Node {
    /// Parses `host`, `host:port`, `ip6`, or `[ip6]:port`; the port defaults
    /// to apid's.
    pub fn parse(text: &str) -> Result<Self, ClientError> {
        let bad = || ClientError::BadNode(text.to_string());
        let text = text.trim();
        if text.is_empty() {
            return Err(bad());
        }
        let default_port = config::constants::APID_PORT;
        if let Some(rest) = text.strip_prefix('[') {
            let (host, after) = rest.split_once(']').ok_or_else(bad)?;
            host.parse::<std::net::Ipv6Addr>().map_err(|_| bad())?;
            let port = match after.strip_prefix(':') {
                Some(p) => p.parse().map_err(|_| bad())?,
                None if after.is_empty() => default_port,
                None => return Err(bad()),
            };
            return Ok(Node {
                host: host.into(),
                port,
            });
        }
        if text.parse::<std::net::Ipv6Addr>().is_ok() {
            return Ok(Node {
                host: text.into(),
                port: default_port,
            });
        }
        match text.split_once(':') {
            Some((host, port)) if !host.is_empty() => Ok(Node {
                host: host.into(),
                port: port.parse().map_err(|_| bad())?,
            }),
            Some(_) => Err(bad()),
            None => Ok(Node {
                host: text.into(),
                port: default_port,
            }),
        }
    }
}

impl fmt::Display for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// What we prove to the node, and how we check the node.
pub enum Credentials {
    /// Maintenance mode: no client certificate, server not verified.
    Insecure,
    /// Maintenance mode, the server's certificate pinned by its SHA-256
    /// (`--fingerprint`, from the node's console).
    Pinned(String),
    /// mTLS: the node must chain to `ca`; we present `chain` and `key`.
    Mutual {
        ca: Vec<CertificateDer<'static>>,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    },
}

impl Credentials {
    fn tls_config(&self) -> Result<rustls::ClientConfig, ClientError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?;
        let mut config = match self {
            Credentials::Insecure => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAnyServerCert::new(provider)))
                .with_no_client_auth(),
            Credentials::Pinned(fingerprint) => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAnyServerCert::pinned(
                    provider,
                    fingerprint,
                )))
                .with_no_client_auth(),
            Credentials::Mutual { ca, chain, key } => {
                let mut roots = rustls::RootCertStore::empty();
                for cert in ca {
                    roots.add(cert.clone())?;
                }
                builder
                    .with_root_certificates(roots)
                    .with_client_auth_cert(chain.clone(), key.clone_key())?
            }
        };
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(config)
    }
}

/// An open connection to one node's apid.
pub struct Connection {
    pub machine: MachineServiceClient<Channel>,
    /// SHA-256 of the certificate the node presented, as `sha256:<hex>`.
    pub server_fingerprint: Option<String>,
}

/// Connects to `node` over TLS and returns a machine API client.
pub async fn connect(node: &Node, credentials: &Credentials) -> Result<Connection, ClientError> {
    connect_with_timeout(node, credentials, Some(REQUEST_TIMEOUT)).await
}

/// Like [`connect`], with calls limited to `timeout` (`None`: no limit,
/// for calls that stream large uploads such as Upgrade).
pub async fn connect_with_timeout(
    node: &Node,
    credentials: &Credentials,
    timeout: Option<Duration>,
) -> Result<Connection, ClientError> {
    let tls = TlsConnector::from(Arc::new(credentials.tls_config()?));
    let server_name = server_name(node)?;
    let fingerprint = Arc::new(Mutex::new(None));
    let connector = {
        let (host, port, fingerprint) = (node.host.clone(), node.port, fingerprint.clone());
        tower::service_fn(move |_uri: tonic::transport::Uri| {
            let (tls, host, server_name, fingerprint) = (
                tls.clone(),
                host.clone(),
                server_name.clone(),
                fingerprint.clone(),
            );
            async move {
                let tcp = TcpStream::connect((host.as_str(), port)).await?;
                tcp.set_nodelay(true)?;
                let stream = tls.connect(server_name, tcp).await?;
                if let Some(cert) = stream
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|c| c.first())
                {
                    *fingerprint.lock().unwrap() = Some(sha256_fingerprint(cert));
                }
                Ok::<_, io::Error>(TokioIo::new(stream))
            }
        })
    };
    // The scheme is http because TLS happens in our connector, not in tonic.
    let mut endpoint = Endpoint::from_shared(format!("http://{node}"))
        .map_err(|_| ClientError::BadNode(node.to_string()))?
        .connect_timeout(CONNECT_TIMEOUT);
    if let Some(t) = timeout {
        endpoint = endpoint.timeout(t);
    }
    let channel = endpoint
        .connect_with_connector(connector)
        .await
        .map_err(|e| ClientError::Connect(explain(&e, node)))?;

    let server_fingerprint = fingerprint.lock().unwrap().clone();
    Ok(Connection {
        machine: MachineServiceClient::new(channel),
        server_fingerprint,
    })
}

/// The name TLS checks the node's certificate against: its IP or host name.
fn server_name(node: &Node) -> Result<ServerName<'static>, ClientError> {
    match node.host.parse::<IpAddr>() {
        Ok(ip) => Ok(ServerName::IpAddress(ip.into())),
        Err(_) => ServerName::try_from(node.host.clone())
            .map_err(|_| ClientError::BadNode(node.to_string())),
    }
}

/// The TLS alert `node` sends a client without a certificate, explained,
/// if it sends one: one bare handshake, then a read. (With TLS 1.3 the
/// server checks client certificates after the handshake, so a refusal
/// arrives as the first thing read; a node in maintenance mode sends its
/// HTTP/2 settings instead, and this returns None.)
pub async fn refusal_alert(node: &Node) -> Option<String> {
    use tokio::io::AsyncReadExt;
    let tls = TlsConnector::from(Arc::new(Credentials::Insecure.tls_config().ok()?));
    let server_name = server_name(node).ok()?;
    let tcp = tokio::time::timeout(
        CONNECT_TIMEOUT,
        TcpStream::connect((node.host.as_str(), node.port)),
    )
    .await
    .ok()?
    .ok()?;
    let mut stream = tokio::time::timeout(CONNECT_TIMEOUT, tls.connect(server_name, tcp))
        .await
        .ok()?
        .ok()?;
    let mut buf = [0u8; 256];
    match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await {
        Ok(Err(e)) => {
            let alert = find::<rustls::Error>(&e)
                .and_then(|t| match t {
                    rustls::Error::AlertReceived(a) => Some(*a),
                    _ => None,
                })
                .or_else(|| chain(&e).find_map(|e| alert_in_message(&e.to_string())))?;
            Some(explain_tls(&rustls::Error::AlertReceived(alert)))
        }
        _ => None,
    }
}

/// `sha256:<hex>` of a DER certificate, the form machined prints on the
/// console in maintenance mode.
pub fn sha256_fingerprint(der: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(der)))
}

/// Turns a failed connection or call into a sentence that says what to do.
pub fn explain(err: &(dyn StdError + 'static), node: &Node) -> String {
    if let Some(status) = find::<tonic::Status>(err) {
        if let Some(msg) = explain_status(status, node) {
            return msg;
        }
    }
    if let Some(tls) = find::<rustls::Error>(err) {
        return explain_tls(tls);
    }
    if let Some(alert) = chain(err).find_map(|e| alert_in_message(&e.to_string())) {
        return explain_tls(&rustls::Error::AlertReceived(alert));
    }
    if let Some(io) = find::<io::Error>(err) {
        return match io.kind() {
            io::ErrorKind::ConnectionRefused => {
                format!("connection refused: is the node up and is {node} its apid port?")
            }
            io::ErrorKind::TimedOut => {
                format!("timed out connecting to {node}: is the node up and reachable?")
            }
            io::ErrorKind::ConnectionReset | io::ErrorKind::UnexpectedEof => format!(
                "{node} closed the connection during the TLS handshake: is apid running there yet?"
            ),
            _ => format!("connecting to {node}: {io}"),
        };
    }
    if chain(err).any(|e| e.to_string().contains("timed out")) {
        return format!("timed out connecting to {node}: is the node up and reachable?");
    }
    let messages: Vec<String> = chain(err).map(|e| e.to_string()).collect();
    format!("{node}: {}", messages.join(": "))
}

fn explain_status(status: &tonic::Status, node: &Node) -> Option<String> {
    use tonic::Code;
    let message = status.message();
    match status.code() {
        // Transport failures carry their cause as the status's source.
        Code::Unavailable | Code::Unknown if status.source().is_some() => None,
        Code::Unavailable => Some(format!("{node} is unavailable: {message}")),
        Code::Unauthenticated => Some(format!(
            "{node} did not accept this client ({message}): is this the right cairnconfig?"
        )),
        Code::PermissionDenied => Some(format!(
            "{node} refused ({message}): the certificate in this context lacks the role for it"
        )),
        Code::Unimplemented => Some(format!(
            "{node} does not serve this call: is it a Cairn node of a matching version?"
        )),
        Code::DeadlineExceeded => Some(format!("{node} did not answer in time")),
        _ => Some(format!("{node}: {message}")),
    }
}

fn explain_tls(err: &rustls::Error) -> String {
    use rustls::{AlertDescription, CertificateError};
    match err {
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)
        | rustls::Error::InvalidCertificate(CertificateError::BadSignature) => {
            "certificate signed by unknown authority: is this the right cairnconfig for this node?"
                .into()
        }
        rustls::Error::InvalidCertificate(CertificateError::NotValidForName)
        | rustls::Error::InvalidCertificate(CertificateError::NotValidForNameContext { .. }) => {
            "the node's certificate does not name this address: connect by the name or IP in its certificate".into()
        }
        rustls::Error::InvalidCertificate(CertificateError::Expired)
        | rustls::Error::InvalidCertificate(CertificateError::ExpiredContext { .. }) => {
            "the node's certificate has expired: check the clocks of this machine and the node".into()
        }
        rustls::Error::AlertReceived(
            AlertDescription::CertificateRequired
            | AlertDescription::HandshakeFailure
            | AlertDescription::BadCertificate,
        ) => "the node requires a client certificate: it is not in maintenance mode, so use a cairnconfig instead of --insecure".into(),
        // DecryptError: the client certificate names the node's CA as its
        // issuer (all Cairn OS CAs share a name) but another CA signed it.
        rustls::Error::AlertReceived(AlertDescription::UnknownCA | AlertDescription::DecryptError) => {
            "the node does not trust this client certificate: is this the right cairnconfig for this cluster?".into()
        }
        other => format!("TLS handshake failed: {other}"),
    }
}

/// An alert the server sent after our side of the handshake was done (TLS
/// 1.3 client certificates): rustls reports it on the next read as an
/// `io::Error` carrying only the message text.
fn alert_in_message(message: &str) -> Option<rustls::AlertDescription> {
    use rustls::AlertDescription as A;
    let name = message.strip_prefix("received fatal alert: ")?;
    [
        A::CertificateRequired,
        A::BadCertificate,
        A::HandshakeFailure,
        A::UnknownCA,
        A::DecryptError,
    ]
    .into_iter()
    .find(|a| format!("{a:?}") == name)
}

fn chain<'a>(
    err: &'a (dyn StdError + 'static),
) -> impl Iterator<Item = &'a (dyn StdError + 'static)> {
    std::iter::successors(Some(err), |e: &&'a (dyn StdError + 'static)| (*e).source())
}

/// The first error of type `T` in the source chain, looking inside
/// `io::Error`s that wrap another error (tokio-rustls does that).
fn find<'a, T: StdError + 'static>(err: &'a (dyn StdError + 'static)) -> Option<&'a T> {
    for e in chain(err) {
        if let Some(t) = e.downcast_ref::<T>() {
            return Some(t);
        }
        if let Some(inner) = e.downcast_ref::<io::Error>().and_then(|io| io.get_ref()) {
            if let Some(t) = find::<T>(inner) {
                return Some(t);
            }
        }
    }
    None
}

#[cfg(test)]
#[path = "client_tests.rs"]
mod live_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_default_to_the_apid_port() {
        assert_eq!(
            Node::parse("10.0.0.1").unwrap(),
            Node {
                host: "10.0.0.1".into(),
                port: 50000
            }
        );
        assert_eq!(
            Node::parse("cp1:123").unwrap(),
            Node {
                host: "cp1".into(),
                port: 123
            }
        );
        assert_eq!(
            Node::parse("::1").unwrap(),
            Node {
                host: "::1".into(),
                port: 50000
            }
        );
        assert_eq!(
            Node::parse("[fd00::1]:7").unwrap(),
            Node {
                host: "fd00::1".into(),
                port: 7
            }
        );
        assert_eq!(
            Node::parse("[fd00::1]").unwrap().to_string(),
            "[fd00::1]:50000"
        );
        for bad in ["", ":1", "a:b", "a:99999", "[x]:1", "[::1]x"] {
            assert!(Node::parse(bad).is_err(), "{bad:?} should not parse");
        }
    }

    #[derive(Debug)]
    struct Wrapped(Box<dyn StdError + Send + Sync>);
    impl fmt::Display for Wrapped {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("transport error")
        }
    }
    impl StdError for Wrapped {
        fn source(&self) -> Option<&(dyn StdError + 'static)> {
            Some(&*self.0)
        }
    }

    fn node() -> Node {
        Node::parse("127.0.0.1:50000").unwrap()
    }

    #[test]
    fn refused_connections_say_what_to_check() {
        let err = Wrapped(Box::new(io::Error::from(io::ErrorKind::ConnectionRefused)));
        assert_eq!(
            explain(&err, &node()),
            "connection refused: is the node up and is 127.0.0.1:50000 its apid port?"
        );
    }

    #[test]
    fn unknown_authority_points_at_the_cairnconfig() {
        let tls = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let err = Wrapped(Box::new(io::Error::new(io::ErrorKind::InvalidData, tls)));
        assert_eq!(
            explain(&err, &node()),
            "certificate signed by unknown authority: is this the right cairnconfig for this node?"
        );
    }

    #[test]
    fn a_node_wanting_client_certs_is_not_in_maintenance_mode() {
        let tls = rustls::Error::AlertReceived(rustls::AlertDescription::CertificateRequired);
        let err = Wrapped(Box::new(io::Error::new(io::ErrorKind::InvalidData, tls)));
        assert!(explain(&err, &node()).contains("not in maintenance mode"));
    }

    #[test]
    fn a_client_cert_from_another_ca_is_not_trusted() {
        for alert in ["UnknownCA", "DecryptError"] {
            let err = Wrapped(Box::new(io::Error::other(format!(
                "received fatal alert: {alert}"
            ))));
            assert_eq!(
                explain(&err, &node()),
                "the node does not trust this client certificate: is this the right cairnconfig for this cluster?",
                "{alert}"
            );
        }
    }

    #[test]
    fn fingerprints_are_hex_sha256() {
        assert_eq!(
            sha256_fingerprint(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn both_tls_configs_speak_h2() {
        let config = Credentials::Insecure.tls_config().unwrap();
        assert_eq!(config.alpn_protocols, vec![b"h2".to_vec()]);
    }
}
