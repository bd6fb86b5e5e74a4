//! The command line of `cairn-logstore` and the server it runs: the
//! writer thread, the HTTP API and the TCP listener, stopped in order on
//! SIGTERM (listeners first, then the writer commits what it holds).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::http::Api;
use crate::retention::Policy;
use crate::size::MinFree;
use crate::store::{OpenError, Store};
use crate::writer::{Settings, Writer};

/// Time requests in flight get after SIGTERM.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

fn size(s: &str) -> Result<u64, String> {
    crate::size::parse(s)
}

#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "cairn-logstore",
    version,
    about = "Cairn's cluster log store: JSON-lines ingest, full-text query, live tail"
)]
pub struct Args {
    /// Where the index lives (a hostPath on a control-plane node's disk).
    #[arg(
        long,
        env = "CAIRN_LOGSTORE_DATA_DIR",
        default_value = "/var/lib/cairn-logstore"
    )]
    pub data_dir: PathBuf,
    /// HTTP API (ingest, query, tail, health).
    #[arg(
        long,
        env = "CAIRN_LOGSTORE_HTTP_LISTEN",
        default_value = "0.0.0.0:8080"
    )]
    pub http_listen: SocketAddr,
    /// TCP JSON-lines listener (machined's logs); `none` turns it off.
    #[arg(long, env = "CAIRN_LOGSTORE_TCP_LISTEN", default_value = "0.0.0.0:5170", value_parser = parse_optional_addr)]
    pub tcp_listen: OptionalAddr,
    /// Keep at most this much of records; the oldest go first.
    #[arg(long, env = "CAIRN_LOGSTORE_MAX_SIZE", default_value = "2GiB", value_parser = size)]
    pub max_size: u64,
    /// Delete records older than this (`0s`: no age limit).
    #[arg(long, env = "CAIRN_LOGSTORE_MAX_AGE", default_value = "7d", value_parser = humantime::parse_duration)]
    pub max_age: Duration,
    /// Records younger than this are never deleted to make room: at the
    /// size limit with only those left, new data is refused (HTTP 507).
    #[arg(long, env = "CAIRN_LOGSTORE_PROTECT_RECENT", default_value = "10m", value_parser = humantime::parse_duration)]
    pub protect_recent: Duration,
    /// Refuse new data when the disk has less free space than this (a size
    /// or a percentage of the filesystem).
    #[arg(long, env = "CAIRN_LOGSTORE_MIN_FREE_DISK", default_value = "15%")]
    pub min_free_disk: MinFree,
    /// Longest time a batch waits for the commit that makes it durable.
    #[arg(long, env = "CAIRN_LOGSTORE_COMMIT_INTERVAL", default_value = "500ms", value_parser = humantime::parse_duration)]
    pub commit_interval: Duration,
    /// How often retention runs.
    #[arg(long, env = "CAIRN_LOGSTORE_RETENTION_INTERVAL", default_value = "1m", value_parser = humantime::parse_duration)]
    pub retention_interval: Duration,
    /// tantivy's indexing memory budget (at least 15MiB).
    #[arg(long, env = "CAIRN_LOGSTORE_INDEX_MEMORY", default_value = "32MiB", value_parser = size)]
    pub index_memory: u64,
    /// Create the data directory, give it (recursively) to UID:GID and
    /// exit: the init container runs this as root so the store itself
    /// runs unprivileged.
    #[arg(long, value_name = "UID:GID", value_parser = parse_owner)]
    pub prepare_data_dir_for: Option<(u32, u32)>,
}

/// An address, or `none`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OptionalAddr(pub Option<SocketAddr>);

fn parse_optional_addr(s: &str) -> Result<OptionalAddr, String> {
    if s == "none" || s.is_empty() {
        return Ok(OptionalAddr(None));
    }
    s.parse()
        .map(|a| OptionalAddr(Some(a)))
        .map_err(|e| format!("{s:?} is not an address such as 0.0.0.0:5170 ({e})"))
}

fn parse_owner(s: &str) -> Result<(u32, u32), String> {
    let (u, g) = s
        .split_once(':')
        .ok_or_else(|| format!("{s:?}: expected UID:GID, e.g. 65532:65532"))?;
    let n = |x: &str| {
        x.parse::<u32>()
            .map_err(|_| format!("{x:?} is not a number"))
    };
    Ok((n(u)?, n(g)?))
}

/// Why the server stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Open(#[from] OpenError),
    #[error("--index-memory {0}: tantivy needs at least 15MiB")]
    IndexMemory(u64),
    #[error("cannot start the index writer: {0}")]
    Writer(tantivy::TantivyError),
    #[error("cannot listen on {flag} {addr}: {source}")]
    Bind {
        flag: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("preparing {path}: {source}")]
    Prepare {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("signal handler: {0}")]
    Signal(std::io::Error),
    #[error("serving HTTP: {0}")]
    Http(std::io::Error),
}

