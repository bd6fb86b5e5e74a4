//! The `cairn-prometheus-sd` command: Prometheus's scrape targets from the
//! Kubernetes API over HTTP service discovery (see
//! `metrics_server::discovery`). Runs beside Prometheus in its Pod and
//! listens on the Pod's loopback only. Shared by the `cairn-prometheus-sd`
//! binary and `cairn-metrics-server` called by that name (the image carries
//! one program and a symlink).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::{Endpoints, Node};
use kube::api::{Api, ListParams};
use metrics_server::discovery::{self, Ports};

#[derive(clap::Parser)]
#[command(
    name = "cairn-prometheus-sd",
    version,
    about = "Prometheus targets from the Kubernetes API (http_sd)"
)]
pub struct Args {
    /// Address to serve on (the Pod's loopback: only Prometheus asks).
    #[arg(long, default_value = "127.0.0.1:9102")]
    pub listen: SocketAddr,
    /// A kubeconfig for the API server; default: in-cluster.
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Port of machined's metrics on every node.
    #[arg(long, default_value_t = 9101)]
    pub machined_port: u16,
    /// Port of etcd's plain-HTTP metrics listener on control planes.
    #[arg(long, default_value_t = 2381)]
    pub etcd_metrics_port: u16,
}

type Resp = hyper::Response<Full<Bytes>>;

fn reply(code: http::StatusCode, body: Vec<u8>) -> Resp {
    let mut r = hyper::Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = code;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}

async fn answer(client: kube::Client, ports: Ports, path: &str) -> Resp {
    if path == "/healthz" {
        return reply(http::StatusCode::OK, b"\"ok\"".to_vec());
    }
    let Some(job) = path
        .strip_prefix("/targets/")
        .filter(|j| discovery::JOBS.contains(j))
    else {
        return reply(
            http::StatusCode::NOT_FOUND,
            format!("\"jobs: {:?}\"", discovery::JOBS).into_bytes(),
        );
    };
    let nodes = match job {
        "apiserver" => Vec::new(),
        _ => match Api::<Node>::all(client.clone())
            .list(&ListParams::default())
            .await
        {
            Ok(l) => l.items,
            Err(e) => {
                tracing::warn!(error = %e, "listing Nodes");
                return reply(
                    http::StatusCode::BAD_GATEWAY,
                    serde_json::to_vec(&e.to_string()).unwrap_or_default(),
                );
            }
        },
    };
    let endpoints = match job {
        "apiserver" => match Api::<Endpoints>::namespaced(client, "default")
            .get("kubernetes")
            .await
        {
            Ok(e) => Some(e),
            // No Endpoints: no API server targets (not an error to retry).
            Err(kube::Error::Api(s)) if s.code == 404 => None,
            Err(e) => {
                tracing::warn!(error = %e, "reading Endpoints default/kubernetes");
                return reply(
                    http::StatusCode::BAD_GATEWAY,
                    serde_json::to_vec(&e.to_string()).unwrap_or_default(),
                );
            }
        },
        _ => None,
    };
    match discovery::targets(job, &nodes, endpoints.as_ref(), ports) {
        Some(v) => reply(
            http::StatusCode::OK,
            serde_json::to_vec(&v).unwrap_or_default(),
        ),
        None => reply(http::StatusCode::NOT_FOUND, b"[]".to_vec()),
    }
}

/// Serves the targets until the process ends.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let client = metrics_server::kube_client(args.kubeconfig.as_deref())
        .await
        .context("connecting to the API server")?;
    let ports = Ports {
        machined: args.machined_port,
        etcd_metrics: args.etcd_metrics_port,
    };
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    tracing::info!(listen = %args.listen, "serving Prometheus targets");
    let client = Arc::new(client);
    loop {
        let (tcp, _) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                continue;
            }
        };
        let client = client.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(
                move |req: hyper::Request<hyper::body::Incoming>| {
                    let client = (*client).clone();
                    async move { Ok::<_, Infallible>(answer(client, ports, req.uri().path()).await) }
                },
            );
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), service)
                .await;
        });
    }
}
