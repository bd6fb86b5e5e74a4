//! `testpod serve`: answers every HTTP request with 200 and the Pod name, so
//! a client can tell which Pod behind a Service answered.

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use tokio::net::TcpListener;

/// The Pod name: env POD_NAME (downward API), else the hostname (a Pod's
/// hostname is its name).
pub fn pod_name() -> String {
    std::env::var("POD_NAME")
        .ok()
        .filter(|n| !n.is_empty())
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|n| n.trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

/// Serves until the listener fails.
pub async fn serve(listener: TcpListener, name: String) -> std::io::Result<()> {
    let body = Bytes::from(format!("{name}\n"));
    loop {
        let (stream, _) = listener.accept().await?;
        let body = body.clone();
        tokio::spawn(async move {
            let service =
                hyper::service::service_fn(move |_req: Request<hyper::body::Incoming>| {
                    let body = body.clone();
                    async move { Ok::<_, Infallible>(Response::new(Full::new(body))) }
                });
            // A client that goes away mid-request is not our problem.
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Resolves on SIGTERM or SIGINT.
pub async fn terminated() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
        }
        _ => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::get::{get, Request};

    #[tokio::test]
    async fn answers_200_with_the_name() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(serve(listener, "pod-a".into()));
        let url = url::Url::parse(&format!("http://127.0.0.1:{port}/anything")).unwrap();
        let r = get(
            &Request {
                url: &url,
                ca: None,
                token: None,
            },
            None,
        )
        .await
        .unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(String::from_utf8_lossy(&r.body), "pod-a\n");
    }
}
