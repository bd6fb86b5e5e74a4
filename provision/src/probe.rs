//! A minimal machine-API client for the harness: insecure TLS (maintenance
//! mode), used to poll for readiness and to time boots precisely. The
//! product client is cairnctl's; tests exercise it through the binary
//! (crate `ctl` is a binary, so it cannot be linked here).

use std::sync::Arc;
use std::time::Duration;

use api::machine::machine_service_client::MachineServiceClient;
use api::machine::VersionResponse;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tonic::transport::Endpoint;

use config::tls::AcceptAnyServerCert;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("connecting to 127.0.0.1:{port}: {source}")]
    Connect {
        port: u16,
        source: tonic::transport::Error,
    },
    #[error("Version on 127.0.0.1:{port}: {status}")]
    Call { port: u16, status: tonic::Status },
    #[error("TLS settings: {0}")]
    Tls(#[from] rustls::Error),
}

/// One Version call to apid on `127.0.0.1:port`, without client certs and
/// without verifying the server.
pub async fn version_insecure(port: u16) -> Result<VersionResponse, ApiError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyServerCert::new(provider)))
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"h2".to_vec()];
    let tls = tokio_rustls::TlsConnector::from(Arc::new(tls));
    let connector = tower::service_fn(move |_: tonic::transport::Uri| {
        let tls = tls.clone();
        async move {
            let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
            let name = ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into());
            Ok::<_, std::io::Error>(TokioIo::new(tls.connect(name, tcp).await?))
        }
    });
    let channel = Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
        .expect("static URI")
        .connect_timeout(Duration::from_secs(3))
        .timeout(Duration::from_secs(5))
        .connect_with_connector(connector)
        .await
        .map_err(|source| ApiError::Connect { port, source })?;
    MachineServiceClient::new(channel)
        .version(())
        .await
        .map(tonic::Response::into_inner)
        .map_err(|status| ApiError::Call { port, status })
}
