//! A minimal HTTP/1.1 GET for `cairn.config=<url>` (plain http for now),
//! on hyper's connection API. No redirects; the body is size-limited.

use std::time::Duration;

use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;

/// Largest config accepted.
pub const MAX_BODY: usize = 4 << 20;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("{0:?} is not a valid URL")]
    BadUrl(String),
    #[error("{0}: only http:// URLs are supported for now")]
    UnsupportedScheme(String),
    #[error("cannot connect to {authority}: {source}")]
    Connect {
        authority: String,
        #[source]
        source: std::io::Error,
    },
    #[error("HTTP request to {url} failed: {message}")]
    Request { url: String, message: String },
    #[error("{url} answered {status}")]
    Status { url: String, status: u16 },
    #[error("{url} timed out after {timeout:?}")]
    Timeout { url: String, timeout: Duration },
}

/// GETs `url` and returns the body of a 200 response.
pub async fn get(url: &str, timeout: Duration) -> Result<Vec<u8>, HttpError> {
    tokio::time::timeout(timeout, get_inner(url))
        .await
        .unwrap_or_else(|_| {
            Err(HttpError::Timeout {
                url: url.to_string(),
                timeout,
            })
        })
}

async fn get_inner(url: &str) -> Result<Vec<u8>, HttpError> {
    let uri: hyper::Uri = url
        .parse()
        .map_err(|_| HttpError::BadUrl(url.to_string()))?;
    if uri.scheme_str() != Some("http") {
        return Err(HttpError::UnsupportedScheme(url.to_string()));
    }
    let authority = uri
        .authority()
        .ok_or_else(|| HttpError::BadUrl(url.to_string()))?
        .clone();
    let port = authority.port_u16().unwrap_or(80);
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let stream = tokio::net::TcpStream::connect((host, port))
        .await
        .map_err(|source| HttpError::Connect {
            authority: authority.to_string(),
            source,
        })?;
    let req_err = |e: &dyn std::fmt::Display| HttpError::Request {
        url: url.to_string(),
        message: e.to_string(),
    };
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| req_err(&e))?;
    let conn = tokio::spawn(conn);
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let req = hyper::Request::get(path)
        .header(hyper::header::HOST, authority.as_str())
        .header(
            hyper::header::USER_AGENT,
            format!("cairn-machined/{}", config::version::running().version),
        )
        .body(Empty::<Bytes>::new())
        .map_err(|e| req_err(&e))?;
    let resp = sender.send_request(req).await.map_err(|e| req_err(&e))?;
    if resp.status() != hyper::StatusCode::OK {
        conn.abort();
        return Err(HttpError::Status {
            url: url.to_string(),
            status: resp.status().as_u16(),
        });
    }
    let body = Limited::new(resp.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|e| req_err(&*e))?
        .to_bytes();
    conn.abort();
    Ok(body.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    /// A one-shot HTTP server on 127.0.0.1 answering with `response`;
    /// returns its port and the request it saw.
    fn serve_once(response: &'static str) -> (u16, std::thread::JoinHandle<String>) {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let t = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut buf = [0u8; 4096];
            let n = s.read(&mut buf).unwrap();
            s.write_all(response.as_bytes()).unwrap();
            String::from_utf8_lossy(&buf[..n]).into_owned()
        });
        (port, t)
    }

    #[tokio::test]
    async fn fetches_a_body() {
        let (port, t) = serve_once(
            "HTTP/1.1 200 OK\r\nContent-Length: 13\r\nConnection: close\r\n\r\nversion: v1\n\n",
        );
        let body = get(
            &format!("http://127.0.0.1:{port}/cfg/node.yaml?x=1"),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
        assert_eq!(body, b"version: v1\n\n");
        let req = t.join().unwrap();
        assert!(
            req.starts_with("GET /cfg/node.yaml?x=1 HTTP/1.1\r\n"),
            "{req}"
        );
        assert!(
            req.to_lowercase()
                .contains(&format!("host: 127.0.0.1:{port}")),
            "{req}"
        );
    }

    #[tokio::test]
    async fn reports_status_scheme_and_connect_errors() {
        let (port, _t) = serve_once("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
        let e = get(
            &format!("http://127.0.0.1:{port}/x"),
            Duration::from_secs(5),
        )
        .await
        .unwrap_err();
        assert!(matches!(e, HttpError::Status { status: 404, .. }), "{e}");
        let e = get("https://127.0.0.1/x", Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(matches!(e, HttpError::UnsupportedScheme(_)));
        // A port nothing listens on (bound then dropped).
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let e = get(&format!("http://127.0.0.1:{port}/"), Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(matches!(e, HttpError::Connect { .. }), "{e}");
    }
}
