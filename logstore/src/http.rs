//! The HTTP API (axum): ingest, query, live tail, health.
//!
//! | route | what |
//! | --- | --- |
//! | `POST /api/v1/ingest[?source=S&batch=N]` | a body of JSON lines; 200 `{"accepted":n,"duplicate":b}` once committed to disk; 400 names the bad line and field; 507 when the store is out of room; 503 when it cannot commit or is stopping |
//! | `GET /api/v1/query?q=&node=&namespace=&pod=&container=&stream=&service=&start=&end=&since=&limit=&cursor=` | a page, newest first: `{"records":[..],"next_cursor":"..."or null,"last_seq":n}`; 400 names the bad parameter or the query's problem |
//! | `GET /api/v1/tail?<same filters>&after_seq=N` | newline-delimited JSON records as they are committed (a blank line every 15 s keeps proxies from closing it) |
//! | `GET /healthz` | 200 with sizes and whether writes are accepted (500 once the writer thread is gone) |
//! | `GET /readyz` | 200 while serving, 503 from shutdown on |
//!
//! Errors are JSON `{"error":"..."}` with a message written for the user.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::record::{now_nanos, parse_lines};
use crate::search::{self, QueryError, Request};
use crate::store::Store;
use crate::writer::{Batch, BatchId, WriteError};

/// Largest ingest body.
pub const MAX_BODY: usize = 16 << 20;
/// Bytes of ingest bodies parsed and waiting for the writer, at most.
pub const INFLIGHT_BYTES: usize = 64 << 20;
/// Live tails served at once.
pub const MAX_TAILS: usize = 64;
/// Records read per tail round.
const TAIL_CHUNK: usize = 1000;
/// A blank line this often keeps an idle tail open through proxies.
const KEEPALIVE: Duration = Duration::from_secs(15);

/// What every handler shares.
#[derive(Clone)]
pub struct Api {
    pub store: Arc<Store>,
    pub tx: mpsc::Sender<Batch>,
    /// In-flight ingest bytes, in KiB permits.
    pub budget: Arc<Semaphore>,
    pub tails: Arc<Semaphore>,
    pub shutdown: CancellationToken,
    pub writer_alive: Arc<AtomicBool>,
}

/// KiB permits for `bytes` (at least one).
pub fn kib_permits(bytes: usize) -> u32 {
    u32::try_from(bytes / 1024 + 1).unwrap_or(u32::MAX)
}

impl Api {
    pub fn new(
        store: Arc<Store>,
        tx: mpsc::Sender<Batch>,
        shutdown: CancellationToken,
        writer_alive: Arc<AtomicBool>,
    ) -> Api {
        Api {
            store,
            tx,
            budget: Arc::new(Semaphore::new(INFLIGHT_BYTES / 1024)),
            tails: Arc::new(Semaphore::new(MAX_TAILS)),
            shutdown,
            writer_alive,
        }
    }

    pub fn router(self) -> Router {
        Router::new()
            .route("/api/v1/ingest", post(ingest))
            .route("/api/v1/query", get(query))
            .route("/api/v1/tail", get(tail))
            .route("/healthz", get(healthz))
            .route("/readyz", get(readyz))
            .layer(DefaultBodyLimit::max(MAX_BODY))
            .with_state(self)
    }
}

