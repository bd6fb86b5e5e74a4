//! The writer thread: the only code that changes the index.
//!
//! Batches arrive on a bounded channel (HTTP ingest and the TCP listener
//! hold a share of a byte budget while theirs waits, so memory stays
//! bounded and a fast producer is slowed, not buffered). Documents are
//! added as they come and committed together (group commit): as soon as no
//! more batches are queued (commits at least 50 ms apart), and at the
//! latest `commit_interval` after the first uncommitted batch or when
//! `commit_docs` wait; a batch is acknowledged only after the commit
//! that holds it returned, i.e. after tantivy synced it to disk. A failed
//! commit rolls back, and every batch in it gets an error (never a false ack).
//!
//! Every `tick` the thread measures the index and the free disk, decides
//! whether writes are accepted, and runs retention when it is due (see
//! `retention`).
//! The disk space of deleted records comes back through `compaction`.

use std::time::{Duration, Instant};

use tantivy::{IndexWriter, TantivyDocument};
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit};

use crate::compaction::{self, Compaction};
use crate::record::{now_nanos, Record};
use crate::retention::{self, Policy};
use crate::store::{CommitState, SourceState, Status, Store};

/// Commits are at least this far apart (each flushes a segment and syncs).
const MIN_COMMIT_GAP: Duration = Duration::from_millis(50);
/// Below this much free space a failed write is blamed on the disk.
const DISK_FULL: u64 = 16 << 20;
/// After a write failed for lack of space, writes resume once this much is free.
const DISK_RECOVERED: u64 = 64 << 20;
/// How stale the index's sizes may get while nothing is committed (merges
/// of tantivy's own policy end unannounced). Listing and reloading the
/// index every tick cost a tenth of a CPU under emulation doing nothing.
const REMEASURE_EVERY: Duration = Duration::from_secs(10);

/// The writer's settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Longest a batch waits for its commit.
    pub commit_interval: Duration,
    /// Commit as soon as this many documents wait.
    pub commit_docs: usize,
    /// tantivy's indexing memory budget (one indexing thread).
    pub memory_budget: usize,
    /// How often sizes and free space are measured.
    pub tick: Duration,
    /// How often retention runs (also whenever the size limit is passed).
    pub retention_interval: Duration,
    pub policy: Policy,
}

/// A collector's batch identity: its source id and batch number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchId {
    pub source: String,
    pub batch: u64,
}

/// What a batch's sender learns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    pub accepted: usize,
    /// The batch had been committed before (sent again after a lost ack).
    pub duplicate: bool,
}

/// Why a batch was not stored.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum WriteError {
    /// Out of room (size limit with nothing to delete, or the disk).
    #[error("{0}")]
    Full(String),
    /// The commit failed for another reason, or the store is stopping.
    #[error("{0}")]
    Unavailable(String),
}

/// One batch for the writer.
pub struct Batch {
    pub records: Vec<Record>,
    pub id: Option<BatchId>,
    /// Where the outcome goes (`None`: nobody waits, e.g. the TCP listener).
    pub ack: Option<oneshot::Sender<Result<Ack, WriteError>>>,
    /// The share of the in-flight byte budget this batch holds.
    pub permit: Option<OwnedSemaphorePermit>,
}

struct Waiting {
    ack: Option<oneshot::Sender<Result<Ack, WriteError>>>,
    outcome: Ack,
}

/// The writer thread's state.
pub struct Writer {
    store: std::sync::Arc<Store>,
    /// `None` after a failed rollback; reopened when next needed.
    writer: Option<IndexWriter<TantivyDocument>>,
    settings: Settings,
    /// State of the last commit, and with the uncommitted batches applied.
    committed: CommitState,
    state: CommitState,
    waiting: Vec<Waiting>,
    pending_docs: usize,
    first_pending: Option<Instant>,
    next_retention: Instant,
    /// When sizes and free space were last measured in full.
    measured: Instant,
    /// The last commit failed for lack of space: refuse until space returns.
    disk_error: Option<String>,
    /// The last retention found nothing it may delete while over the limit.
    cannot_make_room: bool,
    compaction: Compaction,
}

fn new_writer(store: &Store, settings: &Settings) -> tantivy::Result<IndexWriter<TantivyDocument>> {
    let options = tantivy::indexer::IndexWriterOptions::builder()
        .memory_budget_per_thread(settings.memory_budget)
        .num_worker_threads(1)
        .num_merge_threads(1)
        .build();
    let writer = store.index.writer_with_options(options)?;
    // Segments of similar sizes are merged by tantivy's default policy;
    // those with deleted records by `compaction` only (see there why).
    writer.set_merge_policy(Box::new(tantivy::indexer::LogMergePolicy::default()));
    Ok(writer)
}

