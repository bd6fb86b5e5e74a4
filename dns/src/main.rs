//! cairn-dns: serves the cluster domain from Kubernetes Services and Endpoints and
//! forwards every other name to the upstream resolvers. See dns/README.md.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use dns::answer::Resolver;
use dns::server::Server;
use dns::upstream::{parse_upstream, servers_from_resolv_conf, Forwarder};
use dns::zone::{Zone, ZoneSettings};
use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// In-flight queries get this long to finish after SIGTERM.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

#[derive(Debug, Parser)]
#[command(name = "cairn-dns", version, about = "Cluster DNS server for Cairn")]
struct Args {
    /// The cluster domain served with authority.
    #[arg(
        long,
        env = "CAIRN_DNS_CLUSTER_DOMAIN",
        default_value = "cluster.local"
    )]
    cluster_domain: String,
    /// Address for DNS over UDP and TCP (repeat for more).
    #[arg(
        long,
        env = "CAIRN_DNS_LISTEN",
        value_delimiter = ',',
        default_value = "0.0.0.0:53"
    )]
    listen: Vec<SocketAddr>,
    /// Address of the HTTP liveness endpoint (/health).
    #[arg(long, env = "CAIRN_DNS_HEALTH_LISTEN", default_value = "0.0.0.0:8080")]
    health_listen: SocketAddr,
    /// Address of the HTTP readiness endpoint (/ready).
    #[arg(long, env = "CAIRN_DNS_READY_LISTEN", default_value = "0.0.0.0:8181")]
    ready_listen: SocketAddr,
    /// Upstream resolvers, IP or IP:PORT (repeat or separate with commas); default: the
    /// nameservers of --resolv-conf.
    #[arg(long, env = "CAIRN_DNS_UPSTREAM", value_delimiter = ',')]
    upstream: Vec<String>,
    /// Where the upstream resolvers are read from when --upstream is not given.
    #[arg(
        long,
        env = "CAIRN_DNS_RESOLV_CONF",
        default_value = "/etc/resolv.conf"
    )]
    resolv_conf: PathBuf,
    /// TTL in seconds of cluster records and of negative cluster answers.
    #[arg(long, env = "CAIRN_DNS_TTL", default_value_t = 5)]
    ttl: u32,
    /// Time one upstream attempt may take, e.g. 2s or 500ms.
    #[arg(long, env = "CAIRN_DNS_UPSTREAM_TIMEOUT", default_value = "2s", value_parser = humantime::parse_duration)]
    upstream_timeout: Duration,
    /// Serve the Services and Endpoints of this JSON file (kubectl get services,endpoints
    /// -A -o json) instead of watching the API server.
    #[arg(long, env = "CAIRN_DNS_FROM_FILE")]
    from_file: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_target(false)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    // One thread: answering a query is a hash lookup or a wait on a socket, and a
    // single thread keeps the resident memory lowest.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    runtime.block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let settings = ZoneSettings::new(&args.cluster_domain, args.ttl).context("--cluster-domain")?;
    let upstreams = if args.upstream.is_empty() {
        // Cluster names must resolve even on a node without resolvers: only the
        // forwarded names fail (SERVFAIL) then.
        servers_from_resolv_conf(&args.resolv_conf).unwrap_or_else(|err| {
            tracing::warn!(%err, "no upstream resolvers: names outside the cluster domain will fail");
            Vec::new()
        })
    } else {
        args.upstream
            .iter()
            .map(|u| parse_upstream(u))
            .collect::<Result<_, _>>()
            .context("--upstream")?
    };
    tracing::info!(
        domain = %settings.origin,
        upstream = ?upstreams,
        listen = ?args.listen,
        "starting cairn-dns {}",
        env!("CARGO_PKG_VERSION")
    );

    let (zone_tx, zone_rx) = tokio::sync::watch::channel(None);
    let resolver = Arc::new(Resolver::new(
        &settings.origin,
        zone_rx,
        Forwarder::new(upstreams, args.upstream_timeout),
    ));
    let ready = Arc::new(AtomicBool::new(false));
    let tracker = TaskTracker::new();
    let shutdown = CancellationToken::new();

    let server = Server::new(resolver, tracker.clone(), shutdown.clone());
    for addr in &args.listen {
        let (udp, tcp) = dns::server::bind(*addr)
            .await
            .with_context(|| format!("--listen {addr}"))?;
        tracker.spawn(server.clone().serve_udp(udp));
        tracker.spawn(server.clone().serve_tcp(tcp));
    }
    let health = tokio::net::TcpListener::bind(args.health_listen)
        .await
        .with_context(|| format!("--health-listen {}", args.health_listen))?;
    tracker.spawn(dns::probes::serve(
        health,
        ready.clone(),
        tracker.clone(),
        shutdown.clone(),
    ));
    if args.ready_listen != args.health_listen {
        let probe = tokio::net::TcpListener::bind(args.ready_listen)
            .await
            .with_context(|| format!("--ready-listen {}", args.ready_listen))?;
        tracker.spawn(dns::probes::serve(
            probe,
            ready.clone(),
            tracker.clone(),
            shutdown.clone(),
        ));
    }

    let mut watching = None;
    match &args.from_file {
        Some(path) => {
            // The objects are dropped once the zone is built: only the zone is served.
            let zone = {
                let objects = dns::objects::load(path).context("--from-file")?;
                tracing::info!(services = objects.services.len(), endpoints = objects.endpoints.len(), path = %path.display(), "serving objects from file");
                Zone::build(&settings, &objects.services, &objects.endpoints)
            };
            zone_tx.send_replace(Some(Arc::new(zone)));
            ready.store(true, Ordering::Relaxed);
        }
        None => {
            let client = dns::watch::client()
                .await
                .context("connecting to the Kubernetes API server")?;
            watching = Some(tracker.spawn(dns::watch::run(
                client,
                settings,
                zone_tx,
                ready.clone(),
                shutdown.clone(),
            )));
        }
    }

    let mut sigterm = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut sigint = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let watch_ended = async {
        match watching {
            Some(task) => task.await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = sigterm.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = sigint.recv() => tracing::info!("SIGINT: shutting down"),
        ended = watch_ended => {
            shutdown.cancel();
            let err = match ended {
                Ok(Ok(())) => anyhow::anyhow!("the Kubernetes watch stopped"),
                Ok(Err(err)) => err.into(),
                Err(join) => anyhow::anyhow!("the Kubernetes watch task failed: {join}"),
            };
            return Err(err.context("serving the cluster zone"));
        }
    }
    ready.store(false, Ordering::Relaxed);
    shutdown.cancel();
    tracker.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!("queries still in flight after {SHUTDOWN_GRACE:?}; exiting anyway");
    }
    Ok(())
}
