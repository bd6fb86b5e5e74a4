//! Reading a kubelet's `/metrics/resource` over verified TLS.
//!
//! The kubelet's serving certificate must chain to the CA we are given
//! (the cluster CA: kubelets get serving certificates from the cluster's
//! CSR signer) and name the address we dial (an IP SAN for an
//! InternalIP). We authenticate with our ServiceAccount token, read anew
//! on every request because bound tokens are rotated; the kubelet asks the
//! API server (TokenReview, SubjectAccessReview on `nodes/metrics`).
//! `--kubelet-insecure-tls` skips the certificate check (never the
//! default, and logged loudly).

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt as _, Empty, Limited};
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::Node;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

/// Upper bound of a resource metrics answer (a node with a few hundred
/// containers sends well under 1 MiB).
const MAX_BODY: usize = 16 << 20;

#[derive(Debug, thiserror::Error)]
pub enum KubeletError {
    #[error("reading the kubelet CA {path}: {why}")]
    Ca { path: PathBuf, why: String },
    #[error("reading the token {path}: {source}")]
    Token {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("node {node}: no address of the types {types:?}")]
    NoAddress { node: String, types: Vec<String> },
    #[error("{addr}: {why}")]
    Connect { addr: String, why: String },
    #[error("{addr}: TLS: {source}")]
    Tls {
        addr: String,
        source: std::io::Error,
    },
    #[error("{addr}: HTTP: {source}")]
    Http { addr: String, source: hyper::Error },
    #[error("{addr}: {path} answered {status}: {body}")]
    Status {
        addr: String,
        path: String,
        status: http::StatusCode,
        body: String,
    },
    #[error("{addr}: the answer is not text or larger than {MAX_BODY} bytes")]
    Body { addr: String },
    #[error("{addr}: no answer within {0:?}", .timeout)]
    Timeout { addr: String, timeout: Duration },
}

/// Where a node's kubelet listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub node: String,
    /// The address dialled and verified: an IP or a host name.
    pub host: String,
    pub port: u16,
}

impl Target {
    /// The kubelet of `node`: its first address of the preferred types
    /// (in that order) and the port the Node reports (10250 by default).
    pub fn of(node: &Node, preferred: &[String]) -> Result<Target, KubeletError> {
        let name = node.metadata.name.clone().unwrap_or_default();
        let status = node.status.as_ref();
        let addresses = status.and_then(|s| s.addresses.as_ref());
        let host = preferred
            .iter()
            .find_map(|t| {
                addresses?
                    .iter()
                    .find(|a| &a.type_ == t && !a.address.is_empty())
                    .map(|a| a.address.clone())
            })
            .ok_or_else(|| KubeletError::NoAddress {
                node: name.clone(),
                types: preferred.to_vec(),
            })?;
        let port = status
            .and_then(|s| s.daemon_endpoints.as_ref())
            .and_then(|d| d.kubelet_endpoint.as_ref())
            .map(|e| e.port)
            .filter(|p| *p > 0 && *p <= i32::from(u16::MAX))
            .and_then(|p| u16::try_from(p).ok())
            .unwrap_or(10250);
        Ok(Target {
            node: name,
            host,
            port,
        })
    }

    fn addr(&self) -> String {
        match self.host.parse::<IpAddr>() {
            Ok(ip) => SocketAddr::new(ip, self.port).to_string(),
            Err(_) => format!("{}:{}", self.host, self.port),
        }
    }
}

/// A client for every kubelet.
#[derive(Clone)]
pub struct KubeletClient {
    tls: tokio_rustls::TlsConnector,
    token_file: Option<PathBuf>,
    timeout: Duration,
}

