//! The TCP JSON-lines listener, for machined's own logs (its services and
//! the kernel log, `machine.logging.destinations` with the `json_lines`
//! format, the way Talos ships them): one record per line, the same shape
//! as HTTP ingest, no acknowledgement (the sender fires and forgets).
//!
//! Lines are gathered into batches (up to 1000 lines or 200 ms) for the
//! writer. A connection holds a share of the in-flight byte budget while
//! its batch waits, and does not read further meanwhile, so a fast sender
//! is slowed by TCP's own flow control rather than buffered here. Lines
//! that are not valid records, longer than 1 MiB, or arrive while the
//! store refuses data are dropped and counted, with a warning at most
//! every 10 s per connection.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;

use crate::http::{kib_permits, Api};
use crate::record::{now_nanos, Record, MAX_MESSAGE_BYTES};
use crate::writer::Batch;

const BATCH_LINES: usize = 1000;
const BATCH_WAIT: Duration = Duration::from_millis(200);
const MAX_LINE: usize = MAX_MESSAGE_BYTES + 64 * 1024;
const WARN_EVERY: Duration = Duration::from_secs(10);
/// Connections served at once.
const MAX_CONNECTIONS: usize = 256;

/// Accepts connections until shutdown.
pub async fn serve(listener: TcpListener, api: Api, tracker: TaskTracker) {
    let connections = std::sync::Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, peer) = tokio::select! {
            _ = api.shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(%e, "json-lines accept");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "too many json-lines connections; closing this one");
            continue;
        };
        let api = api.clone();
        tracker.spawn(async move {
            let _permit = permit;
            tracing::debug!(%peer, "json-lines connection");
            connection(stream, peer, api).await;
        });
    }
}

/// Dropped lines of one connection, reported now and then.
struct Drops {
    bad: u64,
    refused: u64,
    last_warn: Option<Instant>,
    last_problem: String,
}

impl Drops {
    fn report(&mut self, peer: SocketAddr, force: bool) {
        if self.bad + self.refused == 0 {
            return;
        }
        if !force && self.last_warn.is_some_and(|t| t.elapsed() < WARN_EVERY) {
            return;
        }
        tracing::warn!(
            %peer,
            invalid = self.bad,
            refused = self.refused,
            last_problem = %self.last_problem,
            "json-lines: dropped lines"
        );
        self.bad = 0;
        self.refused = 0;
        self.last_warn = Some(Instant::now());
    }
}

/// Reads one line of at most `MAX_LINE` bytes into `buf` (without the
/// newline). Returns Ok(false) at the end of the stream; a longer line is
/// skipped to its end and reported as `Err`.
async fn read_line<R: AsyncRead + Unpin>(
    r: &mut BufReader<R>,
    buf: &mut Vec<u8>,
) -> std::io::Result<Result<bool, usize>> {
    buf.clear();
    let n = r.take(MAX_LINE as u64 + 1).read_until(b'\n', buf).await?;
    if n == 0 {
        return Ok(Ok(false));
    }
    if buf.last() == Some(&b'\n') {
        buf.pop();
        return Ok(Ok(true));
    }
    if buf.len() <= MAX_LINE {
        // The last line of the stream, without a newline.
        return Ok(Ok(true));
    }
    let mut skipped = buf.len();
    loop {
        buf.clear();
        let n = r.take(64 * 1024).read_until(b'\n', buf).await?;
        skipped += n;
        if n == 0 || buf.last() == Some(&b'\n') {
            buf.clear();
            return Ok(Err(skipped));
        }
    }
}

/// What the reading half of a connection reports.
enum Line {
    Record(Box<Record>),
    Bad(String),
}

/// Reads and parses lines until the stream ends; stops when the batching
/// half is gone. The channel is small, so a slow writer slows the reads.
async fn read_lines(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    tx: tokio::sync::mpsc::Sender<Line>,
) {
    let mut reader = BufReader::with_capacity(64 * 1024, stream);
    let mut buf = Vec::new();
    loop {
        let line = match read_line(&mut reader, &mut buf).await {
            Err(e) => {
                tracing::debug!(%peer, %e, "json-lines read");
                return;
            }
            Ok(Ok(false)) => return,
            Ok(Err(skipped)) => {
                Line::Bad(format!("a line of {skipped} bytes, longer than {MAX_LINE}"))
            }
            Ok(Ok(true)) => {
                let text = String::from_utf8_lossy(&buf);
                if text.trim().is_empty() {
                    continue;
                }
                match Record::parse(&text, now_nanos()) {
                    Ok(mut r) => {
                        if r.node.is_none() {
                            r.node = Some(peer.ip().to_string());
                        }
                        Line::Record(Box::new(r))
                    }
                    Err(e) => Line::Bad(e.to_string()),
                }
            }
        };
        if tx.send(line).await.is_err() {
            return;
        }
    }
}

async fn connection(stream: tokio::net::TcpStream, peer: SocketAddr, api: Api) {
    let (tx, mut lines) = tokio::sync::mpsc::channel(256);
    let reading = tokio::spawn(read_lines(stream, peer, tx));
    let mut drops = Drops {
        bad: 0,
        refused: 0,
        last_warn: None,
        last_problem: String::new(),
    };
    let mut records: Vec<Record> = Vec::new();
    let mut bytes = 0usize;
    let mut first: Option<Instant> = None;
    let mut open = true;
    while open {
        let deadline = first.map(|f| f + BATCH_WAIT);
        tokio::select! {
            _ = api.shutdown.cancelled() => open = false,
            _ = async { match deadline {
                Some(d) => tokio::time::sleep_until(d.into()).await,
                None => std::future::pending().await,
            } } => {}
            line = lines.recv() => match line {
                None => open = false,
                Some(Line::Bad(problem)) => {
                    drops.bad += 1;
                    drops.last_problem = problem;
                }
                Some(Line::Record(r)) => {
                    bytes += r.weight();
                    records.push(*r);
                    first.get_or_insert_with(Instant::now);
                }
            },
        }
        let due = first.is_some_and(|f| f.elapsed() >= BATCH_WAIT);
        if !records.is_empty() && (due || records.len() >= BATCH_LINES || !open) {
            let batch = std::mem::take(&mut records);
            first = None;
            if api.store.status().refusing.is_some() {
                drops.refused += batch.len() as u64;
                drops.last_problem = "the store refuses new data (out of room)".into();
            } else {
                let Ok(permit) = api
                    .budget
                    .clone()
                    .acquire_many_owned(kib_permits(bytes))
                    .await
                else {
                    break;
                };
                let sent = api
                    .tx
                    .send(Batch {
                        records: batch,
                        id: None,
                        ack: None,
                        permit: Some(permit),
                    })
                    .await;
                if sent.is_err() {
                    break;
                }
            }
            bytes = 0;
        }
        drops.report(peer, !open);
    }
    reading.abort();
}
