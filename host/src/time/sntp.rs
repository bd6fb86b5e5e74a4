//! One SNTP exchange (RFC 4330) over a tokio UDP socket. The packet format
//! and the offset arithmetic are `sntpc`'s; this adapts its socket trait.

use std::net::SocketAddr;
use std::time::Duration;

use sntpc::{NtpContext, NtpUdpSocket, StdTimestampGen};
use tokio::net::UdpSocket;

/// The NTP port.
pub const PORT: u16 = 123;

#[derive(Debug, thiserror::Error)]
pub enum SntpError {
    #[error("cannot open a UDP socket: {0}")]
    Socket(#[source] std::io::Error),
    #[error("no answer from {0} within {1:?}")]
    Timeout(SocketAddr, Duration),
    #[error("bad answer from {0}: {1:?}")]
    Protocol(SocketAddr, sntpc::Error),
}

/// What a server said about our clock.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// How far our clock is behind the server, in microseconds (negative:
    /// ahead).
    pub offset_us: i64,
    pub roundtrip_us: u64,
    pub stratum: u8,
}

struct Socket(UdpSocket);

impl NtpUdpSocket for Socket {
    async fn send_to(&self, buf: &[u8], addr: SocketAddr) -> sntpc::Result<usize> {
        self.0
            .send_to(buf, addr)
            .await
            .map_err(|_| sntpc::Error::Network)
    }

    async fn recv_from(&self, buf: &mut [u8]) -> sntpc::Result<(usize, SocketAddr)> {
        self.0
            .recv_from(buf)
            .await
            .map_err(|_| sntpc::Error::Network)
    }
}

/// Asks `server` for the time once.
pub async fn query(server: SocketAddr, timeout: Duration) -> Result<Sample, SntpError> {
    let bind: SocketAddr = if server.is_ipv4() {
        "0.0.0.0:0".parse().expect("literal address")
    } else {
        "[::]:0".parse().expect("literal address")
    };
    let sock = UdpSocket::bind(bind).await.map_err(SntpError::Socket)?;
    let sock = Socket(sock);
    let context = NtpContext::new(StdTimestampGen::default());
    let result = tokio::time::timeout(timeout, sntpc::get_time(server, &sock, context))
        .await
        .map_err(|_| SntpError::Timeout(server, timeout))?
        .map_err(|e| SntpError::Protocol(server, e))?;
    Ok(Sample {
        offset_us: result.offset(),
        roundtrip_us: result.roundtrip(),
        stratum: result.stratum(),
    })
}
