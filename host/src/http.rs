//! A minimal HTTP/1.1 GET for `cairn.config=<url>`, on hyper's connection
//! API, over plain TCP or TLS. No redirects; the body is size-limited.
//!
//! The first config holds the cluster's keys, so what the node accepts is
//! pinned on the kernel command line ([`Pins`]): a plain `http://` config
//! must have the SHA-256 given in `cairn.config.sha256=`, and an
//! `https://` server must present the certificate whose SHA-256 is
//! `cairn.config.fingerprint=` (no CA is known at boot; a pinned
//! certificate also keeps a man in the middle from reading the config).

use std::sync::Arc;
use std::time::Duration;

use config::constants::cmdline::{CONFIG_FINGERPRINT, CONFIG_SHA256};
use config::tls::{is_fingerprint, normalize_fingerprint, AcceptAnyServerCert};
use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncWrite};

/// Largest config accepted.
pub const MAX_BODY: usize = 4 << 20;

/// What a fetched config is checked against.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pins {
    /// `cairn.config.sha256=`: the body's SHA-256, lowercase hex.
    pub body_sha256: Option<String>,
    /// `cairn.config.fingerprint=`: the https server certificate's
    /// SHA-256, lowercase hex.
    pub server_fingerprint: Option<String>,
}

impl Pins {
    /// The pins from the command line's values, each checked to be a
    /// SHA-256 (64 hex digits; `sha256:` and colons allowed).
    pub fn new(
        body_sha256: Option<&str>,
        server_fingerprint: Option<&str>,
    ) -> Result<Pins, HttpError> {
        let check = |key: &'static str, v: Option<&str>| match v {
            None => Ok(None),
            Some(v) if is_fingerprint(v) => Ok(Some(normalize_fingerprint(v))),
            Some(v) => Err(HttpError::BadPin {
                key,
                value: v.to_string(),
            }),
        };
        Ok(Pins {
            body_sha256: check(CONFIG_SHA256, body_sha256)?,
            server_fingerprint: check(CONFIG_FINGERPRINT, server_fingerprint)?,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("{0:?} is not a valid URL")]
    BadUrl(String),
    #[error("{0}: only http:// (and for configs https://) URLs are supported")]
    UnsupportedScheme(String),
    #[error("{key}={value:?} is not a SHA-256 (64 hex digits)")]
    BadPin { key: &'static str, value: String },
    #[error(
        "{0}: a plain http:// config is accepted only with {CONFIG_SHA256}=<its SHA-256> on the \
         kernel command line (anyone on the path could change it)"
    )]
    UnpinnedHttp(String),
    #[error(
        "{0}: an https:// config is fetched only with {CONFIG_FINGERPRINT}=<the SHA-256 of the \
         server's certificate> on the kernel command line (no CA is known at boot)"
    )]
    UnpinnedHttps(String),
    #[error("{url}: the config's SHA-256 is {got}, not {want} ({CONFIG_SHA256}); refused")]
    Mismatch {
        url: String,
        want: String,
        got: String,
    },
    #[error("cannot connect to {authority}: {source}")]
    Connect {
        authority: String,
        #[source]
        source: std::io::Error,
    },
    #[error("TLS with {authority}: {source}")]
    Tls {
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

impl HttpError {
    /// Whether trying again cannot help (the URL or the pins are wrong).
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            HttpError::BadUrl(_)
                | HttpError::UnsupportedScheme(_)
                | HttpError::BadPin { .. }
                | HttpError::UnpinnedHttp(_)
                | HttpError::UnpinnedHttps(_)
        )
    }
}

/// GETs a config from `url` and returns the body of a 200 response,
/// checked against `pins` (`cairn.config=`).
pub async fn fetch_config(url: &str, pins: &Pins, timeout: Duration) -> Result<Vec<u8>, HttpError> {
    with_timeout(url, timeout, get_inner(url, Some(pins))).await
}

/// A plain http:// GET without pins, for a local service's health
/// endpoint (the kubelet's /healthz on loopback), never for a config.
pub async fn get(url: &str, timeout: Duration) -> Result<Vec<u8>, HttpError> {
    with_timeout(url, timeout, get_inner(url, None)).await
}

async fn with_timeout(
    url: &str,
    timeout: Duration,
    get: impl std::future::Future<Output = Result<Vec<u8>, HttpError>>,
) -> Result<Vec<u8>, HttpError> {
    tokio::time::timeout(timeout, get)
        .await
        .unwrap_or_else(|_| {
            Err(HttpError::Timeout {
                url: url.to_string(),
                timeout,
            })
        })
}