/// Whether an error chain holds ENOSPC or EDQUOT.
fn is_out_of_space(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if matches!(io.raw_os_error(), Some(28) | Some(122)) {
                return true;
            }
        }
        cur = err.source();
    }
    let text = e.to_string();
    text.contains("No space left on device") || text.contains("Disk quota exceeded")
}

impl Writer {
    pub fn new(
        store: std::sync::Arc<Store>,
        state: CommitState,
        settings: Settings,
    ) -> tantivy::Result<Writer> {
        let writer = new_writer(&store, &settings)?;
        Ok(Writer {
            store,
            writer: Some(writer),
            next_retention: Instant::now(),
            measured: Instant::now(),
            settings,
            committed: state.clone(),
            state,
            waiting: Vec::new(),
            pending_docs: 0,
            first_pending: None,
            disk_error: None,
            cannot_make_room: false,
            compaction: Compaction::default(),
        })
    }

    /// The index writer, reopened if a failed rollback dropped it.
    fn writer(&mut self) -> tantivy::Result<&mut IndexWriter<TantivyDocument>> {
        if self.writer.is_none() {
            self.writer = Some(new_writer(&self.store, &self.settings)?);
            tracing::info!("index writer reopened");
        }
        match self.writer.as_mut() {
            Some(w) => Ok(w),
            None => Err(tantivy::TantivyError::InternalError(
                "no index writer".into(),
            )),
        }
    }

    /// Runs until the channel closes (every sender dropped), then commits
    /// what waits and returns.
    pub fn run(mut self, mut rx: mpsc::Receiver<Batch>, rt: tokio::runtime::Handle) {
        self.measure();
        let mut next_tick = Instant::now() + self.settings.tick;
        let mut last_commit = Instant::now();
        loop {
            let mut deadline = next_tick;
            if let Some(first) = self.first_pending {
                deadline = deadline
                    .min(first + self.settings.commit_interval)
                    .min(last_commit + MIN_COMMIT_GAP);
            }
            let received =
                rt.block_on(async { tokio::time::timeout_at(deadline.into(), rx.recv()).await });
            match received {
                Ok(Some(batch)) => self.take(batch),
                Ok(None) => break,
                Err(_) => {}
            }
            // Group commit: whatever arrived while the last commit ran goes
            // into the next one, as soon as nothing more is queued (at most
            // one commit per MIN_COMMIT_GAP), and no batch waits longer than
            // `commit_interval`.
            let due = self.first_pending.is_some_and(|f| {
                f.elapsed() >= self.settings.commit_interval
                    || (rx.is_empty() && last_commit.elapsed() >= MIN_COMMIT_GAP)
            });
            if due || self.pending_docs >= self.settings.commit_docs {
                self.commit();
                last_commit = Instant::now();
            }
            if Instant::now() >= next_tick {
                self.tick();
                next_tick = Instant::now() + self.settings.tick;
            }
        }
        self.commit();
        if let Some(Err(e)) = self.writer.take().map(IndexWriter::wait_merging_threads) {
            tracing::warn!(%e, "waiting for merges at shutdown");
        }
        tracing::info!("index writer stopped");
    }

    fn take(&mut self, batch: Batch) {
        let Batch {
            records, id, ack, ..
        } = batch;
        let reply = |ack: Option<oneshot::Sender<_>>, r| {
            if let Some(a) = ack {
                let _ = a.send(r);
            }
        };
        if let Some(reason) = self.store.status().refusing {
            reply(ack, Err(WriteError::Full(reason)));
            return;
        }
        if let Some(id) = &id {
            let seen = |s: &CommitState| {
                s.sources
                    .get(&id.source)
                    .is_some_and(|s| id.batch <= s.batch)
            };
            if seen(&self.committed) {
                reply(
                    ack,
                    Ok(Ack {
                        accepted: 0,
                        duplicate: true,
                    }),
                );
                return;
            }
            if seen(&self.state) {
                // The same batch is in the commit being prepared: answer with it.
                self.waiting.push(Waiting {
                    ack,
                    outcome: Ack {
                        accepted: 0,
                        duplicate: true,
                    },
                });
                return;
            }
        }
        let n = records.len();
        if let Err(e) = self.writer() {
            let full = is_out_of_space(&e);
            self.waiting.push(Waiting {
                ack,
                outcome: Ack {
                    accepted: 0,
                    duplicate: false,
                },
            });
            self.fail(format!("the index writer cannot be opened: {e}"), full);
            return;
        }
        for r in &records {
            let seq = self.state.next_seq;
            self.state.next_seq += 1;
            let doc = self.store.fields.document(r, seq);
            let added = match &self.writer {
                Some(w) => w.add_document(doc).map(drop),
                None => Err(tantivy::TantivyError::InternalError(
                    "no index writer".into(),
                )),
            };
            if let Err(e) = added {
                tracing::error!(%e, "adding a document failed; rolling back the uncommitted batches");
                // This batch is answered with the others: an indexing
                // thread that died writing to a full disk makes it a 507.
                let full = is_out_of_space(&e);
                self.waiting.push(Waiting {
                    ack,
                    outcome: Ack {
                        accepted: 0,
                        duplicate: false,
                    },
                });
                self.fail(format!("indexing failed: {e}"), full);
                return;
            }
        }
        if let Some(id) = id {
            self.state.sources.insert(
                id.source,
                SourceState {
                    batch: id.batch,
                    seen: now_nanos() / 1_000_000_000,
                },
            );
        }
        self.pending_docs += n;
        self.first_pending.get_or_insert_with(Instant::now);
        self.waiting.push(Waiting {
            ack,
            outcome: Ack {
                accepted: n,
                duplicate: false,
            },
        });
    }

