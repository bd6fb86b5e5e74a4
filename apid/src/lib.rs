//! apid: Cairn's external gRPC endpoint on :50000. In maintenance mode it
//! serves TLS without client certificates and answers only what an
//! unconfigured node must, forwarding to machined (the only place node
//! state lives) over its unix socket.

pub mod machined;
pub mod policy;
pub mod privileges;
pub mod server;

use std::net::SocketAddr;
use std::path::PathBuf;

use api::machine::machine_service_server::MachineServiceServer;
use tonic::transport::{Identity, Server, ServerTlsConfig};

/// Serves the maintenance-mode API with TLS on `listener` until the
/// process ends.
pub async fn serve_maintenance(
    listener: tokio::net::TcpListener,
    cert_pem: &[u8],
    key_pem: &[u8],
    machined_socket: PathBuf,
) -> anyhow::Result<()> {
    let tls = ServerTlsConfig::new().identity(Identity::from_pem(cert_pem, key_pem));
    let api = server::MaintenanceApi::new(machined::client(machined_socket));
    Server::builder()
        .tls_config(tls)?
        .add_service(MachineServiceServer::new(api))
        .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
        .await?;
    Ok(())
}

/// Binds the listening socket.
pub async fn listen(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await
}
