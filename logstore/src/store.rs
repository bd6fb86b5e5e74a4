//! The opened index and what readers share with the writer thread: the
//! current snapshot (a searcher and the last sequence number it holds), the
//! write status (accepting, or refusing and why) and the sizes.
//!
//! Only the writer thread changes the index; HTTP handlers read the
//! snapshot it publishes after each commit, so a query never sees a
//! half-committed batch and a live tail knows exactly which records are new.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};
use tantivy::directory::MmapDirectory;
use tantivy::query::QueryParser;
use tantivy::store::Compressor;
use tantivy::{Index, IndexReader, IndexSettings, ReloadPolicy, Searcher};
use tokio::sync::watch;

use crate::schema::{schema, Fields};

/// Why the store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot create the data directory {path}: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open the index in {path}: {source}")]
    Index {
        path: PathBuf,
        source: tantivy::TantivyError,
    },
    #[error("the index in {path} has another schema (not a cairn-logstore index?): {source}")]
    Schema {
        path: PathBuf,
        source: tantivy::TantivyError,
    },
    #[error("the commit payload of {path} is not readable: {source}")]
    Payload {
        path: PathBuf,
        source: serde_json::Error,
    },
}

/// Why the size of the records could not be measured.
#[derive(Debug, thiserror::Error)]
pub enum MeasureError {
    #[error("listing the index: {0}")]
    Io(#[from] std::io::Error),
    #[error("reading the index: {0}")]
    Index(#[from] tantivy::TantivyError),
}

/// What each commit records besides the documents (tantivy's commit
/// payload, written atomically with them): the next sequence number, and
/// for each collector the last batch it committed, so a batch sent again
/// after a lost acknowledgement is recognised and not stored twice.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CommitState {
    pub version: u32,
    pub next_seq: u64,
    #[serde(default)]
    pub sources: std::collections::BTreeMap<String, SourceState>,
}

/// A collector's last committed batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceState {
    pub batch: u64,
    /// Unix seconds of its last batch (sources quiet for long are forgotten).
    pub seen: i64,
}

/// A consistent view for queries.
#[derive(Clone)]
pub struct Snapshot {
    pub searcher: Searcher,
    /// The highest sequence number committed when the snapshot was taken
    /// (0 before the first record).
    pub last_seq: u64,
}

/// Whether new data is accepted.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Status {
    /// Bytes of the index directory.
    pub bytes: u64,
    /// Bytes the live records take (deleted ones not yet merged away excluded).
    pub live_bytes: u64,
    pub docs: u64,
    pub free_disk_bytes: u64,
    /// Why writes are refused; `None` while they are accepted.
    pub refusing: Option<String>,
}

/// The index and the state shared between the writer thread and readers.
pub struct Store {
    pub dir: PathBuf,
    pub index: Index,
    pub fields: Fields,
    pub reader: IndexReader,
    snapshot: RwLock<Arc<Snapshot>>,
    status: RwLock<Status>,
    last_seq: watch::Sender<u64>,
}

/// The directory of the tantivy index inside the data directory.
pub fn index_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("index")
}

