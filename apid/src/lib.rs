//! apid: Cairn's external gRPC endpoint on :50000. It terminates TLS
//! (mutual TLS once the node has a machine config), authorizes every call
//! with one role table, and forwards it to machined (the only place node
//! state lives) over its unix socket, or to the node the caller named
//! (Version alone it answers itself: see `version`).
//! machined hands apid its certificates and mode in a settings file that
//! apid reloads when it changes.

pub mod authz;
pub mod gate;
pub mod join;
pub mod limit;
pub mod listener;
pub mod machined;
pub mod members;
pub mod peers;
pub mod privileges;
pub mod proxy;
pub mod settings;
pub mod tls;
pub mod version;

use std::path::PathBuf;
use std::time::Duration;

use tonic::transport::Server;

/// How often apid looks for new settings.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Settings(#[from] settings::SettingsError),
    #[error("the gRPC server failed: {0}")]
    Serve(#[from] tonic::transport::Error),
}

/// Serves on `listener` until the process ends, with the settings in
/// `source` (reloaded every `reload` when they change). `members` are
/// cluster members apid may forward to besides the node itself.
pub async fn serve(
    listener: tokio::net::TcpListener,
    source: settings::Source,
    machined_socket: PathBuf,
    reload: Duration,
    members: Vec<peers::NodeAddr>,
    join: Option<tokio::net::TcpListener>,
) -> Result<(), ServeError> {
    let first = source.load()?;
    tracing::info!(mode = ?first.mode, "serving");
    let local = settings::Local {
        listen_port: listener.local_addr().ok().map(|a| a.port()),
        members,
    };
    let current = settings::Current::new(&first, local)?;
    tokio::spawn(source.watch(current.clone(), reload));
    let upstream = machined::channel(machined_socket);
    if let Some(join) = join {
        let (current, upstream) = (current.clone(), upstream.clone());
        tokio::spawn(async move {
            if let Err(e) = join::serve(join, current, upstream).await {
                tracing::error!(error = %e, "the join port failed");
            }
        });
    }
    let proxy = proxy::Proxy::new(current.clone(), upstream);
    Server::builder()
        // Idle clients are noticed and their connections closed.
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(20)))
        .serve_with_incoming(proxy, listener::incoming(listener, current))
        .await?;
    Ok(())
}