/// `pins`: `None` for plain http with no checks, else the config policy.
async fn get_inner(url: &str, pins: Option<&Pins>) -> Result<Vec<u8>, HttpError> {
    let uri: hyper::Uri = url
        .parse()
        .map_err(|_| HttpError::BadUrl(url.to_string()))?;
    // The pinned server certificate, for https.
    let tls: Option<&str> = match (uri.scheme_str(), pins) {
        (Some("http"), None) => None,
        (Some("http"), Some(p)) if p.body_sha256.is_none() => {
            return Err(HttpError::UnpinnedHttp(url.to_string()))
        }
        (Some("http"), Some(_)) => None,
        (Some("https"), Some(p)) => match p.server_fingerprint.as_deref() {
            Some(fingerprint) => Some(fingerprint),
            None => return Err(HttpError::UnpinnedHttps(url.to_string())),
        },
        _ => return Err(HttpError::UnsupportedScheme(url.to_string())),
    };
    let authority = uri
        .authority()
        .ok_or_else(|| HttpError::BadUrl(url.to_string()))?
        .clone();
    let port = authority
        .port_u16()
        .unwrap_or(if tls.is_some() { 443 } else { 80 });
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let stream = tokio::net::TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|source| HttpError::Connect {
            authority: authority.to_string(),
            source,
        })?;
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let body = if let Some(fingerprint) = tls {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls_err = |e: &dyn std::fmt::Display| HttpError::Tls {
            authority: authority.to_string(),
            source: std::io::Error::other(e.to_string()),
        };
        let config = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| tls_err(&e))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyServerCert::pinned(
                provider,
                fingerprint,
            )))
            .with_no_client_auth();
        let name =
            rustls::pki_types::ServerName::try_from(host.clone()).map_err(|e| tls_err(&e))?;
        let stream = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, stream)
            .await
            .map_err(|source| HttpError::Tls {
                authority: authority.to_string(),
                source,
            })?;
        request(stream, url, authority.as_str(), path).await?
    } else {
        request(stream, url, authority.as_str(), path).await?
    };
    if let Some(want) = pins.and_then(|p| p.body_sha256.as_ref()) {
        let got = hex::encode(Sha256::digest(&body));
        if &got != want {
            return Err(HttpError::Mismatch {
                url: url.to_string(),
                want: want.clone(),
                got,
            });
        }
    }
    Ok(body)
}

