//! The command line of `cairn-logcollector` and how its parts run: the
//! reader on a thread of its own (file reads block), the sender and the
//! health endpoint on a one-thread tokio runtime; SIGTERM stops all three
//! (the reader first writes what it holds to the buffer).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::reader::{Reader, ReaderError, Settings, Shared};
use crate::sender::Stats;

fn size(s: &str) -> Result<u64, String> {
    std::str::FromStr::from_str(s.trim())
        .map(|b: bytesize::ByteSize| b.as_u64())
        .map_err(|e| format!("{s:?} is not a size such as 64MiB ({e})"))
}

fn store_url(s: &str) -> Result<String, String> {
    let rest = s
        .strip_prefix("http://")
        .ok_or_else(|| format!("{s:?}: expected http://HOST:PORT (the store's HTTP address)"))?;
    if rest.is_empty() || rest.contains('$') {
        return Err(format!(
            "{s:?}: no host (an unexpanded $(VAR) means the store's Service did not exist when this Pod was made)"
        ));
    }
    Ok(s.trim_end_matches('/').to_string())
}

#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "cairn-logcollector",
    version,
    about = "Cairn's per-node log collector: container logs under /var/log/pods to cairn-logstore"
)]
pub struct Args {
    /// This node's name (the DaemonSet sets NODE_NAME from spec.nodeName).
    #[arg(long, env = "NODE_NAME")]
    pub node_name: String,
    /// The store's HTTP address, e.g. http://10.96.0.11:8080.
    #[arg(long, env = "CAIRN_LOGCOLLECTOR_STORE", value_parser = store_url)]
    pub store: String,
    /// The kubelet's pod log directory.
    #[arg(
        long,
        env = "CAIRN_LOGCOLLECTOR_PODS_DIR",
        default_value = "/var/log/pods"
    )]
    pub pods_dir: PathBuf,
    /// Offsets and the disk buffer (a hostPath, kept across restarts).
    #[arg(
        long,
        env = "CAIRN_LOGCOLLECTOR_STATE_DIR",
        default_value = "/var/lib/cairn-logcollector"
    )]
    pub state_dir: PathBuf,
    /// Most bytes of batches waiting in the disk buffer; then reading stops.
    #[arg(long, env = "CAIRN_LOGCOLLECTOR_BUFFER_SIZE", default_value = "128MiB", value_parser = size)]
    pub buffer_size: u64,
    /// A batch is sent when it holds this many lines...
    #[arg(long, default_value_t = 2000)]
    pub batch_lines: usize,
    /// ... or this many bytes ...
    #[arg(long, default_value = "1MiB", value_parser = size)]
    pub batch_bytes: u64,
    /// ... or its first line is this old.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub batch_wait: Duration,
    /// How often the pod log directory is scanned for new, rotated and
    /// removed files.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub scan_interval: Duration,
    /// Pause when there is nothing new to read.
    #[arg(long, default_value = "250ms", value_parser = humantime::parse_duration)]
    pub poll_interval: Duration,
    /// Longest message kept (longer ones, joined partial lines included,
    /// are cut and labelled truncated); at most 1MiB, the store's limit.
    #[arg(long, default_value = "256KiB", value_parser = size)]
    pub max_line_bytes: u64,
    /// Longest pause between attempts while the store does not answer.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub retry_max: Duration,
    /// HTTP /healthz for the kubelet's probes.
    #[arg(
        long,
        env = "CAIRN_LOGCOLLECTOR_HEALTH_LISTEN",
        default_value = "0.0.0.0:8081"
    )]
    pub health_listen: SocketAddr,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Reader(#[from] ReaderError),
    #[error("--max-line-bytes {0}: at most 1MiB (the store's limit)")]
    MaxLine(u64),
    #[error("--health-listen {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("starting: {0}")]
    Start(std::io::Error),
}

impl Args {
    pub fn settings(&self) -> Settings {
        Settings {
            pods_dir: self.pods_dir.clone(),
            state_dir: self.state_dir.clone(),
            node: self.node_name.clone(),
            batch_lines: self.batch_lines.max(1),
            batch_bytes: usize::try_from(self.batch_bytes).unwrap_or(usize::MAX),
            batch_wait: self.batch_wait,
            scan_interval: self.scan_interval,
            poll_interval: self.poll_interval,
            buffer_limit: self.buffer_size,
            max_line: usize::try_from(self.max_line_bytes).unwrap_or(1 << 20),
        }
    }
}

/// Runs until SIGTERM or SIGINT. Call inside a tokio runtime.
pub async fn run(args: Args) -> Result<(), RunError> {
    if args.max_line_bytes > 1 << 20 {
        return Err(RunError::MaxLine(args.max_line_bytes));
    }
    let shared = Arc::new(Shared::default());
    let stats = Arc::new(Stats::default());
    let (published, ready) = tokio::sync::watch::channel(0);
    let settings = args.settings();
    let reader = tokio::task::spawn_blocking({
        let shared = shared.clone();
        move || Reader::open(settings, shared, published)
    })
    .await
    .map_err(|e| RunError::Start(std::io::Error::other(e)))??;
    let (source, buffer) = (reader.source(), reader.buffer());
    let listener = tokio::net::TcpListener::bind(args.health_listen)
        .await
        .map_err(|source| RunError::Bind {
            addr: args.health_listen,
            source,
        })?;
    tracing::info!(node = %args.node_name, store = %args.store, pods = %args.pods_dir.display(),
        state = %args.state_dir.display(), source = %source, "starting");
    let reader_thread = std::thread::Builder::new()
        .name("reader".into())
        .spawn(move || reader.run())
        .map_err(RunError::Start)?;
    let stop = CancellationToken::new();
    let health = tokio::spawn(crate::health::serve(
        listener,
        shared.clone(),
        stats.clone(),
        buffer.clone(),
        stop.clone(),
    ));
    let sender = tokio::spawn(crate::sender::run(
        args.store.clone(),
        source,
        buffer,
        ready,
        stats,
        args.retry_max,
        stop.clone(),
    ));
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).map_err(RunError::Start)?;
        let mut int = signal(SignalKind::interrupt()).map_err(RunError::Start)?;
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: stopping"),
            _ = int.recv() => tracing::info!("SIGINT: stopping"),
        }
    }
    shared.stop.store(true, Ordering::Relaxed);
    stop.cancel();
    let _ = sender.await;
    let _ = health.await;
    let _ = tokio::task::spawn_blocking(move || reader_thread.join()).await;
    tracing::info!("stopped");
    Ok(())
}
