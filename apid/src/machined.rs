//! apid's channel to machined's MachineService on its unix socket.

use std::path::PathBuf;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint};

use crate::peers::{KEEPALIVE_INTERVAL, KEEPALIVE_TIMEOUT};

/// A unix socket connect waits when machined's backlog is full; this long
/// at most.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A lazily connecting channel: apid starts (and listens) even before
/// machined's socket exists, and reconnects if machined restarts it.
/// HTTP/2 pings close a connection to a machined that stopped answering.
pub fn channel(socket: PathBuf) -> Channel {
    // The URI is required by the API but unused: the connector below
    // decides where to connect.
    Endpoint::from_static("http://machined.invalid")
        .connect_timeout(CONNECT_TIMEOUT)
        .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT)
        .keep_alive_while_idle(true)
        .initial_stream_window_size(crate::limit::UPSTREAM_STREAM_WINDOW)
        .initial_connection_window_size(crate::limit::UPSTREAM_CONNECTION_WINDOW)
        .connect_with_connector_lazy(tower::service_fn(move |_| {
            let socket = socket.clone();
            async move {
                let stream =
                    tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::UnixStream::connect(socket))
                        .await
                        .map_err(|_| {
                            std::io::Error::new(
                                std::io::ErrorKind::TimedOut,
                                "machined's socket accepted no connection within 5 s",
                            )
                        })??;
                Ok::<_, std::io::Error>(TokioIo::new(stream))
            }
        }))
}
