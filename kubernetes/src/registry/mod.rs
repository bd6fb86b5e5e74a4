//! The node's image cache as a registry: a read-only OCI distribution API
//! on the loopback (see [`http`]), answering from containerd's `k8s.io`
//! content store, and the registry hosts directory that makes containerd
//! ask it first for every registry.
//!
//! Why: a Pod naming a cached image with `:latest` (pull policy `Always`)
//! makes containerd resolve the tag over the network even though the image
//! is on the node. With the cache as the first mirror of every registry,
//! the tag resolves here and the blobs are already in the store, so the Pod
//! starts with no network. Images not in the cache get a 404 and containerd
//! goes on to the configured mirrors and the registry itself.
//!
//! Only images Cairn's importer created (the payload's and
//! `cairnctl image import`'s, labelled with
//! [`crate::containerd::import::ORIGIN_LABEL`]) are served by tag;
//! images the kubelet pulled with credentials are not handed to other
//! callers on the loopback. Blobs and manifests by digest are served from
//! the whole store (a digest is a capability, as in any registry).
//!
//! It runs inside machined, next to containerd's import, rather than as a
//! separate program: it needs nothing but containerd's socket and a
//! listener, and machined already holds both clients.

pub mod http;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use containerd_client::services::v1::content_client::ContentClient;
use containerd_client::services::v1::images_client::ImagesClient;
use containerd_client::services::v1::{GetImageRequest, InfoRequest, ReadContentRequest};
use futures::future::BoxFuture;
use futures::StreamExt;
use hyper_util::rt::TokioIo;
use tonic::{Code, Request};

use crate::containerd::import::origin_of;
use runtime::resources::{kind, Filter, Watch};
use runtime::Runtime;

use self::http::{BlobStream, Source, Target};

/// Where the image cache listens: the loopback only.
pub const ADDR: &str = "127.0.0.1:5050";

/// The cache as a registry host of containerd's hosts files.
pub fn url() -> String {
    format!("http://{ADDR}")
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
}

/// Images from containerd's content store, over its API.
#[derive(Debug, Clone)]
pub struct Containerd {
    pub socket: PathBuf,
    pub namespace: String,
}

impl Containerd {
    pub fn node() -> Containerd {
        Containerd {
            socket: config::constants::k8s::CONTAINERD_SOCKET.into(),
            namespace: config::constants::k8s::CONTAINERD_NAMESPACE.into(),
        }
    }

    fn request<T>(&self, msg: T) -> Request<T> {
        let mut r = Request::new(msg);
        if let Ok(v) = self.namespace.parse() {
            r.metadata_mut().insert("containerd-namespace", v);
        }
        r
    }

    async fn channel(&self) -> Result<tonic::transport::Channel, String> {
        crate::containerd::connect(&self.socket)
            .await
            .map_err(|e| e.to_string())
    }
}

impl Source for Containerd {
    fn resolve(&self, reference: &str) -> BoxFuture<'_, Result<Option<Target>, String>> {
        let name = reference.to_string();
        Box::pin(async move {
            let channel = self.channel().await?;
            let got = ImagesClient::new(channel.clone())
                .get(self.request(GetImageRequest { name }))
                .await;
            let image = match got {
                Ok(r) => r.into_inner().image,
                Err(s) if s.code() == Code::NotFound => None,
                Err(s) => return Err(s.message().to_string()),
            };
            let Some(image) = image else {
                return Ok(None);
            };
            let origin = origin_of(&channel, &self.namespace, &image)
                .await
                .map_err(|s| s.message().to_string())?;
            if origin.is_none() {
                return Ok(None);
            }
            Ok(image.target.map(|t| Target {
                media_type: t.media_type,
                digest: t.digest,
                size: t.size.max(0) as u64,
            }))
        })
    }

    fn size(&self, digest: &str) -> BoxFuture<'_, Result<Option<u64>, String>> {
        let digest = digest.to_string();
        Box::pin(async move {
            let channel = self.channel().await?;
            match ContentClient::new(channel)
                .info(self.request(InfoRequest { digest }))
                .await
            {
                Ok(r) => Ok(r.into_inner().info.map(|i| i.size.max(0) as u64)),
                Err(s) if s.code() == Code::NotFound => Ok(None),
                Err(s) => Err(s.message().to_string()),
            }
        })
    }

    fn read(&self, digest: &str) -> BoxFuture<'_, Result<BlobStream, String>> {
        let digest = digest.to_string();
        Box::pin(async move {
            let channel = self.channel().await?;
            let stream = ContentClient::new(channel)
                .read(self.request(ReadContentRequest {
                    digest,
                    offset: 0,
                    size: 0,
                }))
                .await
                .map_err(|s| s.message().to_string())?
                .into_inner();
            Ok(stream
                .map(|r| {
                    r.map(|m| Bytes::from(m.data))
                        .map_err(|s| std::io::Error::other(s.message().to_string()))
                })
                .boxed())
        })
    }
}

