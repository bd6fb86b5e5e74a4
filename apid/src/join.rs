//! The join port (:50001) of a control plane: `cairn.security.v1.Security`
//! for machines that have no client certificate yet. TLS with the node's
//! server certificate and no client authentication (the caller verifies
//! the server against the OS CA in its config; the join token in the
//! request authenticates it, checked by machined). Each call is forwarded to
//! machined with the address it came from (`x-cairn-peer`), which machined
//! rate-limits and certifies; nothing else is served here.
//!
//! Served only while the settings say so (`join`, a node holding the OS CA
//! key): elsewhere a connection is closed before the handshake.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use api::security::security_client::SecurityClient;
use api::security::security_server::{Security, SecurityServer};
use api::security::{CertificateRequest, CertificateResponse};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::Connected;
use tonic::transport::{Channel, Server};
use tonic::{Request, Response, Status};

use crate::settings::Current;

/// Metadata naming the caller's address for machined.
pub const PEER_METADATA: &str = "x-cairn-peer";
/// Connections at once on the join port (handshakes included).
const CONNECTIONS: usize = 64;
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// A certificate request is a few hundred bytes.
const MAX_MESSAGE: usize = 64 << 10;

/// The address a join connection came from.
#[derive(Debug, Clone, Copy)]
pub struct JoinPeer(pub SocketAddr);

/// A TLS connection on the join port.
pub struct JoinConn {
    io: tokio_rustls::server::TlsStream<TcpStream>,
    remote: SocketAddr,
    _slot: tokio::sync::OwnedSemaphorePermit,
}

impl Connected for JoinConn {
    type ConnectInfo = JoinPeer;
    fn connect_info(&self) -> JoinPeer {
        JoinPeer(self.remote)
    }
}

impl AsyncRead for JoinConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for JoinConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Accepts join connections while the settings allow it; a connection over
/// the limit, or while this node does not sign, is closed at once.
fn incoming(
    listener: TcpListener,
    current: Arc<Current>,
) -> ReceiverStream<std::io::Result<JoinConn>> {
    let (tx, rx) = mpsc::channel(16);
    let slots = Arc::new(Semaphore::new(CONNECTIONS));
    tokio::spawn(async move {
        loop {
            let Ok((tcp, remote)) = listener.accept().await else {
                continue;
            };
            let Some(config) = current.get().join.clone() else {
                continue;
            };
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                continue;
            };
            let tx = tx.clone();
            tokio::spawn(async move {
                let _ = tcp.set_nodelay(true);
                let acceptor = tokio_rustls::TlsAcceptor::from(config);
                if let Ok(Ok(io)) =
                    tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await
                {
                    let _ = tx
                        .send(Ok(JoinConn {
                            io,
                            remote,
                            _slot: slot,
                        }))
                        .await;
                }
            });
        }
    });
    ReceiverStream::new(rx)
}

/// Forwards each call to machined's Security service with the caller's
/// address.
pub struct JoinProxy {
    machined: SecurityClient<Channel>,
}

#[tonic::async_trait]
impl Security for JoinProxy {
    async fn certificate(
        &self,
        req: Request<CertificateRequest>,
    ) -> Result<Response<CertificateResponse>, Status> {
        let peer = req
            .extensions()
            .get::<JoinPeer>()
            .map(|p| p.0.ip())
            .ok_or_else(|| Status::internal("the connection's address is unknown"))?;
        let mut upstream = Request::new(req.into_inner());
        upstream.metadata_mut().insert(
            PEER_METADATA,
            peer.to_string()
                .parse()
                .map_err(|_| Status::internal("an address that is not ASCII"))?,
        );
        upstream.set_timeout(Duration::from_secs(30));
        self.machined.clone().certificate(upstream).await
    }
}

/// Serves the join port on `listener` until the process ends.
pub async fn serve(
    listener: TcpListener,
    current: Arc<Current>,
    machined: Channel,
) -> Result<(), tonic::transport::Error> {
    let service = SecurityServer::new(JoinProxy {
        machined: SecurityClient::new(machined),
    })
    .max_decoding_message_size(MAX_MESSAGE);
    Server::builder()
        .timeout(Duration::from_secs(60))
        .add_service(service)
        .serve_with_incoming(incoming(listener, current))
        .await
}
