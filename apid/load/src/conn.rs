//! Connections to apid on loopback: mutual TLS with a client certificate
//! (or without, for the handshakes apid must refuse), from a chosen
//! loopback source address, as gRPC channels or raw TLS streams.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use api::machine::machine_service_client::MachineServiceClient;
use config::pki::CertifiedKey;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::{TcpSocket, TcpStream};
use tonic::transport::{Channel, Endpoint};

pub type Tls = tokio_rustls::client::TlsStream<TcpStream>;

/// A client TLS configuration trusting `ca`, presenting `cert` if given.
pub fn client_config(
    ca: &CertifiedKey,
    cert: Option<&CertifiedKey>,
) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(ca.crt.der().to_vec()))?;
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    let mut tls = match cert {
        Some(c) => builder.with_client_auth_cert(
            vec![CertificateDer::from(c.crt.der().to_vec())],
            PrivateKeyDer::from_pem_slice(c.key.pem().as_bytes()).context("the client key")?,
        )?,
        None => builder.with_no_client_auth(),
    };
    tls.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(tls))
}

/// TCP from `source` (a loopback address) to apid.
pub async fn tcp(source: IpAddr, apid: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(source, 0))?;
    let s = socket.connect(apid).await?;
    let _ = s.set_nodelay(true);
    Ok(s)
}

/// A TLS connection, handshake done.
pub async fn tls(
    source: IpAddr,
    apid: SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> std::io::Result<Tls> {
    let s = tcp(source, apid).await?;
    let name = ServerName::IpAddress(apid.ip().into());
    tokio_rustls::TlsConnector::from(config)
        .connect(name, s)
        .await
}

/// A gRPC client over one mutual-TLS connection.
pub async fn client(
    source: IpAddr,
    apid: SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> anyhow::Result<MachineServiceClient<Channel>> {
    let connector = tower::service_fn(move |_: tonic::transport::Uri| {
        let config = config.clone();
        async move { Ok::<_, std::io::Error>(TokioIo::new(tls(source, apid, config).await?)) }
    });
    let channel = Endpoint::from_shared(format!("http://{apid}"))?
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(30))
        .connect_with_connector(connector)
        .await?;
    Ok(MachineServiceClient::new(channel))
}
