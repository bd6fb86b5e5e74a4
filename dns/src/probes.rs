//! HTTP endpoints for the kubelet's probes: `GET /health` answers 200 while the process
//! serves, `GET /ready` answers 200 once the first full sync of the watchers completed
//! (503 before, and again from shutdown on, so the Service stops sending queries).

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub const HEALTH_PATH: &str = "/health";
pub const READY_PATH: &str = "/ready";

/// Serves both paths on `listener` until shutdown.
pub async fn serve(
    listener: TcpListener,
    ready: Arc<AtomicBool>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
) {
    loop {
        let stream = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(err) => {
                    tracing::warn!(%err, "probe accept");
                    continue;
                }
            },
        };
        let ready = ready.clone();
        let service = service_fn(move |request| {
            let ready = ready.load(Ordering::Relaxed);
            async move { Ok::<_, Infallible>(route(&request, ready)) }
        });
        tracker.spawn(async move {
            if let Err(err) = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(%err, "probe connection");
            }
        });
    }
}

fn route(request: &Request<Incoming>, ready: bool) -> Response<Full<Bytes>> {
    let (status, body) = match (request.method(), request.uri().path()) {
        (&Method::GET | &Method::HEAD, HEALTH_PATH) => (StatusCode::OK, "OK\n"),
        (&Method::GET | &Method::HEAD, READY_PATH) if ready => (StatusCode::OK, "OK\n"),
        (&Method::GET | &Method::HEAD, READY_PATH) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "waiting for the first sync\n",
        ),
        _ => (StatusCode::NOT_FOUND, "not found\n"),
    };
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response
}