/// One GET of `path` over `stream`.
async fn request<S>(stream: S, url: &str, authority: &str, path: &str) -> Result<Vec<u8>, HttpError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let req_err = |e: &dyn std::fmt::Display| HttpError::Request {
        url: url.to_string(),
        message: e.to_string(),
    };
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| req_err(&e))?;
    let conn = tokio::spawn(conn);
    let req = hyper::Request::get(path)
        .header(hyper::header::HOST, authority)
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

    const BODY: &[u8] = b"version: v1\n\n";
    const RESPONSE: &str =
        "HTTP/1.1 200 OK\r\nContent-Length: 13\r\nConnection: close\r\n\r\nversion: v1\n\n";

    fn body_pin(body: &[u8]) -> Pins {
        Pins::new(Some(&hex::encode(Sha256::digest(body))), None).unwrap()
    }

    #[tokio::test]
    async fn fetches_a_body_that_has_the_pinned_hash() {
        let (port, t) = serve_once(RESPONSE);
        let body = fetch_config(
            &format!("http://127.0.0.1:{port}/cfg/node.yaml?x=1"),
            &body_pin(BODY),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
        assert_eq!(body, BODY);
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
    async fn plain_http_needs_a_hash_and_a_changed_config_is_refused() {
        let e = fetch_config(
            "http://127.0.0.1:1/c.yaml",
            &Pins::default(),
            Duration::from_secs(5),
        )
        .await
        .unwrap_err();
        assert!(matches!(e, HttpError::UnpinnedHttp(_)), "{e}");
        assert!(e.is_permanent());
        assert!(e.to_string().contains("cairn.config.sha256="), "{e}");
        let (port, _t) = serve_once(RESPONSE);
        let e = fetch_config(
            &format!("http://127.0.0.1:{port}/c.yaml"),
            &body_pin(b"version: v1\n"),
            Duration::from_secs(5),
        )
        .await
        .unwrap_err();
        assert!(matches!(e, HttpError::Mismatch { .. }), "{e}");
        assert!(!e.is_permanent());
    }

    #[test]
    fn pins_must_be_sha256s_and_name_their_key() {
        let e = Pins::new(Some("abc"), None).unwrap_err();
        assert!(
            e.to_string().starts_with("cairn.config.sha256=\"abc\""),
            "{e}"
        );
        let e = Pins::new(None, Some("zz")).unwrap_err();
        assert!(
            e.to_string().starts_with("cairn.config.fingerprint="),
            "{e}"
        );
        let hex = "AB".repeat(32);
        let p = Pins::new(Some(&format!("sha256:{hex}")), Some(&hex)).unwrap();
        assert_eq!(p.body_sha256.as_deref(), Some("ab".repeat(32).as_str()));
    }

    /// A one-shot HTTPS server on 127.0.0.1 with a fresh certificate;
    /// returns its port and the certificate's SHA-256.
    async fn serve_tls_once() -> (u16, String) {
        let ca = config::pki::create_os_ca().unwrap();
        let sans = [config::types::SubjectAltName::Ip(
            "127.0.0.1".parse().unwrap(),
        )];
        let leaf =
            config::pki::issue_server_cert(&ca, "config-server", &sans, Duration::from_secs(3600))
                .unwrap();
        let fingerprint = config::pki::fingerprint(leaf.crt.der());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        use rustls::pki_types::pem::PemObject as _;
        let key =
            rustls::pki_types::PrivateKeyDer::from_pem_slice(leaf.key.pem().as_bytes()).unwrap();
        let chain = vec![rustls::pki_types::CertificateDer::from(
            leaf.crt.der().to_vec(),
        )];
        let server = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            while let Ok((s, _)) = l.accept().await {
                // A refused handshake ends this connection only.
                let Ok(mut s) = acceptor.accept(s).await else {
                    continue;
                };
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let _ = s.write_all(RESPONSE.as_bytes()).await;
                let _ = s.shutdown().await;
            }
        });
        (port, fingerprint)
    }

    #[tokio::test]
    async fn https_needs_the_servers_certificate_pinned() {
        let (port, fingerprint) = serve_tls_once().await;
        let url = format!("https://127.0.0.1:{port}/c.yaml");
        let e = fetch_config(&url, &Pins::default(), Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(matches!(e, HttpError::UnpinnedHttps(_)), "{e}");
        // The right certificate, and the body's hash as well.
        let pins = Pins::new(Some(&hex::encode(Sha256::digest(BODY))), Some(&fingerprint)).unwrap();
        assert_eq!(
            fetch_config(&url, &pins, Duration::from_secs(5))
                .await
                .unwrap(),
            BODY
        );
        // Another certificate (a man in the middle): refused at the handshake.
        let pins = Pins::new(None, Some(&"0".repeat(64))).unwrap();
        let e = fetch_config(&url, &pins, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(matches!(e, HttpError::Tls { .. }), "{e}");
        assert!(e.to_string().contains("not the pinned"), "{e}");
    }

    #[tokio::test]
    async fn a_health_check_get_is_plain_http_only() {
        let (port, _t) = serve_once(RESPONSE);
        let body = get(
            &format!("http://127.0.0.1:{port}/healthz"),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
        assert_eq!(body, BODY);
        let e = get("https://127.0.0.1:1/healthz", Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(matches!(e, HttpError::UnsupportedScheme(_)), "{e}");
    }

    #[tokio::test]
    async fn reports_status_scheme_and_connect_errors() {
        let pins = body_pin(BODY);
        let (port, _t) = serve_once("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
        let e = fetch_config(
            &format!("http://127.0.0.1:{port}/x"),
            &pins,
            Duration::from_secs(5),
        )
        .await
        .unwrap_err();
        assert!(matches!(e, HttpError::Status { status: 404, .. }), "{e}");
        let e = fetch_config("ftp://127.0.0.1/x", &pins, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(matches!(e, HttpError::UnsupportedScheme(_)));
        // A port nothing listens on (bound then dropped).
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let e = fetch_config(
            &format!("http://127.0.0.1:{port}/"),
            &pins,
            Duration::from_secs(5),
        )
        .await
        .unwrap_err();
        assert!(matches!(e, HttpError::Connect { .. }), "{e}");
    }
}
