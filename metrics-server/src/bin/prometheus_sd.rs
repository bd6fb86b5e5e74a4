//! cairn-prometheus-sd: Prometheus's targets from the Kubernetes API (see
//! `sd_cmd.rs`). The payload's image runs `cairn-metrics-server` under this
//! name instead; this binary is for development.

use clap::Parser;

#[path = "../sd_cmd.rs"]
mod sd_cmd;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let _ = rustls::crypto::ring::default_provider().install_default();
    sd_cmd::run(sd_cmd::Args::parse()).await
}
