//! apid's client for machined's MachineService on its unix socket.

use std::path::PathBuf;

use api::machine::machine_service_client::MachineServiceClient;
use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint};

/// A lazily connecting channel: apid starts (and listens) even before
/// machined's socket exists, and reconnects if machined restarts it.
pub fn client(socket: PathBuf) -> MachineServiceClient<Channel> {
    // The URI is required by the API but unused: the connector below
    // decides where to connect.
    let channel = Endpoint::from_static("http://machined.invalid").connect_with_connector_lazy(
        tower::service_fn(move |_| {
            let socket = socket.clone();
            async move {
                Ok::<_, std::io::Error>(TokioIo::new(
                    tokio::net::UnixStream::connect(socket).await?,
                ))
            }
        }),
    );
    MachineServiceClient::new(channel)
}