/// `--prepare-data-dir-for`: creates `dir` and chowns it and everything in
/// it, unless it already belongs to UID:GID (then what the store wrote in it
/// does too).
pub fn prepare_data_dir(dir: &Path, uid: u32, gid: u32) -> Result<(), ServeError> {
    use std::os::unix::fs::MetadataExt as _;
    let err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ServeError::Prepare { path, source }
    };
    std::fs::create_dir_all(dir).map_err(err(dir))?;
    let meta = std::fs::metadata(dir).map_err(err(dir))?;
    if (meta.uid(), meta.gid()) == (uid, gid) {
        tracing::info!(dir = %dir.display(), uid, gid, "data directory already prepared");
        return Ok(());
    }
    fn walk(p: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
        out.push(p.to_path_buf());
        if p.symlink_metadata()?.is_dir() {
            for e in std::fs::read_dir(p)? {
                walk(&e?.path(), out)?;
            }
        }
        Ok(())
    }
    let mut paths = Vec::new();
    walk(dir, &mut paths).map_err(err(dir))?;
    // The top directory last: it marks the work done.
    for p in paths.iter().rev() {
        std::os::unix::fs::lchown(p, Some(uid), Some(gid)).map_err(err(p))?;
    }
    tracing::info!(dir = %dir.display(), uid, gid, files = paths.len(), "data directory prepared");
    Ok(())
}

impl Args {
    pub fn settings(&self) -> Settings {
        Settings {
            commit_interval: self.commit_interval,
            commit_docs: 100_000,
            memory_budget: usize::try_from(self.index_memory).unwrap_or(usize::MAX),
            tick: Duration::from_millis(500).min(self.retention_interval),
            retention_interval: self.retention_interval,
            policy: Policy {
                max_age: (!self.max_age.is_zero()).then_some(self.max_age),
                max_size: self.max_size,
                protect_recent: self.protect_recent,
                min_free: self.min_free_disk,
            },
        }
    }
}

/// Resolves on SIGTERM or SIGINT.
async fn signalled() -> Result<(), ServeError> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).map_err(ServeError::Signal)?;
    let mut int = signal(SignalKind::interrupt()).map_err(ServeError::Signal)?;
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: stopping"),
        _ = int.recv() => tracing::info!("SIGINT: stopping"),
    }
    Ok(())
}

/// Runs the store until SIGTERM or SIGINT. Call inside a tokio runtime.
pub async fn run(args: Args) -> Result<(), ServeError> {
    if let Some((uid, gid)) = args.prepare_data_dir_for {
        return prepare_data_dir(&args.data_dir, uid, gid);
    }
    if args.index_memory < 15 << 20 {
        return Err(ServeError::IndexMemory(args.index_memory));
    }
    let (store, state) = Store::open(&args.data_dir)?;
    tracing::info!(
        dir = %store.dir.display(),
        docs = store.snapshot().searcher.num_docs(),
        next_seq = state.next_seq,
        max_size = %crate::size::show(args.max_size),
        max_age = %humantime::format_duration(args.max_age),
        "index open"
    );
    let http = TcpListener::bind(args.http_listen)
        .await
        .map_err(|source| ServeError::Bind {
            flag: "--http-listen",
            addr: args.http_listen,
            source,
        })?;
    let tcp = match args.tcp_listen.0 {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .map_err(|source| ServeError::Bind {
                    flag: "--tcp-listen",
                    addr,
                    source,
                })?,
        ),
        None => None,
    };
    let writer = Writer::new(store.clone(), state, args.settings()).map_err(ServeError::Writer)?;
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let alive = Arc::new(AtomicBool::new(true));
    let rt = tokio::runtime::Handle::current();
    let writer_alive = alive.clone();
    let writer_thread = std::thread::Builder::new()
        .name("index-writer".into())
        .spawn(move || {
            writer.run(rx, rt);
            writer_alive.store(false, Ordering::Relaxed);
        })
        .map_err(ServeError::Signal)?;

    let shutdown = CancellationToken::new();
    let tracker = TaskTracker::new();
    let api = Api::new(store.clone(), tx, shutdown.clone(), alive);
    tracing::info!(http = %args.http_listen, tcp = ?args.tcp_listen.0, "serving");
    if let Some(tcp) = tcp {
        tracker.spawn(crate::tcp::serve(tcp, api.clone(), tracker.clone()));
    }
    let server =
        axum::serve(http, api.router()).with_graceful_shutdown(shutdown.clone().cancelled_owned());
    let mut server = Box::pin(std::future::IntoFuture::into_future(server));
    tokio::select! {
        r = &mut server => { r.map_err(ServeError::Http)?; }
        r = signalled() => {
            r?;
            shutdown.cancel();
            match tokio::time::timeout(SHUTDOWN_GRACE, &mut server).await {
                Ok(r) => r.map_err(ServeError::Http)?,
                Err(_) => tracing::warn!("requests still in flight after {SHUTDOWN_GRACE:?}; stopping anyway"),
            }
        }
    }
    shutdown.cancel();
    tracker.close();
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, tracker.wait()).await;
    // The last senders are gone with the server and the listener: the
    // writer commits what it holds and returns.
    drop(server);
    let _ = tokio::task::spawn_blocking(move || writer_thread.join()).await;
    tracing::info!("stopped");
    Ok(())
}
