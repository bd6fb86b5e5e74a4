//! The DNS listeners: UDP datagrams and TCP connections (RFC 1035 4.2.2 framing, several
//! queries per connection). Each query runs in its own task so a slow upstream never
//! holds up cluster answers; a semaphore bounds the queries in flight.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::answer::{Resolver, Transport};

/// Queries answered at once; more wait for a slot (UDP) or for the next read (TCP).
const MAX_IN_FLIGHT: usize = 1024;
/// TCP connections open at once.
const MAX_TCP_CONNECTIONS: usize = 256;
/// A TCP connection with no new query for this long is closed (RFC 7766 suggests
/// seconds, not minutes).
const TCP_IDLE: Duration = Duration::from_secs(10);
/// Largest UDP query accepted.
const UDP_BUFFER: usize = 4096;

#[derive(Clone)]
pub struct Server {
    resolver: Arc<Resolver>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
    in_flight: Arc<Semaphore>,
}

impl Server {
    pub fn new(resolver: Arc<Resolver>, tracker: TaskTracker, shutdown: CancellationToken) -> Self {
        Self {
            resolver,
            tracker,
            shutdown,
            in_flight: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
        }
    }

    /// Serves UDP queries until shutdown.
    pub async fn serve_udp(self, socket: UdpSocket) {
        let socket = Arc::new(socket);
        let mut buf = vec![0u8; UDP_BUFFER];
        loop {
            let (len, peer) = tokio::select! {
                _ = self.shutdown.cancelled() => return,
                received = socket.recv_from(&mut buf) => match received {
                    Ok(received) => received,
                    Err(err) => {
                        // ICMP errors from earlier sends surface here on Linux; they
                        // concern one client, not the socket.
                        tracing::debug!(%err, "udp receive");
                        continue;
                    }
                },
            };
            let Ok(permit) = self.in_flight.clone().acquire_owned().await else {
                return;
            };
            let query = buf[..len].to_vec();
            let (socket, resolver) = (socket.clone(), self.resolver.clone());
            self.tracker.spawn(async move {
                if let Some(reply) = resolver.answer(&query, Transport::Udp).await {
                    if let Err(err) = socket.send_to(&reply, peer).await {
                        tracing::debug!(%err, %peer, "udp send");
                    }
                }
                drop(permit);
            });
        }
    }

    /// Accepts TCP connections until shutdown.
    pub async fn serve_tcp(self, listener: TcpListener) {
        let connections = Arc::new(Semaphore::new(MAX_TCP_CONNECTIONS));
        loop {
            let slot = tokio::select! {
                _ = self.shutdown.cancelled() => return,
                slot = connections.clone().acquire_owned() => slot,
            };
            let Ok(slot) = slot else {
                return;
            };
            let (stream, peer) = tokio::select! {
                _ = self.shutdown.cancelled() => return,
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(err) => {
                        tracing::warn!(%err, "tcp accept");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let server = self.clone();
            self.tracker.spawn(async move {
                if let Err(err) = server.connection(stream).await {
                    tracing::debug!(%err, %peer, "tcp connection");
                }
                drop(slot);
            });
        }
    }

    async fn connection(&self, mut stream: TcpStream) -> std::io::Result<()> {
        loop {
            let len = tokio::select! {
                _ = self.shutdown.cancelled() => return Ok(()),
                len = tokio::time::timeout(TCP_IDLE, stream.read_u16()) => match len {
                    Ok(Ok(len)) => len,
                    // Idle timeout or the client closed: both end the connection.
                    Ok(Err(_)) | Err(_) => return Ok(()),
                },
            };
            let mut query = vec![0u8; usize::from(len)];
            tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut query)).await??;
            let reply = {
                let _permit = self
                    .in_flight
                    .acquire()
                    .await
                    .map_err(std::io::Error::other)?;
                self.resolver.answer(&query, Transport::Tcp).await
            };
            let Some(reply) = reply else {
                return Ok(());
            };
            let mut framed = Vec::with_capacity(reply.len() + 2);
            framed.extend_from_slice(&(reply.len() as u16).to_be_bytes());
            framed.extend_from_slice(&reply);
            stream.write_all(&framed).await?;
        }
    }
}

/// Binds the UDP socket and TCP listener of one `--listen` address.
pub async fn bind(addr: SocketAddr) -> std::io::Result<(UdpSocket, TcpListener)> {
    let udp = UdpSocket::bind(addr).await?;
    // Port 0 means "any": TCP takes the port UDP got, so one address serves both.
    let tcp_addr = SocketAddr::new(addr.ip(), udp.local_addr()?.port());
    let tcp = TcpListener::bind(tcp_addr).await?;
    Ok((udp, tcp))
}
