//! apid's channel to machined's MachineService on its unix socket.

use std::path::PathBuf;

use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint};

/// A lazily connecting channel: apid starts (and listens) even before
/// machined's socket exists, and reconnects if machined restarts it.
pub fn channel(socket: PathBuf) -> Channel {
    // The URI is required by the API but unused: the connector below
    // decides where to connect.
    Endpoint::from_static("http://machined.invalid").connect_with_connector_lazy(tower::service_fn(
        move |_| {
            let socket = socket.clone();
            async move {
                Ok::<_, std::io::Error>(TokioIo::new(
                    tokio::net::UnixStream::connect(socket).await?,
                ))
            }
        },
    ))
}
