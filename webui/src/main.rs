//! cairn-webui: serves the Web UI over TLS.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use webui::routes::{router, AppState};
use webui::session::Sessions;

/// In a Pod: the service account's CA (the cluster CA).
const IN_CLUSTER_CA: &str = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt";

#[derive(Parser)]
#[command(name = "cairn-webui", version, about = "The Web UI of a Cairn cluster")]
struct Args {
    /// Address to serve HTTPS on.
    #[arg(long, default_value = "0.0.0.0:8443")]
    listen: SocketAddr,
    /// PEM certificate chain to serve (issued by the cluster CA).
    #[arg(long)]
    tls_cert: PathBuf,
    /// PEM private key of the certificate.
    #[arg(long)]
    tls_key: PathBuf,
    /// The API server; default: the in-cluster Service from
    /// KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT.
    #[arg(long)]
    apiserver: Option<String>,
    /// PEM CA bundle the API server's certificate must chain to.
    #[arg(long, default_value = IN_CLUSTER_CA)]
    apiserver_ca: PathBuf,
    /// Sessions unused for this long are signed out.
    #[arg(long, default_value = "15m", value_parser = humantime::parse_duration)]
    idle_timeout: Duration,
}

fn apiserver_url(arg: Option<String>) -> anyhow::Result<http::Uri> {
    let url = match arg {
        Some(u) => u,
        None => {
            let host = std::env::var("KUBERNETES_SERVICE_HOST")
                .context("no --apiserver and no KUBERNETES_SERVICE_HOST")?;
            let port = std::env::var("KUBERNETES_SERVICE_PORT").unwrap_or_else(|_| "443".into());
            if host.contains(':') {
                format!("https://[{host}]:{port}")
            } else {
                format!("https://{host}:{port}")
            }
        }
    };
    url.parse().with_context(|| format!("{url}: not a URL"))
}

/// The file contents a TLS configuration was built from.
type Loaded = (Option<Vec<u8>>, Option<Vec<u8>>);

/// The server's TLS settings from the certificate and key files, and what
/// was read.
fn tls_config(cert: &Path, key: &Path) -> anyhow::Result<(rustls::ServerConfig, Loaded)> {
    let cert_pem = std::fs::read(cert).with_context(|| format!("reading {}", cert.display()))?;
    let key_pem = std::fs::read(key).with_context(|| format!("reading {}", key.display()))?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .with_context(|| format!("parsing {}", cert.display()))?;
    let private = PrivateKeyDer::from_pem_slice(&key_pem)
        .with_context(|| format!("parsing {}", key.display()))?;
    let mut tls = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .context("the serving certificate and key do not match")?;
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok((tls, (Some(cert_pem), Some(key_pem))))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args = Args::parse();
    let ca: Vec<Vec<u8>> = CertificateDer::pem_file_iter(&args.apiserver_ca)
        .with_context(|| format!("reading {}", args.apiserver_ca.display()))?
        .map(|c| c.map(|c| c.to_vec()))
        .collect::<Result<_, _>>()
        .with_context(|| format!("parsing {}", args.apiserver_ca.display()))?;
    anyhow::ensure!(
        !ca.is_empty(),
        "{}: no certificate",
        args.apiserver_ca.display()
    );
    let (tls, mut loaded) = tls_config(&args.tls_cert, &args.tls_key)?;

    let state = Arc::new(AppState {
        sessions: Sessions::new(args.idle_timeout),
        apiserver: apiserver_url(args.apiserver)?,
        ca,
    });
    let app = router(state);
    tracing::info!(listen = %args.listen, "serving the Web UI over HTTPS");
    let config = axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(tls));
    // A renewed certificate (its Secret replaced) is served without a restart.
    let reload = config.clone();
    let (cert, key) = (args.tls_cert.clone(), args.tls_key.clone());
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(60)).await;
            let now = (std::fs::read(&cert).ok(), std::fs::read(&key).ok());
            if now == loaded {
                continue;
            }
            match tls_config(&cert, &key) {
                Ok((tls, files)) => {
                    reload.reload_from_config(Arc::new(tls));
                    loaded = files;
                    tracing::info!("serving certificate changed; reloaded");
                }
                Err(e) => tracing::warn!(error = %e, "keeping the current serving certificate"),
            }
        }
    });
    axum_server::bind_rustls(args.listen, config)
        .serve(app.into_make_service())
        .await
        .context("serving")?;
    Ok(())
}
