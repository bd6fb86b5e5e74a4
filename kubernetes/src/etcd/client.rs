//! machined's etcd client (etcd-client, tonic over mutual TLS with the
//! certificate in /system/secrets/etcd/client.crt): health, member list and
//! snapshots.

use std::path::Path;
use std::pin::Pin;
use std::time::Duration;

use etcd_client::{Certificate, Client, ConnectOptions, Identity, TlsOptions};
use futures::Stream;

use super::EtcdError;

/// Files machined reads to talk to etcd.
#[derive(Debug, Clone)]
pub struct ClientFiles {
    pub ca: std::path::PathBuf,
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
}

impl ClientFiles {
    /// The client files in an etcd secrets directory.
    pub fn in_dir(dir: &Path) -> ClientFiles {
        use config::constants::k8s::etcd;
        let f = |c: &str| dir.join(Path::new(c).file_name().expect("a file path"));
        ClientFiles {
            ca: f(etcd::CA_CERT),
            cert: f(etcd::CLIENT_CERT),
            key: f(etcd::CLIENT_KEY),
        }
    }
}

fn read(path: &Path) -> Result<Vec<u8>, EtcdError> {
    std::fs::read(path).map_err(|source| EtcdError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Connects to `endpoint` (`https://127.0.0.1:2379`); every request then
/// has `timeout`, or none.
pub async fn connect(
    endpoint: &str,
    files: &ClientFiles,
    timeout: Option<Duration>,
) -> Result<Client, EtcdError> {
    let tls = TlsOptions::new()
        .ca_certificate(Certificate::from_pem(read(&files.ca)?))
        .identity(Identity::from_pem(read(&files.cert)?, read(&files.key)?));
    let mut options = ConnectOptions::new()
        .with_tls(tls)
        .with_connect_timeout(Duration::from_secs(5));
    if let Some(t) = timeout {
        options = options.with_timeout(t);
    }
    Client::connect([endpoint], Some(options))
        .await
        .map_err(|e| EtcdError::Client(e.to_string()))
}

/// Healthy when the member answers a status request and knows a leader.
pub async fn health(endpoint: &str, files: &ClientFiles) -> Result<(), String> {
    let mut c = connect(endpoint, files, Some(Duration::from_secs(3)))
        .await
        .map_err(|e| e.to_string())?;
    let s = c.status().await.map_err(|e| format!("status: {e}"))?;
    if s.leader() == 0 {
        return Err("no leader elected yet".into());
    }
    Ok(())
}

/// The cluster's members, as the API reports them.
pub async fn members(
    endpoint: &str,
    files: &ClientFiles,
) -> Result<Vec<api::machine::EtcdMember>, EtcdError> {
    let mut c = connect(endpoint, files, Some(Duration::from_secs(10))).await?;
    let list = c
        .member_list()
        .await
        .map_err(|e| EtcdError::Client(e.to_string()))?;
    Ok(list
        .members()
        .iter()
        .map(|m| api::machine::EtcdMember {
            id: m.id(),
            hostname: m.name().to_string(),
            peer_urls: m.peer_urls().to_vec(),
            client_urls: m.client_urls().to_vec(),
            is_learner: m.is_learner(),
        })
        .collect())
}

pub type Chunks = Pin<Box<dyn Stream<Item = Result<Vec<u8>, EtcdError>> + Send>>;

/// A snapshot of the keyspace, streamed as etcd sends it. The stream ends
/// after the first error.
pub async fn snapshot(endpoint: &str, files: &ClientFiles) -> Result<Chunks, EtcdError> {
    // No per-request deadline: a snapshot of a large keyspace takes a while.
    let c = connect(endpoint, files, None).await?;
    let mut m = c.maintenance_client();
    let s = m
        .snapshot()
        .await
        .map_err(|e| EtcdError::Client(e.to_string()))?;
    Ok(Box::pin(futures::stream::unfold(Some(s), |s| async move {
        let mut s = s?;
        match s.message().await {
            Ok(Some(r)) => Some((Ok(r.blob().to_vec()), Some(s))),
            Ok(None) => None,
            Err(e) => Some((Err(EtcdError::Client(format!("snapshot: {e}"))), None)),
        }
    })))
}