/// Accepts any certificate (`--kubelet-insecure-tls`), still checking the
/// handshake's signatures so the session is at least bound to a key.
#[derive(Debug)]
struct NoVerification(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The CA certificates in the PEM file `path`.
pub fn read_ca(path: &Path) -> Result<rustls::RootCertStore, KubeletError> {
    let err = |why: String| KubeletError::Ca {
        path: path.to_path_buf(),
        why,
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path).map_err(|e| err(e.to_string()))? {
        let cert = cert.map_err(|e| err(e.to_string()))?;
        roots.add(cert).map_err(|e| err(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(err("no certificate in it".into()));
    }
    Ok(roots)
}

impl KubeletClient {
    /// Verifying kubelets against the CAs in `ca_file`; `insecure` skips that.
    pub fn new(
        ca_file: &Path,
        insecure: bool,
        token_file: Option<PathBuf>,
        timeout: Duration,
    ) -> Result<Self, KubeletError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| KubeletError::Ca {
                path: ca_file.to_path_buf(),
                why: e.to_string(),
            })?;
        let mut config = if insecure {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerification(provider)))
                .with_no_client_auth()
        } else {
            builder
                .with_root_certificates(read_ca(ca_file)?)
                .with_no_client_auth()
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(KubeletClient {
            tls: tokio_rustls::TlsConnector::from(Arc::new(config)),
            token_file,
            timeout,
        })
    }

    /// GET `path` from the kubelet `t`, as text.
    pub async fn get(&self, t: &Target, path: &str) -> Result<String, KubeletError> {
        let addr = t.addr();
        tokio::time::timeout(self.timeout, self.get_inner(t, &addr, path))
            .await
            .map_err(|_| KubeletError::Timeout {
                addr: addr.clone(),
                timeout: self.timeout,
            })?
    }

    async fn get_inner(&self, t: &Target, addr: &str, path: &str) -> Result<String, KubeletError> {
        let token = match &self.token_file {
            Some(p) => Some(
                std::fs::read_to_string(p)
                    .map_err(|source| KubeletError::Token {
                        path: p.clone(),
                        source,
                    })?
                    .trim()
                    .to_string(),
            ),
            None => None,
        };
        let server_name: ServerName<'static> = match t.host.parse::<IpAddr>() {
            Ok(ip) => ServerName::IpAddress(ip.into()),
            Err(_) => ServerName::try_from(t.host.clone()).map_err(|e| KubeletError::Connect {
                addr: addr.to_string(),
                why: e.to_string(),
            })?,
        };
        let tcp =
            tokio::net::TcpStream::connect(addr)
                .await
                .map_err(|e| KubeletError::Connect {
                    addr: addr.to_string(),
                    why: e.to_string(),
                })?;
        let tls = self
            .tls
            .connect(server_name, tcp)
            .await
            .map_err(|source| KubeletError::Tls {
                addr: addr.to_string(),
                source,
            })?;
        let http_err = |source| KubeletError::Http {
            addr: addr.to_string(),
            source,
        };
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(http_err)?;
        let driver = tokio::spawn(conn);
        let mut req = http::Request::get(path)
            .header(http::header::HOST, addr)
            .header(http::header::ACCEPT, "text/plain");
        if let Some(token) = token {
            req = req.header(http::header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let req = req
            .body(Empty::<bytes::Bytes>::new())
            .map_err(|e| KubeletError::Connect {
                addr: addr.to_string(),
                why: e.to_string(),
            })?;
        let resp = send.send_request(req).await.map_err(http_err)?;
        let status = resp.status();
        let body = Limited::new(resp.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|_| KubeletError::Body {
                addr: addr.to_string(),
            })?
            .to_bytes();
        driver.abort();
        let text = String::from_utf8(body.to_vec()).map_err(|_| KubeletError::Body {
            addr: addr.to_string(),
        })?;
        if !status.is_success() {
            return Err(KubeletError::Status {
                addr: addr.to_string(),
                path: path.to_string(),
                status,
                body: text.chars().take(200).collect(),
            });
        }
        Ok(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_target_is_the_preferred_address_and_the_reported_port() {
        let node: Node = serde_json::from_value(json!({
            "metadata": {"name": "n1"},
            "status": {
                "addresses": [{"type": "Hostname", "address": "n1"}, {"type": "InternalIP", "address": "10.5.0.2"}],
                "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            }
        }))
        .unwrap();
        let prefs = |p: &[&str]| p.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let t = Target::of(&node, &prefs(&["InternalIP", "Hostname"])).unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.addr()),
            ("10.5.0.2", 10250, "10.5.0.2:10250".to_string())
        );
        let t = Target::of(&node, &prefs(&["ExternalIP", "Hostname"])).unwrap();
        assert_eq!(t.addr(), "n1:10250");
        let e = Target::of(&node, &prefs(&["ExternalIP"])).unwrap_err();
        assert!(e.to_string().contains("n1: no address"), "{e}");
        let bare: Node = serde_json::from_value(json!({"metadata": {"name": "n2"},
            "status": {"addresses": [{"type": "InternalIP", "address": "fd00::2"}]}}))
        .unwrap();
        assert_eq!(
            Target::of(&bare, &prefs(&["InternalIP"])).unwrap().addr(),
            "[fd00::2]:10250"
        );
    }

    #[test]
    fn a_missing_ca_is_named() {
        let e = KubeletClient::new(
            Path::new("/nonexistent/ca.crt"),
            false,
            None,
            Duration::from_secs(1),
        )
        .err()
        .unwrap();
        assert!(e.to_string().contains("/nonexistent/ca.crt"), "{e}");
        // The insecure mode needs no CA (and is never the default: see main).
        assert!(KubeletClient::new(
            Path::new("/nonexistent/ca.crt"),
            true,
            None,
            Duration::from_secs(1)
        )
        .is_ok());
    }
}