fn error(status: StatusCode, message: impl std::fmt::Display) -> Response {
    let body = serde_json::json!({ "error": message.to_string() }).to_string();
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn json(body: String) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

fn batch_id(params: &BTreeMap<String, String>) -> Result<Option<BatchId>, Box<Response>> {
    for k in params.keys() {
        if k != "source" && k != "batch" {
            return Err(Box::new(error(
                StatusCode::BAD_REQUEST,
                format!("{k}: unknown parameter (known: source, batch)"),
            )));
        }
    }
    match (params.get("source"), params.get("batch")) {
        (None, None) => Ok(None),
        (Some(s), Some(b)) if !s.is_empty() && s.len() <= 253 => b
            .parse()
            .map(|batch| {
                Some(BatchId {
                    source: s.clone(),
                    batch,
                })
            })
            .map_err(|_| {
                Box::new(error(
                    StatusCode::BAD_REQUEST,
                    format!("batch: {b:?} is not a batch number"),
                ))
            }),
        (Some(_), Some(_)) => Err(Box::new(error(
            StatusCode::BAD_REQUEST,
            "source: must have 1 to 253 characters",
        ))),
        _ => Err(Box::new(error(
            StatusCode::BAD_REQUEST,
            "source and batch go together: give both or neither",
        ))),
    }
}

async fn ingest(
    State(api): State<Api>,
    Query(params): Query<BTreeMap<String, String>>,
    body: Bytes,
) -> Response {
    let id = match batch_id(&params) {
        Ok(id) => id,
        Err(r) => return *r,
    };
    if api.shutdown.is_cancelled() {
        return error(StatusCode::SERVICE_UNAVAILABLE, "the log store is stopping");
    }
    if let Some(reason) = api.store.status().refusing {
        return error(StatusCode::INSUFFICIENT_STORAGE, reason);
    }
    let size = body.len();
    let parsed = tokio::task::spawn_blocking(move || {
        let text =
            std::str::from_utf8(&body).map_err(|e| format!("the body is not UTF-8 ({e})"))?;
        parse_lines(text, now_nanos()).map_err(|(line, e)| format!("line {line}: {e}"))
    })
    .await;
    let records = match parsed {
        Ok(Ok(r)) => r,
        Ok(Err(problem)) => return error(StatusCode::BAD_REQUEST, problem),
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e),
    };
    if records.is_empty() {
        return json(r#"{"accepted":0,"duplicate":false}"#.into());
    }
    let Ok(permit) = api
        .budget
        .clone()
        .acquire_many_owned(kib_permits(size))
        .await
    else {
        return error(StatusCode::SERVICE_UNAVAILABLE, "the log store is stopping");
    };
    let (ack, done) = oneshot::channel();
    let batch = Batch {
        records,
        id,
        ack: Some(ack),
        permit: Some(permit),
    };
    if api.tx.send(batch).await.is_err() {
        return error(StatusCode::SERVICE_UNAVAILABLE, "the log store is stopping");
    }
    match done.await {
        Ok(Ok(a)) => {
            json(serde_json::json!({"accepted": a.accepted, "duplicate": a.duplicate}).to_string())
        }
        Ok(Err(WriteError::Full(why))) => error(StatusCode::INSUFFICIENT_STORAGE, why),
        Ok(Err(WriteError::Unavailable(why))) => error(StatusCode::SERVICE_UNAVAILABLE, why),
        Err(_) => error(StatusCode::SERVICE_UNAVAILABLE, "the log store is stopping"),
    }
}

fn query_error(e: QueryError) -> Response {
    match e {
        QueryError::Search(_) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
        _ => error(StatusCode::BAD_REQUEST, e),
    }
}

async fn query(State(api): State<Api>, Query(params): Query<BTreeMap<String, String>>) -> Response {
    let request = match Request::from_params(&params) {
        Ok(r) if r.after_seq.is_some() => {
            return error(
                StatusCode::BAD_REQUEST,
                "after_seq: only /api/v1/tail takes it",
            )
        }
        Ok(r) => r,
        Err(e) => return query_error(e),
    };
    let store = api.store.clone();
    let result = tokio::task::spawn_blocking(move || {
        let snapshot = store.snapshot();
        let q = request.to_query(&store.fields, &store.query_parser())?;
        let page = search::page(&snapshot.searcher, &store.fields, &*q, request.limit)?;
        Ok::<_, QueryError>((page, snapshot.last_seq))
    })
    .await;
    match result {
        Ok(Ok((page, last_seq))) => {
            let mut body =
                String::with_capacity(page.records.iter().map(|r| r.len() + 1).sum::<usize>() + 64);
            body.push_str("{\"records\":[");
            body.push_str(&page.records.join(","));
            body.push_str("],\"next_cursor\":");
            match page.next_cursor {
                Some(c) => body.push_str(&serde_json::json!(c.encode()).to_string()),
                None => body.push_str("null"),
            }
            body.push_str(&format!(",\"last_seq\":{last_seq}}}"));
            json(body)
        }
        Ok(Err(e)) => query_error(e),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

async fn tail(State(api): State<Api>, Query(params): Query<BTreeMap<String, String>>) -> Response {
    let mut request = match Request::from_params(&params) {
        Ok(r) if r.cursor.is_some() => {
            return error(
                StatusCode::BAD_REQUEST,
                "cursor: only /api/v1/query takes it",
            )
        }
        Ok(r) => r,
        Err(e) => return query_error(e),
    };
    // Refuse a bad query now, not in the middle of a stream.
    if let Err(e) = request.to_query(&api.store.fields, &api.store.query_parser()) {
        return query_error(e);
    }
    let Ok(permit) = api.tails.clone().try_acquire_owned() else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("too many live tails (at most {MAX_TAILS}); try again later"),
        );
    };
    let mut last = request
        .after_seq
        .unwrap_or_else(|| api.store.snapshot().last_seq);
    let (tx, rx) = mpsc::channel::<Bytes>(8);
    let store = api.store.clone();
    let shutdown = api.shutdown.clone();
    let mut commits = store.subscribe();
    tokio::spawn(async move {
        let _permit = permit;
        'outer: loop {
            // Catch up with everything committed after `last`.
            loop {
                let snapshot = store.snapshot();
                if snapshot.last_seq <= last {
                    break;
                }
                request.after_seq = Some(last);
                let (r, s, snap) = (request.clone(), store.clone(), snapshot.clone());
                let found = tokio::task::spawn_blocking(move || {
                    let q = r.to_query(&s.fields, &s.query_parser())?;
                    search::after(&snap.searcher, &s.fields, &*q, TAIL_CHUNK)
                })
                .await;
                let records = match found {
                    Ok(Ok(r)) => r,
                    Ok(Err(e)) => {
                        tracing::warn!(%e, "live tail query failed");
                        break 'outer;
                    }
                    Err(_) => break 'outer,
                };
                let complete = records.len() < TAIL_CHUNK;
                for (seq, record) in records {
                    let mut line = record.into_bytes();
                    line.push(b'\n');
                    if tx.send(Bytes::from(line)).await.is_err() {
                        break 'outer;
                    }
                    last = last.max(seq);
                }
                if complete {
                    // Records up to the snapshot that did not match are behind us too.
                    last = last.max(snapshot.last_seq);
                    break;
                }
            }
            tokio::select! {
                changed = commits.changed() => if changed.is_err() { break },
                _ = tokio::time::sleep(KEEPALIVE) => {
                    if tx.send(Bytes::from_static(b"\n")).await.is_err() { break }
                }
                _ = shutdown.cancelled() => break,
                _ = tx.closed() => break,
            }
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, Infallible>(b), rx))
    });
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "application/x-ndjson"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(stream),
    )
        .into_response()
}

async fn healthz(State(api): State<Api>) -> Response {
    let s = api.store.status();
    let alive = api.writer_alive.load(Ordering::Relaxed);
    let body = serde_json::json!({
        "status": if alive { "ok" } else { "writer stopped" },
        "docs": s.docs,
        "bytes": s.bytes,
        "live_bytes": s.live_bytes,
        "free_disk_bytes": s.free_disk_bytes,
        "accepting": s.refusing.is_none(),
        "refusing": s.refusing,
        "last_seq": api.store.snapshot().last_seq,
    })
    .to_string();
    if alive || api.shutdown.is_cancelled() {
        json(body)
    } else {
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response()
    }
}

async fn readyz(State(api): State<Api>) -> Response {
    if api.shutdown.is_cancelled() {
        error(StatusCode::SERVICE_UNAVAILABLE, "stopping")
    } else {
        (StatusCode::OK, "ok\n").into_response()
    }
}
