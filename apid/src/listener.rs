//! Accepting connections: TCP, then a TLS handshake with the settings in
//! force at that moment (so reloaded certificates apply to the next
//! connection without a restart), then the connection goes to the gRPC
//! server with who the peer is attached.
//!
//! Accepting never waits: a connection over a limit (handshakes in
//! progress, connections open; each with a share per client address, see
//! `gate`) is closed at once, so a flood from one address does not hold
//! the door shut for the others.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::Connected;

use crate::gate::{Full, Gate, Quiet, Ticket, Turns};
use crate::settings::{Current, Trust};
use crate::tls::Peer;

/// A handshake that takes longer than this is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes at once, per client address and in all; more wait their
/// turn (within the handshake timeout).
pub const HANDSHAKES_PER_SOURCE: usize = 16;
pub const HANDSHAKES: usize = 256;
/// Connections open (handshakes included): per client address, and in all
/// (kept under the descriptor limit, see [`raise_descriptor_limit`]).
pub const CONNECTIONS_PER_SOURCE: usize = 128;
pub const CONNECTIONS: usize = 1024;

/// What the gRPC handlers learn about a connection (a request extension).
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub remote: SocketAddr,
    pub peer: Arc<Peer>,
    /// The trust the handshake was made under.
    pub trust: Trust,
}

/// A TLS connection and what the handshake established.
pub struct Conn {
    io: tokio_rustls::server::TlsStream<TcpStream>,
    info: ConnInfo,
    /// Its place among the open connections, given back when it closes.
    _open: Ticket,
}

impl Connected for Conn {
    type ConnectInfo = ConnInfo;
    fn connect_info(&self) -> ConnInfo {
        self.info.clone()
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Conn {
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
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

async fn handshake(
    tcp: TcpStream,
    remote: SocketAddr,
    current: &Current,
    open: Ticket,
) -> std::io::Result<Conn> {
    let settings = current.get();
    let _ = tcp.set_nodelay(true);
    let acceptor = tokio_rustls::TlsAcceptor::from(settings.server.clone());
    let io = acceptor.accept(tcp).await?;
    let peer = Peer::from_certificates(io.get_ref().1.peer_certificates());
    Ok(Conn {
        io,
        info: ConnInfo {
            remote,
            peer: Arc::new(peer),
            trust: settings.trust.clone(),
        },
        _open: open,
    })
}

/// Raises the soft limit on open descriptors to the hard one (no privilege
/// needed), so that [`CONNECTIONS`] fit; returns the limit in force.
pub fn raise_descriptor_limit() -> Option<u64> {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut l = getrlimit(Resource::Nofile);
    if l.current < l.maximum {
        l.current = l.maximum;
        let _ = setrlimit(Resource::Nofile, l);
    }
    getrlimit(Resource::Nofile).current
}

/// Accepts connections on `listener` and yields those whose handshake
/// succeeded. Handshakes run concurrently, each in its own task.
pub fn incoming(
    listener: TcpListener,
    current: Arc<Current>,
) -> ReceiverStream<std::io::Result<Conn>> {
    let limit = raise_descriptor_limit();
    // Descriptors beyond connections: the listener, machined, peers, logs.
    let total = limit.map_or(CONNECTIONS, |l| {
        (l.saturating_sub(64) as usize).clamp(16, CONNECTIONS)
    });
    let connections = Gate::new(CONNECTIONS_PER_SOURCE.min(total), total);
    let handshakes = Turns::new(HANDSHAKES_PER_SOURCE, HANDSHAKES);
    let refused = Arc::new(Quiet::new(Duration::from_secs(10)));
    let failed = Arc::new(Quiet::new(Duration::from_secs(10)));
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let (tcp, remote) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    // EMFILE and friends: wait a little instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let open = match connections.enter(remote.ip()) {
                Ok(t) => t,
                Err(why) => {
                    drop(tcp);
                    if let Some(skipped) = refused.pass() {
                        let why = match why {
                            Full::Source => "this address has its share of connections open",
                            Full::Total => "apid has all the connections it may have open",
                        };
                        tracing::warn!(%remote, skipped, open = connections.in_use(), "connection refused: {why}");
                    }
                    continue;
                }
            };
            let (tx, current, failed) = (tx.clone(), current.clone(), failed.clone());
            let handshakes = handshakes.clone();
            tokio::spawn(async move {
                // The turn is waited for within the handshake's time.
                let r = tokio::time::timeout(HANDSHAKE_TIMEOUT, async {
                    let _turn = handshakes.take(remote.ip()).await;
                    handshake(tcp, remote, &current, open).await
                })
                .await;
                match r {
                    Ok(Ok(conn)) => {
                        let _ = tx.send(Ok(conn)).await;
                    }
                    Ok(Err(e)) => {
                        if let Some(skipped) = failed.pass() {
                            tracing::info!(%remote, skipped, error = %e, "TLS handshake failed");
                        }
                    }
                    Err(_) => {
                        if let Some(skipped) = failed.pass() {
                            tracing::info!(%remote, skipped, "TLS handshake timed out");
                        }
                    }
                }
            });
        }
    });
    ReceiverStream::new(rx)
}