/// Serves `source` on `listener` until the listener fails.
pub async fn serve<S: Source>(
    listener: tokio::net::TcpListener,
    source: Arc<S>,
) -> std::io::Result<()> {
    loop {
        let (stream, _) = listener.accept().await?;
        let source = source.clone();
        tokio::spawn(async move {
            let svc =
                hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let source = source.clone();
                    async move {
                        let r = http::handle(&*source, req.method(), req.uri()).await;
                        Ok::<_, std::convert::Infallible>(r)
                    }
                });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

/// Binds the cache's address.
pub async fn listen(addr: &str) -> Result<tokio::net::TcpListener, RegistryError> {
    let parsed: SocketAddr = addr.parse().map_err(|e| RegistryError::Listen {
        addr: addr.to_string(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidInput, e),
    })?;
    tokio::net::TcpListener::bind(parsed)
        .await
        .map_err(|source| RegistryError::Listen {
            addr: addr.to_string(),
            source,
        })
}

/// The image cache on the node: keeps containerd's hosts directory in step
/// with the machine config's mirrors, and serves the cache on [`ADDR`]
/// (listening again after a failure). Started once, before containerd.
pub async fn run(node: Runtime) {
    tokio::spawn(keep_hosts(node));
    loop {
        match listen(ADDR).await {
            Ok(listener) => {
                runtime::console!("image cache: serving the node's images on {}", url());
                if let Err(e) = serve(listener, Arc::new(Containerd::node())).await {
                    runtime::console!("image cache: {e}; listening again");
                }
            }
            Err(e) => runtime::console!("image cache: {e}"),
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}

/// Writes containerd's registry hosts directory from the running config,
/// now and whenever the config changes. containerd reads it at each pull,
/// so a changed mirror applies without a restart.
async fn keep_hosts(node: Runtime) {
    let filter = Filter {
        kinds: vec![kind::MACHINE_CONFIG],
        id: None,
    };
    let mut watch = Watch::new(&node.store, filter, false);
    let mut written: Option<BTreeMap<String, String>> = None;
    loop {
        if let Some(cfg) = node.running_config() {
            let settings = crate::containerd::Settings::from_config(&cfg);
            let cache = url();
            let files = crate::containerd::config::hosts_files(&settings, Some(&cache));
            if written.as_ref() != Some(&files) {
                let dir = std::path::Path::new(crate::containerd::config::HOSTS_DIR);
                match crate::containerd::config::write_hosts(dir, &settings, Some(&cache)) {
                    Ok(()) => written = Some(files),
                    Err(e) => {
                        runtime::console!("image cache: cannot write {}: {e}", dir.display())
                    }
                }
            }
        }
        let _ = tokio::time::timeout(Duration::from_secs(30), watch.next()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The server answers over real HTTP (hyper's client) on a loopback port.
    #[tokio::test]
    async fn serves_over_http() {
        struct Empty;
        impl Source for Empty {
            fn resolve(&self, _: &str) -> BoxFuture<'_, Result<Option<Target>, String>> {
                Box::pin(async { Ok(None) })
            }
            fn size(&self, _: &str) -> BoxFuture<'_, Result<Option<u64>, String>> {
                Box::pin(async { Ok(None) })
            }
            fn read(&self, _: &str) -> BoxFuture<'_, Result<BlobStream, String>> {
                Box::pin(async { Err("none".to_string()) })
            }
        }
        let listener = listen("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(serve(listener, Arc::new(Empty)));
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(conn);
        let req = hyper::Request::get("/v2/x/manifests/latest?ns=docker.io")
            .header("host", addr.to_string())
            .body(http_body_util::Empty::<Bytes>::new())
            .unwrap();
        let r = send.send_request(req).await.unwrap();
        assert_eq!(r.status(), 404);
        assert_eq!(r.headers()["content-type"], "application/json");
    }
}

#[cfg(test)]
mod host_tests;