    /// Commits what waits and acknowledges it (or fails it).
    fn commit(&mut self) {
        if self.waiting.is_empty() && self.state == self.committed {
            return;
        }
        self.forget_quiet_sources();
        let payload = match serde_json::to_string(&self.state) {
            Ok(p) => p,
            Err(e) => {
                self.fail(format!("commit payload: {e}"), false);
                return;
            }
        };
        let started = Instant::now();
        let result = self
            .writer()
            .and_then(|w| w.prepare_commit())
            .and_then(|mut p| {
                p.set_payload(&payload);
                p.commit()
            });
        match result {
            Ok(_) => {
                self.committed = self.state.clone();
                let last = self.state.next_seq.saturating_sub(1);
                if let Err(e) = self.store.publish(last) {
                    tracing::error!(%e, "reloading the index reader after a commit");
                }
                self.disk_error = None;
                // Sizes and refusal as of this commit before anyone is
                // answered: a client told its batch is stored finds it
                // counted in /healthz, not the sizes of the last tick.
                self.measure();
                let acks = std::mem::take(&mut self.waiting);
                tracing::debug!(
                    docs = self.pending_docs,
                    batches = acks.len(),
                    ms = started.elapsed().as_millis() as u64,
                    "committed"
                );
                for w in acks {
                    if let Some(a) = w.ack {
                        let _ = a.send(Ok(w.outcome));
                    }
                }
                self.pending_docs = 0;
                self.first_pending = None;
            }
            Err(e) => {
                let full = is_out_of_space(&e);
                tracing::error!(%e, out_of_space = full, "commit failed; rolling back");
                self.fail(format!("commit failed: {e}"), full);
            }
        }
    }

    /// Rolls back everything uncommitted and fails its batches. A failure
    /// with the disk (nearly) full counts as out of space even when
    /// tantivy's error does not say so (an indexing thread's error is
    /// reported as "index writer was killed"). The store refuses writes
    /// before the batches are answered, so a client told 507 finds it
    /// refusing.
    fn fail(&mut self, why: String, out_of_space: bool) {
        let (free, _) = crate::store::disk_space(&self.store.dir).unwrap_or((u64::MAX, 0));
        let out_of_space = out_of_space || free < DISK_FULL;
        let why = if out_of_space && !why.contains("space") {
            format!(
                "out of disk space ({} free): {why}",
                crate::size::show(free)
            )
        } else {
            why
        };
        if let Some(Err(e)) = self.writer.as_mut().map(IndexWriter::rollback) {
            tracing::error!(%e, "rollback failed; the index writer is reopened when next needed");
            // Dropped first: it holds the directory lock.
            self.writer = None;
        }
        // A merge of the writer rolled back or dropped is not waited for.
        self.compaction.forget();
        self.state = self.committed.clone();
        self.pending_docs = 0;
        self.first_pending = None;
        if out_of_space {
            self.disk_error = Some(why.clone());
            self.measure();
        }
        for w in std::mem::take(&mut self.waiting) {
            if let Some(a) = w.ack {
                let _ = a.send(Err(if out_of_space {
                    WriteError::Full(why.clone())
                } else {
                    WriteError::Unavailable(why.clone())
                }));
            }
        }
    }

    /// Collectors not heard of for longer than the age limit (at least a
    /// week) are forgotten, so the payload stays small.
    fn forget_quiet_sources(&mut self) {
        let keep = self
            .settings
            .policy
            .max_age
            .unwrap_or(Duration::ZERO)
            .max(Duration::from_secs(7 * 86400));
        let cutoff = now_nanos() / 1_000_000_000 - keep.as_secs() as i64;
        self.state.sources.retain(|_, s| s.seen >= cutoff);
    }

