//! The sender: posts the buffered batches to the store, oldest first, one
//! at a time, each with this collector's source id and the batch's number
//! (`POST /api/v1/ingest?source=<id>&batch=<n>`), and removes a batch from
//! the buffer once the store acknowledged it (after its commit). A batch
//! sent again after a lost acknowledgement is recognised by the store and
//! not stored twice. While the store is unreachable or out of room the
//! sender waits (1 s, doubling to 30 s) and says so once, and again when it
//! delivers.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::buffer::{Buffer, Entry};

/// Longest wait for one batch's acknowledgement.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
const BACKOFF_MIN: Duration = Duration::from_millis(500);

/// What the sender reports.
#[derive(Debug, Default)]
pub struct Stats {
    pub delivered_batches: AtomicU64,
    pub delivered_lines: AtomicU64,
    pub store_reachable: AtomicBool,
}

/// How one attempt went.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Delivered {
        duplicate: bool,
    },
    /// 400: the store says the batch is malformed.
    Refused(String),
    /// Anything to retry later.
    Failed(String),
}

/// Percent-encodes a query-string value (the source id is plain, but be safe).
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

async fn post(client: &HttpClient, url: &str, body: Vec<u8>) -> Outcome {
    let req = match hyper::Request::post(url)
        .header("content-type", "application/x-ndjson")
        .body(Full::new(Bytes::from(body)))
    {
        Ok(r) => r,
        Err(e) => return Outcome::Failed(format!("bad request to {url}: {e}")),
    };
    let res = match tokio::time::timeout(REQUEST_TIMEOUT, client.request(req)).await {
        Err(_) => return Outcome::Failed(format!("no answer within {REQUEST_TIMEOUT:?}")),
        Ok(Err(e)) => return Outcome::Failed(format!("{e}: {}", source_chain(&e))),
        Ok(Ok(r)) => r,
    };
    let status = res.status();
    let body = match tokio::time::timeout(REQUEST_TIMEOUT, res.into_body().collect()).await {
        Ok(Ok(b)) => b.to_bytes(),
        Ok(Err(e)) => return Outcome::Failed(format!("reading the answer: {e}")),
        Err(_) => return Outcome::Failed("the answer stalled".into()),
    };
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    if status.is_success() {
        return Outcome::Delivered {
            duplicate: json["duplicate"].as_bool().unwrap_or(false),
        };
    }
    let msg = json["error"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| String::from_utf8_lossy(&body).trim().to_string());
    if status.as_u16() == 400 {
        Outcome::Refused(msg)
    } else {
        Outcome::Failed(format!("HTTP {}: {msg}", status.as_u16()))
    }
}

fn source_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = Vec::new();
    let mut cur = e.source();
    while let Some(s) = cur {
        parts.push(s.to_string());
        cur = s.source();
    }
    parts.join(": ")
}

/// Sends until `stop`; `published` is the highest batch number the reader
/// has finished writing.
pub async fn run(
    store: String,
    source: String,
    buffer: Buffer,
    mut published: watch::Receiver<u64>,
    stats: Arc<Stats>,
    retry_max: Duration,
    stop: CancellationToken,
) {
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    let base = format!("{}/api/v1/ingest", store.trim_end_matches('/'));
    let mut backoff = BACKOFF_MIN;
    let mut failing: Option<String> = None;
    loop {
        if stop.is_cancelled() {
            return;
        }
        let ready = *published.borrow_and_update();
        let next: Option<Entry> = match buffer.list() {
            Ok(l) => l.into_iter().find(|e| e.batch <= ready),
            Err(e) => {
                tracing::error!(%e, "listing the disk buffer");
                None
            }
        };
        let Some(entry) = next else {
            tokio::select! {
                _ = published.changed() => {}
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(5)) => {}
            }
            continue;
        };
        let (header, body) = match buffer.read(&entry) {
            Ok(x) => x,
            Err(e) => {
                tracing::error!(%e, "unreadable batch in the disk buffer; moving it to rejected/");
                let _ = buffer.reject(&entry);
                continue;
            }
        };
        let url = format!("{base}?source={}&batch={}", encode(&source), header.batch);
        let outcome = tokio::select! {
            o = post(&client, &url, body) => o,
            _ = stop.cancelled() => return,
        };
        match outcome {
            Outcome::Delivered { duplicate } => {
                if let Err(e) = buffer.remove(&entry) {
                    tracing::error!(%e, "removing a delivered batch");
                }
                stats.delivered_batches.fetch_add(1, Ordering::Relaxed);
                if duplicate {
                    tracing::info!(batch = header.batch, "the store had this batch already (sent again after a restart or a lost answer): not stored twice");
                } else {
                    stats
                        .delivered_lines
                        .fetch_add(header.lines as u64, Ordering::Relaxed);
                }
                stats.store_reachable.store(true, Ordering::Relaxed);
                if let Some(why) = failing.take() {
                    let waiting = buffer.list().map(|l| l.len()).unwrap_or(0);
                    tracing::info!(previous_error = %why, waiting, "the store takes batches again; sending the buffered ones");
                }
                backoff = BACKOFF_MIN;
            }
            Outcome::Refused(msg) => {
                let to = buffer.reject(&entry);
                tracing::error!(batch = header.batch, lines = header.lines, error = %msg, moved_to = ?to,
                    "the store refused a batch as malformed; it is kept in rejected/ and not sent again");
            }
            Outcome::Failed(why) => {
                stats.store_reachable.store(false, Ordering::Relaxed);
                if failing.as_deref() != Some(why.as_str()) {
                    let waiting = buffer.list().map(|l| l.len()).unwrap_or(0);
                    tracing::warn!(error = %why, store = %store, waiting,
                        "cannot deliver to the store; lines stay in the disk buffer and are sent when it answers");
                    failing = Some(why);
                }
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.cancelled() => return,
                }
                backoff = (backoff * 2).min(retry_max.max(BACKOFF_MIN));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn query_values_are_encoded() {
        assert_eq!(super::encode("node-1.a_b~"), "node-1.a_b~");
        assert_eq!(super::encode("a b&c"), "a%20b%26c");
    }
}
