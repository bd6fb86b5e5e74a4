//! `GET /healthz` for the kubelet's probes and for people: 200 with the
//! collector's figures while the reader thread is alive (it beats every
//! loop), 500 once it has been silent for a minute.

use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::buffer::Buffer;
use crate::reader::Shared;
use crate::sender::Stats;

/// Silence of the reader after which it counts as stuck.
const STUCK_MS: u64 = 60_000;

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn answer(shared: &Shared, stats: &Stats, buffer: &Buffer) -> Response<Full<Bytes>> {
    let beat = shared.heartbeat.load(Ordering::Relaxed);
    let alive = now_ms().saturating_sub(beat) < STUCK_MS;
    let body = serde_json::json!({
        "status": if alive { "ok" } else { "reader stuck" },
        "followed_files": shared.followed.load(Ordering::Relaxed),
        "lines_read": shared.lines.load(Ordering::Relaxed),
        "buffered_bytes": buffer.bytes().unwrap_or(0),
        "buffer_full": shared.buffer_full.load(Ordering::Relaxed),
        "delivered_batches": stats.delivered_batches.load(Ordering::Relaxed),
        "delivered_lines": stats.delivered_lines.load(Ordering::Relaxed),
        "store_reachable": stats.store_reachable.load(Ordering::Relaxed),
    });
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    if !alive {
        *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    }
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

/// Serves until `stop`.
pub async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    stats: Arc<Stats>,
    buffer: Buffer,
    stop: CancellationToken,
) {
    loop {
        let stream = tokio::select! {
            _ = stop.cancelled() => return,
            a = listener.accept() => match a {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::debug!(%e, "health accept");
                    continue;
                }
            },
        };
        let (shared, stats, buffer) = (shared.clone(), stats.clone(), buffer.clone());
        tokio::spawn(async move {
            let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let r = if req.uri().path() == "/healthz" {
                    answer(&shared, &stats, &buffer)
                } else {
                    let mut r = Response::new(Full::new(Bytes::from_static(b"not found\n")));
                    *r.status_mut() = StatusCode::NOT_FOUND;
                    r
                };
                async move { Ok::<_, Infallible>(r) }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