    fn tick(&mut self) {
        let mut collect = self.compaction.ended();
        let live_bytes = if collect || self.remeasure_due() {
            // Merges finished since the last commit: let readers drop the files.
            if let Err(e) = self
                .store
                .publish(self.committed.next_seq.saturating_sub(1))
            {
                tracing::warn!(%e, "reloading the index reader");
            }
            self.measure().live_bytes
        } else {
            self.store.status().live_bytes
        };
        let over = live_bytes >= self.settings.policy.max_size;
        if Instant::now() >= self.next_retention || over {
            self.retention();
            self.compact();
            // Also what merges of tantivy's policy left when dropped.
            collect = true;
            self.next_retention = Instant::now() + self.settings.retention_interval;
        }
        if collect {
            self.collect_garbage();
            self.measure();
        }
    }

    /// Rewrites segments with deleted records (one merge at a time).
    fn compact(&mut self) {
        if self.writer().is_err() {
            return;
        }
        if let Some(w) = self.writer.as_mut() {
            self.compaction.start(&self.store.index, w);
        }
    }

    fn collect_garbage(&mut self) {
        if let Ok(w) = self.writer() {
            compaction::collect_garbage(w);
        }
    }

    /// Deletes what the policy says must go, in the same commit as any
    /// waiting batches.
    fn retention(&mut self) {
        let snapshot = self.store.snapshot();
        let status = self.store.status();
        let plan = match retention::plan(
            &snapshot.searcher,
            &self.store.fields,
            &self.settings.policy,
            now_nanos(),
            status.live_bytes,
        ) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(%e, "retention: planning failed");
                return;
            }
        };
        self.cannot_make_room = plan.over_size && plan.delete_before.is_none();
        if let Some(cutoff) = plan.delete_before {
            let query = retention::older_than(&self.store.fields, cutoff);
            match self.writer().and_then(|w| w.delete_query(query)) {
                Ok(_) => {
                    tracing::info!(
                        records = plan.records,
                        before = %crate::record::format_time(cutoff),
                        reason = plan.reason,
                        "retention: deleting old records"
                    );
                    // A commit with only deletes must still be written.
                    self.first_pending.get_or_insert_with(Instant::now);
                    self.waiting.push(Waiting {
                        ack: None,
                        outcome: Ack {
                            accepted: 0,
                            duplicate: false,
                        },
                    });
                    self.commit();
                }
                Err(e) => tracing::warn!(%e, "retention: delete failed"),
            }
        }
    }

    /// Whether sizes must be measured again now: they are stale, writes
    /// are refused (so space coming back is seen at once), or the disk is
    /// near the floor (free space alone, which is cheap, is read every tick).
    fn remeasure_due(&self) -> bool {
        if self.measured.elapsed() >= REMEASURE_EVERY || self.store.status().refusing.is_some() {
            return true;
        }
        let (free, total) = crate::store::disk_space(&self.store.dir).unwrap_or((0, 0));
        free < self
            .settings
            .policy
            .min_free
            .bytes(total)
            .saturating_mul(2)
            .max(DISK_RECOVERED)
    }

    /// Measures sizes and free space and decides whether writes are accepted.
    fn measure(&mut self) -> Status {
        self.measured = Instant::now();
        let p = &self.settings.policy;
        let bytes = crate::store::dir_size(&self.store.dir).unwrap_or(0);
        let live_bytes = self
            .store
            .live_bytes(self.committed.next_seq.saturating_sub(1))
            .unwrap_or(bytes);
        let docs = self.store.snapshot().searcher.num_docs();
        let (free, total) = crate::store::disk_space(&self.store.dir).unwrap_or((u64::MAX, 0));
        let min_free = p.min_free.bytes(total);
        let refusing = if free < min_free {
            Some(format!(
                "the disk holding {} is nearly full: {} free, below --min-free-disk {}; new logs are refused until retention or an operator frees space",
                self.store.dir.display(),
                crate::size::show(free),
                crate::size::show(min_free),
            ))
        } else if let Some(e) = self.disk_error.as_ref().filter(|_| free < DISK_RECOVERED) {
            Some(e.clone())
        } else if live_bytes >= p.max_size && self.cannot_make_room {
            Some(format!(
                "the size limit is reached: {} of records, --max-size {}, and every record is younger than --protect-recent {} (nothing may be deleted yet); new logs are refused",
                crate::size::show(live_bytes),
                crate::size::show(p.max_size),
                humantime::format_duration(p.protect_recent),
            ))
        } else {
            None
        };
        let old = self.store.status().refusing;
        if refusing != old {
            match &refusing {
                Some(r) => tracing::warn!(reason = %r, "refusing new logs"),
                None => tracing::info!("accepting new logs again"),
            }
        }
        let status = Status {
            bytes,
            live_bytes,
            docs,
            free_disk_bytes: free,
            refusing,
        };
        self.store.set_status(status.clone());
        status
    }
}
