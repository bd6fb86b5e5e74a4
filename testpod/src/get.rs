//! `testpod get`: one HTTP/1.1 GET over TCP or TLS, optionally with a bearer
//! token and a private CA (the way a Pod talks to the API server with its
//! ServiceAccount). Hand-written on hyper's connection API because the one
//! request needs neither pooling nor redirects, and a full HTTP client crate
//! would double the size of the image.

use crate::resolve;
use bytes::Bytes;
use hickory_resolver::TokioResolver;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

const TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum GetError {
    #[error("URL {0} has no host")]
    NoHost(String),
    #[error("URL scheme {0} is not http or https")]
    Scheme(String),
    #[error("https needs --ca (the CA that signs the server's certificate)")]
    NoCa,
    #[error("--ca holds no usable PEM certificate: {0}")]
    Ca(String),
    #[error(transparent)]
    Resolve(#[from] resolve::ResolveError),
    #[error("{host} needs DNS but no resolver could be configured")]
    NoResolver { host: String },
    #[error("connecting to {addr}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("TLS with {host}")]
    Tls {
        host: String,
        source: std::io::Error,
    },
    #[error("the HTTP exchange failed")]
    Http(#[from] hyper::Error),
    #[error("cannot build the request")]
    Request(#[from] hyper::http::Error),
    #[error("no answer from {0} within {TIMEOUT:?}")]
    Timeout(String),
}

pub struct Request<'a> {
    pub url: &'a url::Url,
    /// PEM of the CA for https.
    pub ca: Option<&'a [u8]>,
    pub token: Option<&'a str>,
}

pub struct Response {
    pub status: u16,
    pub body: Bytes,
}

pub async fn get(
    req: &Request<'_>,
    resolver: Option<&TokioResolver>,
) -> Result<Response, GetError> {
    let url = req.url;
    let host = url
        .host_str()
        .ok_or_else(|| GetError::NoHost(url.to_string()))?
        .to_string();
    let port = url.port_or_known_default().unwrap_or(80);
    tokio::time::timeout(TIMEOUT, async {
        let ips = match ip_host(&host) {
            Some(ip) => vec![ip],
            None => {
                let r = resolver.ok_or_else(|| GetError::NoResolver { host: host.clone() })?;
                resolve::resolve(r, &host).await?
            }
        };
        let (tcp, ip) = connect_any(&ips, port).await?;
        match url.scheme() {
            "http" => send(tcp, req).await,
            "https" => {
                let tls = tls_connector(req.ca.ok_or(GetError::NoCa)?)?;
                let name = match ip_host(&host) {
                    Some(_) => ServerName::IpAddress(ip.into()),
                    None => ServerName::try_from(host.clone())
                        .map_err(|_| GetError::NoHost(host.clone()))?,
                };
                let stream = tls
                    .connect(name, tcp)
                    .await
                    .map_err(|source| GetError::Tls {
                        host: host.clone(),
                        source,
                    })?;
                send(stream, req).await
            }
            other => Err(GetError::Scheme(other.into())),
        }
    })
    .await
    .map_err(|_| GetError::Timeout(url.to_string()))?
}

/// Connects to the first address that accepts, like a browser would.
async fn connect_any(
    ips: &[std::net::IpAddr],
    port: u16,
) -> Result<(TcpStream, std::net::IpAddr), GetError> {
    let mut last = None;
    for ip in ips {
        let addr = std::net::SocketAddr::new(*ip, port);
        match TcpStream::connect(addr).await {
            Ok(tcp) => return Ok((tcp, *ip)),
            Err(source) => {
                last = Some(GetError::Connect {
                    addr: addr.to_string(),
                    source,
                })
            }
        }
    }
    Err(last.unwrap_or_else(|| GetError::NoHost(format!("port {port}"))))
}

fn ip_host(host: &str) -> Option<std::net::IpAddr> {
    host.trim_matches(|c| c == '[' || c == ']').parse().ok()
}

fn tls_connector(ca_pem: &[u8]) -> Result<tokio_rustls::TlsConnector, GetError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut &ca_pem[..]) {
        let cert = cert.map_err(|e| GetError::Ca(e.to_string()))?;
        roots.add(cert).map_err(|e| GetError::Ca(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(GetError::Ca("no CERTIFICATE block".into()));
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| GetError::Ca(e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

async fn send<S>(stream: S, req: &Request<'_>) -> Result<Response, GetError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let url = req.url;
    let mut path = url.path().to_string();
    if let Some(q) = url.query() {
        path = format!("{path}?{q}");
    }
    let authority = match url.port() {
        Some(p) => format!("{}:{p}", url.host_str().unwrap_or_default()),
        None => url.host_str().unwrap_or_default().to_string(),
    };
    let mut builder = hyper::Request::get(path).header(hyper::header::HOST, authority);
    if let Some(token) = req.token {
        builder = builder.header(hyper::header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let response = sender
        .send_request(builder.body(Empty::<Bytes>::new())?)
        .await?;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await?.to_bytes();
    Ok(Response { status, body })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::Full;
    use std::convert::Infallible;
    use tokio::net::TcpListener;

    /// An HTTPS server with a fresh CA; 200 when the bearer token is
    /// "secret", 401 otherwise. Returns (port, CA PEM).
    async fn https_server() -> (u16, String) {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let params =
            rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".into()])
                .unwrap();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let cert = params.signed_by(&key, &issuer).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            key.serialize_der().try_into().unwrap(),
        )
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                let Ok(tls) = acceptor.accept(tcp).await else {
                    continue;
                };
                let service = hyper::service::service_fn(
                    |req: hyper::Request<hyper::body::Incoming>| async move {
                        let ok = req
                            .headers()
                            .get("authorization")
                            .is_some_and(|v| v == "Bearer secret");
                        let mut resp = hyper::Response::new(Full::new(Bytes::from_static(b"{}")));
                        if !ok {
                            *resp.status_mut() = hyper::StatusCode::UNAUTHORIZED;
                        }
                        Ok::<_, Infallible>(resp)
                    },
                );
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), service),
                );
            }
        });
        (port, ca.pem())
    }

    #[tokio::test]
    async fn https_with_ca_and_token() {
        let (port, ca) = https_server().await;
        let url = url::Url::parse(&format!("https://127.0.0.1:{port}/api")).unwrap();
        let ok = get(
            &Request {
                url: &url,
                ca: Some(ca.as_bytes()),
                token: Some("secret"),
            },
            None,
        )
        .await
        .unwrap();
        assert_eq!(ok.status, 200);
        let denied = get(
            &Request {
                url: &url,
                ca: Some(ca.as_bytes()),
                token: Some("wrong"),
            },
            None,
        )
        .await
        .unwrap();
        assert_eq!(denied.status, 401);
    }

    #[tokio::test]
    async fn https_by_name_through_the_resolver() {
        let (port, ca) = https_server().await;
        let dns =
            crate::resolve::tests::dns_server("localhost", std::net::Ipv4Addr::LOCALHOST).await;
        let resolver = crate::resolve::tests::resolver_for(dns, &[]);
        let url = url::Url::parse(&format!("https://localhost:{port}/")).unwrap();
        let r = get(
            &Request {
                url: &url,
                ca: Some(ca.as_bytes()),
                token: Some("secret"),
            },
            Some(&resolver),
        )
        .await
        .unwrap();
        assert_eq!(r.status, 200);
    }

    #[tokio::test]
    async fn https_with_another_ca_fails_naming_tls() {
        let (port, _) = https_server().await;
        let (_, other_ca) = https_server().await;
        let url = url::Url::parse(&format!("https://127.0.0.1:{port}/")).unwrap();
        let err = get(
            &Request {
                url: &url,
                ca: Some(other_ca.as_bytes()),
                token: None,
            },
            None,
        )
        .await
        .err()
        .unwrap();
        assert!(matches!(err, GetError::Tls { .. }), "{err}");
        let err = get(
            &Request {
                url: &url,
                ca: None,
                token: None,
            },
            None,
        )
        .await
        .err()
        .unwrap();
        assert!(matches!(err, GetError::NoCa), "{err}");
    }
}
