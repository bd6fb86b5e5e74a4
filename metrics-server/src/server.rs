//! The HTTPS server the aggregation layer talks to.
//!
//! TLS with our serving certificate; a client certificate is asked for and,
//! when given, must chain to the request-header CA (else the handshake
//! fails). Each request then goes: health paths answer anyone (the kubelet
//! probes without a certificate); everything else needs the front proxy's
//! certificate with an allowed Common Name and a user in the headers (401
//! otherwise), a path of this API (404), and the API server's yes to a
//! SubjectAccessReview (403 with its reasons). Only GET is served.
//!
//! The serving certificate and the request-header settings are re-read
//! every minute, so a renewed certificate Secret or a rotated front-proxy
//! CA takes effect without a restart.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::Api;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::api::{self, Query, Request};
use crate::authn::{self, RequestHeader};
use crate::authz::{self, Authorizer};
use crate::scraper::Shared;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("reading {path}: {why}")]
    File { path: PathBuf, why: String },
    #[error(
        "the request-header CA of ConfigMap kube-system/extension-apiserver-authentication: {0}"
    )]
    ClientCa(String),
    #[error("the serving certificate {cert} and key {key} do not make a TLS identity: {why}")]
    Identity {
        cert: PathBuf,
        key: PathBuf,
        why: String,
    },
    #[error("reading ConfigMap kube-system/extension-apiserver-authentication: {0}")]
    ConfigMap(#[source] kube::Error),
    #[error(transparent)]
    Authn(#[from] authn::AuthnError),
}

/// One generation of TLS settings and the request-header rules they go with.
pub struct Tls {
    pub config: Arc<rustls::ServerConfig>,
    pub request_header: Arc<RequestHeader>,
    /// What it was built from, to see whether a reload changes anything.
    source: (Vec<u8>, Vec<u8>, RequestHeader),
}

/// Where the serving identity is read from.
#[derive(Debug, Clone)]
pub struct Identity {
    pub cert: PathBuf,
    pub key: PathBuf,
}

fn read(path: &Path) -> Result<Vec<u8>, ServerError> {
    std::fs::read(path).map_err(|e| ServerError::File {
        path: path.to_path_buf(),
        why: e.to_string(),
    })
}

/// The request-header settings from the API server's ConfigMap.
pub async fn load_request_header(client: &kube::Client) -> Result<RequestHeader, ServerError> {
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), authn::CONFIGMAP_NAMESPACE);
    let cm = cms
        .get(authn::CONFIGMAP)
        .await
        .map_err(ServerError::ConfigMap)?;
    let data: BTreeMap<String, String> = cm.data.unwrap_or_default();
    Ok(RequestHeader::from_configmap(&data)?)
}

impl Tls {
    /// Builds the TLS settings; `None` when nothing changed since `prev`.
    pub fn build(
        id: &Identity,
        rh: RequestHeader,
        prev: Option<&Tls>,
    ) -> Result<Option<Tls>, ServerError> {
        let (cert_pem, key_pem) = (read(&id.cert)?, read(&id.key)?);
        if let Some(p) = prev {
            if p.source.0 == cert_pem && p.source.1 == key_pem && p.source.2 == rh {
                return Ok(None);
            }
        }
        let ident_err = |why: String| ServerError::Identity {
            cert: id.cert.clone(),
            key: id.key.clone(),
            why,
        };
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
            .collect::<Result<_, _>>()
            .map_err(|e| ident_err(e.to_string()))?;
        let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| ident_err(e.to_string()))?;
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(rh.client_ca_pem.as_bytes()) {
            let c = c.map_err(|e| ServerError::ClientCa(e.to_string()))?;
            roots
                .add(c)
                .map_err(|e| ServerError::ClientCa(e.to_string()))?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .allow_unauthenticated()
        .build()
        .map_err(|e| ServerError::ClientCa(e.to_string()))?;
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| ident_err(e.to_string()))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .map_err(|e| ident_err(e.to_string()))?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Some(Tls {
            config: Arc::new(config),
            request_header: Arc::new(rh.clone()),
            source: (cert_pem, key_pem, rh),
        }))
    }
}

/// Everything a request needs.
pub struct State {
    pub snapshot: Shared,
    pub authorizer: Authorizer,
    pub tls: RwLock<Arc<Tls>>,
}

impl State {
    fn tls(&self) -> Arc<Tls> {
        match self.tls.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }
}

/// What the connection's handshake established.
struct Conn {
    /// The verified client certificate (leaf), if one was sent.
    peer: Option<Vec<u8>>,
    request_header: Arc<RequestHeader>,
}

type Resp = hyper::Response<Full<Bytes>>;

