//! The disk buffer: every batch is written here (and synced) before the
//! offsets of its files advance, and leaves only once the store
//! acknowledged it. So the same code path serves a store that answers and
//! one that is down: batches pile up (bounded by `--buffer-size`, then the
//! reader stops and the kubelet's files hold the lines) and are sent, oldest
//! first, when it is back.
//!
//! A batch file is `<batch number, 20 digits>.batch`: one JSON header line
//! (its number and the state of each file it advanced) and then the body
//! exactly as it is posted (JSON lines). The headers let a restart
//! recover offsets written to the buffer but not yet to the state file.
//! A batch the store refuses as malformed (HTTP 400, a bug) is moved to
//! `rejected/` (the 20 newest are kept) and reported, not retried forever.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::state::{sync_dir, FileState};

/// Rejected batches kept for inspection.
const KEEP_REJECTED: usize = 20;

#[derive(Debug, thiserror::Error)]
pub enum BufferError {
    #[error("disk buffer {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("disk buffer file {path} has no valid header: {problem}")]
    Header { path: PathBuf, problem: String },
}

fn io(p: &Path) -> impl FnOnce(std::io::Error) -> BufferError {
    let path = p.to_path_buf();
    move |source| BufferError::Io { path, source }
}

/// The first line of a batch file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    pub batch: u64,
    pub lines: usize,
    /// The files this batch advanced, at their offsets after it.
    pub files: Vec<FileState>,
}

/// A batch waiting in the buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub batch: u64,
    pub path: PathBuf,
    pub bytes: u64,
}

/// The buffer directory.
#[derive(Debug, Clone)]
pub struct Buffer {
    dir: PathBuf,
    rejected: PathBuf,
}

impl Buffer {
    /// Opens `<state_dir>/buffer`, removing half-written files.
    pub fn open(state_dir: &Path) -> Result<Buffer, BufferError> {
        let dir = state_dir.join("buffer");
        let rejected = state_dir.join("rejected");
        for d in [&dir, &rejected] {
            std::fs::create_dir_all(d).map_err(io(d))?;
        }
        for e in std::fs::read_dir(&dir).map_err(io(&dir))?.flatten() {
            if e.path().extension().is_some_and(|x| x == "tmp") {
                std::fs::remove_file(e.path()).map_err(io(&e.path()))?;
            }
        }
        Ok(Buffer { dir, rejected })
    }

    fn path_of(&self, batch: u64) -> PathBuf {
        self.dir.join(format!("{batch:020}.batch"))
    }

    /// Writes a batch durably.
    pub fn write(&self, header: &Header, body: &[u8]) -> Result<(), BufferError> {
        let path = self.path_of(header.batch);
        let tmp = path.with_extension("tmp");
        let mut f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
        let mut head = serde_json::to_vec(header).map_err(|e| BufferError::Header {
            path: tmp.clone(),
            problem: e.to_string(),
        })?;
        head.push(b'\n');
        f.write_all(&head).map_err(io(&tmp))?;
        f.write_all(body).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
        drop(f);
        std::fs::rename(&tmp, &path).map_err(io(&path))?;
        sync_dir(&self.dir).map_err(io(&self.dir))
    }

    /// The waiting batches, oldest first.
    pub fn list(&self) -> Result<Vec<Entry>, BufferError> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(&self.dir)
            .map_err(io(&self.dir))?
            .flatten()
        {
            let path = e.path();
            if path.extension().is_none_or(|x| x != "batch") {
                continue;
            }
            let Some(batch) = path
                .file_stem()
                .and_then(|s| s.to_str())
                .and_then(|s| s.parse().ok())
            else {
                continue;
            };
            // Sent and removed by the other side since the listing.
            let Ok(m) = e.metadata() else { continue };
            out.push(Entry {
                batch,
                path,
                bytes: m.len(),
            });
        }
        out.sort_by_key(|e| e.batch);
        Ok(out)
    }

    /// Bytes waiting.
    pub fn bytes(&self) -> Result<u64, BufferError> {
        Ok(self.list()?.iter().map(|e| e.bytes).sum())
    }

    /// A batch's header and body.
    pub fn read(&self, entry: &Entry) -> Result<(Header, Vec<u8>), BufferError> {
        let mut bytes = std::fs::read(&entry.path).map_err(io(&entry.path))?;
        let bad = |problem: String| BufferError::Header {
            path: entry.path.clone(),
            problem,
        };
        let end = bytes
            .iter()
            .position(|b| *b == b'\n')
            .ok_or_else(|| bad("no header line".into()))?;
        let header: Header =
            serde_json::from_slice(&bytes[..end]).map_err(|e| bad(e.to_string()))?;
        let body = bytes.split_off(end + 1);
        Ok((header, body))
    }

    /// Removes a batch the store acknowledged.
    pub fn remove(&self, entry: &Entry) -> Result<(), BufferError> {
        match std::fs::remove_file(&entry.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(&entry.path)(e)),
        }?;
        sync_dir(&self.dir).map_err(io(&self.dir))
    }

    /// Moves a batch the store refused as malformed to `rejected/`.
    pub fn reject(&self, entry: &Entry) -> Result<PathBuf, BufferError> {
        let to = self
            .rejected
            .join(entry.path.file_name().unwrap_or_default());
        std::fs::rename(&entry.path, &to).map_err(io(&to))?;
        let mut old: Vec<PathBuf> = std::fs::read_dir(&self.rejected)
            .map_err(io(&self.rejected))?
            .flatten()
            .map(|e| e.path())
            .collect();
        old.sort();
        let excess = old.len().saturating_sub(KEEP_REJECTED);
        for p in old.into_iter().take(excess) {
            let _ = std::fs::remove_file(p);
        }
        Ok(to)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_are_listed_oldest_first_read_back_and_removed() {
        let d = tempfile::tempdir().unwrap();
        let b = Buffer::open(d.path()).unwrap();
        std::fs::write(d.path().join("buffer/00000000000000000009.tmp"), "half").unwrap();
        let b = Buffer::open(d.path()).map(|_| b).unwrap();
        assert!(b.list().unwrap().is_empty(), "half-written files are gone");
        for n in [10, 2, 33] {
            let h = Header {
                batch: n,
                lines: 1,
                files: Vec::new(),
            };
            b.write(&h, format!("{{\"message\":\"{n}\"}}\n").as_bytes())
                .unwrap();
        }
        let list = b.list().unwrap();
        assert_eq!(
            list.iter().map(|e| e.batch).collect::<Vec<_>>(),
            [2, 10, 33]
        );
        let (h, body) = b.read(&list[1]).unwrap();
        assert_eq!(
            (h.batch, body.as_slice()),
            (10, &b"{\"message\":\"10\"}\n"[..])
        );
        assert_eq!(
            b.bytes().unwrap(),
            list.iter().map(|e| e.bytes).sum::<u64>()
        );
        b.remove(&list[0]).unwrap();
        b.remove(&list[0]).unwrap();
        let to = b.reject(&list[1]).unwrap();
        assert!(to.exists());
        assert_eq!(b.list().unwrap().len(), 1);
    }
}
