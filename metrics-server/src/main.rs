//! cairn-metrics-server: flags, then the scrape loop, the TLS reload loop
//! and the HTTPS server. Called as `cairn-prometheus-sd` (a symlink in the
//! image), it is Prometheus's target discovery instead (`sd_cmd.rs`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use metrics_server::authz::Authorizer;
use metrics_server::kubelet::KubeletClient;
use metrics_server::scraper::{Scraper, Shared};
use metrics_server::server::{self, Identity, State, Tls};

mod sd_cmd;

/// In a Pod: the ServiceAccount's CA (the cluster CA) and token.
const SA_CA: &str = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt";
const SA_TOKEN: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";

#[derive(Parser)]
#[command(
    name = "cairn-metrics-server",
    version,
    about = "The resource metrics API (metrics.k8s.io) of a Cairn cluster"
)]
struct Args {
    /// Address to serve HTTPS on.
    #[arg(long, default_value = "0.0.0.0:4443")]
    listen: SocketAddr,
    /// PEM certificate chain to serve (the APIService's caBundle must verify it).
    #[arg(long)]
    tls_cert_file: PathBuf,
    /// PEM private key of the serving certificate.
    #[arg(long)]
    tls_private_key_file: PathBuf,
    /// A kubeconfig for the API server; default: in-cluster.
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// PEM CA bundle the kubelets' serving certificates must chain to.
    #[arg(long, default_value = SA_CA)]
    kubelet_ca_file: PathBuf,
    /// Bearer token presented to the kubelets (re-read on every scrape).
    #[arg(long, default_value = SA_TOKEN)]
    kubelet_token_file: PathBuf,
    /// Do not verify the kubelets' certificates. Insecure: anyone on the
    /// path can feed figures and read the token. Off by default.
    #[arg(long)]
    kubelet_insecure_tls: bool,
    /// Node address types to dial the kubelet at, in order of preference.
    #[arg(
        long,
        default_value = "InternalIP,ExternalIP,Hostname",
        value_delimiter = ','
    )]
    kubelet_preferred_address_types: Vec<String>,
    /// How long one kubelet may take to answer.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    kubelet_timeout: Duration,
    /// Time between scrapes (the CPU window is about this long).
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
    metric_resolution: Duration,
    /// How long an authorization decision is reused.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    authorization_cache_ttl: Duration,
    /// How often the serving certificate and the request-header settings are re-read.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    reload_interval: Duration,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let invoked_as = std::env::args_os()
        .next()
        .map(std::path::PathBuf::from)
        .and_then(|p| p.file_name().map(|n| n.to_os_string()));
    if invoked_as.as_deref() == Some(std::ffi::OsStr::new("cairn-prometheus-sd")) {
        return sd_cmd::run(sd_cmd::Args::parse()).await;
    }
    let args = Args::parse();
    if args.kubelet_insecure_tls {
        tracing::warn!("--kubelet-insecure-tls: kubelet certificates are NOT verified");
    }
    let client = metrics_server::kube_client(args.kubeconfig.as_deref())
        .await
        .context("connecting to the API server")?;
    let kubelets = KubeletClient::new(
        &args.kubelet_ca_file,
        args.kubelet_insecure_tls,
        Some(args.kubelet_token_file.clone()),
        args.kubelet_timeout,
    )?;
    let id = Identity {
        cert: args.tls_cert_file.clone(),
        key: args.tls_private_key_file.clone(),
    };
    // The request-header settings are needed before anything is served;
    // the API server writes them soon after it starts.
    let mut delay = Duration::from_secs(1);
    let request_header = loop {
        match server::load_request_header(&client).await {
            Ok(rh) => break rh,
            Err(e) => {
                tracing::warn!(error = %e, "waiting for the request-header settings");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(30));
            }
        }
    };
    let tls = Tls::build(&id, request_header, None)?.context("no TLS settings")?;
    let shared = Shared::default();
    let state = Arc::new(State {
        snapshot: shared.clone(),
        authorizer: Authorizer::new(client.clone(), args.authorization_cache_ttl),
        tls: RwLock::new(Arc::new(tls)),
    });
    let scraper = Scraper {
        client: client.clone(),
        kubelets,
        address_types: args.kubelet_preferred_address_types.clone(),
        interval: args.metric_resolution,
    };
    tokio::spawn(scraper.run(shared));
    tokio::spawn(server::reload(
        state.clone(),
        client,
        id,
        args.reload_interval,
    ));
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    tracing::info!(listen = %args.listen, "serving metrics.k8s.io/v1beta1 over HTTPS");
    server::serve(listener, state).await;
    Ok(())
}