fn json(a: &api::Answer) -> Resp {
    let body = serde_json::to_vec(&a.body).unwrap_or_default();
    let mut r = hyper::Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() =
        http::StatusCode::from_u16(a.code).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}

fn text(code: http::StatusCode, body: &'static str) -> Resp {
    let mut r = hyper::Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = code;
    r
}

fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

async fn handle(
    state: Arc<State>,
    conn: Arc<Conn>,
    req: hyper::Request<Incoming>,
) -> Result<Resp, Infallible> {
    let path = req.uri().path().to_string();
    match path.as_str() {
        "/healthz" | "/livez" => return Ok(text(http::StatusCode::OK, "ok")),
        "/readyz" => {
            return Ok(if state.snapshot.get().scraped {
                text(http::StatusCode::OK, "ok")
            } else {
                text(
                    http::StatusCode::SERVICE_UNAVAILABLE,
                    "no scrape has finished yet",
                )
            })
        }
        _ => {}
    }
    let proxy = match &conn.peer {
        None => {
            Err("no client certificate: this API is reached through the API server".to_string())
        }
        Some(der) => conn.request_header.proxy_allowed(der),
    };
    if let Err(why) = proxy {
        tracing::debug!(path = %path, why = %why, "unauthorized");
        return Ok(json(&api::status(401, "Unauthorized", "Unauthorized")));
    }
    let Some(user) = conn.request_header.user(req.headers()) else {
        return Ok(json(&api::status(
            401,
            "Unauthorized",
            "Unauthorized: no user in the request headers",
        )));
    };
    if req.method() != http::Method::GET {
        return Ok(json(&api::status(
            405,
            "MethodNotAllowed",
            &format!("{} is not supported by the metrics API", req.method()),
        )));
    }
    let Some(request) = Request::of(&path) else {
        return Ok(json(&api::status(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )));
    };
    let query = Query::parse(req.uri().query());
    let attrs = request.attributes(&path, query.watch);
    match state.authorizer.decide(&user, &attrs).await {
        Ok(d) if d.allowed => {}
        Ok(d) => {
            tracing::debug!(user = %user.name, path = %path, "forbidden");
            return Ok(json(&api::status(
                403,
                "Forbidden",
                &authz::forbidden_message(&user, &attrs, &d.reason),
            )));
        }
        Err(e) => {
            tracing::warn!(error = %e, "SubjectAccessReview failed");
            return Ok(json(&api::status(
                500,
                "InternalError",
                &format!("cannot authorize the request: {e}"),
            )));
        }
    }
    let answer = api::answer(&request, &query, &state.snapshot.get(), now_ms());
    tracing::debug!(user = %user.name, path = %path, code = answer.code, "served");
    Ok(json(&answer))
}

/// Serves on `listener` forever.
pub async fn serve(listener: tokio::net::TcpListener, state: Arc<State>) {
    loop {
        let (tcp, from) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let state = state.clone();
        tokio::spawn(async move {
            if let Err(e) = connection(tcp, from, state).await {
                tracing::debug!(from = %from, error = %e, "connection ended");
            }
        });
    }
}

async fn connection(
    tcp: tokio::net::TcpStream,
    _from: SocketAddr,
    state: Arc<State>,
) -> Result<(), String> {
    let tls = state.tls();
    let acceptor = tokio_rustls::TlsAcceptor::from(tls.config.clone());
    let stream = tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp))
        .await
        .map_err(|_| "TLS handshake timed out".to_string())?
        .map_err(|e| format!("TLS handshake: {e}"))?;
    let peer = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.to_vec());
    let conn = Arc::new(Conn {
        peer,
        request_header: tls.request_header.clone(),
    });
    let service = hyper::service::service_fn(move |req| handle(state.clone(), conn.clone(), req));
    hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
        .serve_connection(TokioIo::new(stream), service)
        .await
        .map_err(|e| e.to_string())
}

/// Re-reads the serving identity and the request-header settings every
/// `every`, swapping in new TLS settings when they changed.
pub async fn reload(state: Arc<State>, client: kube::Client, id: Identity, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        let rh = match load_request_header(&client).await {
            Ok(rh) => rh,
            Err(e) => {
                tracing::warn!(error = %e, "keeping the current request-header settings");
                continue;
            }
        };
        let current = state.tls();
        match Tls::build(&id, rh, Some(&current)) {
            Ok(None) => {}
            Ok(Some(next)) => {
                tracing::info!("serving certificate or request-header settings changed; reloaded");
                if let Ok(mut g) = state.tls.write() {
                    *g = Arc::new(next);
                }
            }
            Err(e) => tracing::warn!(error = %e, "keeping the current TLS settings"),
        }
    }
}