impl Store {
    /// Opens the index under `data_dir`, creating it when absent. Returns
    /// the store and the state of its last commit.
    pub fn open(data_dir: &Path) -> Result<(Arc<Store>, CommitState), OpenError> {
        let dir = index_dir(data_dir);
        std::fs::create_dir_all(&dir).map_err(|source| OpenError::CreateDir {
            path: dir.clone(),
            source,
        })?;
        let index_err = |source| OpenError::Index {
            path: dir.clone(),
            source,
        };
        let mmap = MmapDirectory::open(&dir).map_err(|e| index_err(e.into()))?;
        let (schema, _) = schema();
        let settings = IndexSettings {
            docstore_compression: Compressor::Lz4,
            ..IndexSettings::default()
        };
        let index = Index::builder()
            .schema(schema)
            .settings(settings)
            .open_or_create(mmap)
            .map_err(|source| OpenError::Schema {
                path: dir.clone(),
                source,
            })?;
        let fields = Fields::of(&index.schema()).map_err(|source| OpenError::Schema {
            path: dir.clone(),
            source,
        })?;
        let metas = index.load_metas().map_err(index_err)?;
        let state = match metas.payload.as_deref() {
            Some(p) => serde_json::from_str(p).map_err(|source| OpenError::Payload {
                path: dir.clone(),
                source,
            })?,
            None => CommitState {
                version: 1,
                next_seq: 1,
                sources: Default::default(),
            },
        };
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()
            .map_err(index_err)?;
        let last_seq = state.next_seq.saturating_sub(1);
        let snapshot = Snapshot {
            searcher: reader.searcher(),
            last_seq,
        };
        let (tx, _) = watch::channel(last_seq);
        let store = Store {
            dir,
            index,
            fields,
            reader,
            snapshot: RwLock::new(Arc::new(snapshot)),
            status: RwLock::new(Status::default()),
            last_seq: tx,
        };
        Ok((Arc::new(store), state))
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Reloads the reader and publishes a snapshot holding `last_seq`.
    pub fn publish(&self, last_seq: u64) -> tantivy::Result<()> {
        self.reader.reload()?;
        let snapshot = Arc::new(Snapshot {
            searcher: self.reader.searcher(),
            last_seq,
        });
        *self.snapshot.write().unwrap_or_else(|e| e.into_inner()) = snapshot;
        self.last_seq.send_replace(last_seq);
        Ok(())
    }

    /// Bytes the live records take (see `live_bytes`), on a snapshot as
    /// new as the index: one older than a merge would count the merged
    /// segments as empty once tantivy removed their files. `last_seq` is
    /// the last committed sequence number, for a snapshot published anew.
    pub fn live_bytes(&self, last_seq: u64) -> Result<u64, MeasureError> {
        let mut tries = 0;
        loop {
            let snapshot = self.snapshot();
            let bytes = live_bytes(&self.dir, &snapshot.searcher)?;
            // Read after the listing: if the index still has the
            // snapshot's segments, none of their files was removed before.
            let mut now = self.index.searchable_segment_ids()?;
            let mut seen: Vec<_> = snapshot
                .searcher
                .segment_readers()
                .iter()
                .map(|s| s.segment_id())
                .collect();
            now.sort();
            seen.sort();
            tries += 1;
            if now == seen || tries == 3 {
                return Ok(bytes);
            }
            self.publish(last_seq)?;
        }
    }

    /// Wakes whenever a commit published new records.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.last_seq.subscribe()
    }

    pub fn status(&self) -> Status {
        self.status
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn set_status(&self, status: Status) {
        *self.status.write().unwrap_or_else(|e| e.into_inner()) = status;
    }

    /// A query parser over the message field, terms joined by AND (what
    /// people mean when they type several words into a log search).
    pub fn query_parser(&self) -> QueryParser {
        let mut p = QueryParser::for_index(&self.index, vec![self.fields.message]);
        p.set_conjunction_by_default();
        p
    }
}

/// Bytes of the files in the index directory (lock files excluded).
pub fn dir_size(dir: &Path) -> std::io::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        if name.to_string_lossy().ends_with(".lock") {
            continue;
        }
        // A file merged away between the listing and the stat is not counted.
        if let Ok(m) = entry.metadata() {
            if m.is_file() {
                total += m.len();
            }
        }
    }
    Ok(total)
}

/// Bytes the live records of `searcher`'s segments take: each segment's
/// files, times the share of its documents not deleted. Files of merges in
/// progress and of segments no commit uses are not counted, so retention
/// does not delete more than it must while tantivy rewrites segments.
pub fn live_bytes(dir: &Path, searcher: &Searcher) -> std::io::Result<u64> {
    let mut sizes: std::collections::HashMap<String, u64> = std::collections::HashMap::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let (Some((uuid, _)), Ok(m)) = (name.split_once('.'), entry.metadata()) {
            *sizes.entry(uuid.to_string()).or_default() += m.len();
        }
    }
    let mut total = 0u64;
    for s in searcher.segment_readers() {
        let size = sizes
            .get(&s.segment_id().uuid_string())
            .copied()
            .unwrap_or(0);
        let max = u64::from(s.max_doc());
        if max > 0 {
            total += (u128::from(size) * u128::from(s.num_docs()) / u128::from(max)) as u64;
        }
    }
    Ok(total)
}

/// Free bytes for unprivileged users and total bytes of the filesystem
/// holding `dir`.
pub fn disk_space(dir: &Path) -> std::io::Result<(u64, u64)> {
    let s = rustix::fs::statvfs(dir).map_err(std::io::Error::from)?;
    Ok((
        s.f_bavail.saturating_mul(s.f_frsize),
        s.f_blocks.saturating_mul(s.f_frsize),
    ))
}
