//! What the collector keeps on the node (a hostPath directory) so that a
//! restart of the collector or of the node neither loses nor repeats lines:
//! for each log file, identified by device and inode plus a fingerprint of
//! its first line (which survives the kubelet's gzip of a rotated file and
//! catches a reused inode), the offset up to which its lines are safely in
//! the disk buffer; the collector's source id and its next batch number.
//!
//! The file is replaced atomically: written to a temporary file, synced,
//! renamed over the old one, and the directory synced.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Name of the state file in the state directory.
pub const STATE_FILE: &str = "offsets.json";
/// Version of the state file's format.
pub const VERSION: u32 = 1;

/// Why the state could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a state file this collector understands: {source}")]
    Format {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{path} has format version {found}; this collector reads version {VERSION}")]
    Version { path: PathBuf, found: u32 },
}

/// One log file's progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileState {
    pub dev: u64,
    pub ino: u64,
    /// Where it was last seen.
    pub path: PathBuf,
    /// Hash of its first line (None until it has one).
    pub fingerprint: Option<u64>,
    /// Bytes (decompressed, for a gzip file) whose lines are in the buffer.
    pub offset: u64,
    /// Its size when last read (to tell a file read to its end from one that
    /// vanished with lines unread).
    #[serde(default)]
    pub size: u64,
    #[serde(default)]
    pub gzip: bool,
    /// Unix seconds since it is gone from the disk (kept a while so a
    /// compressed copy of it resumes where it stopped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gone_since: Option<u64>,
}

impl FileState {
    pub fn key(&self) -> (u64, u64) {
        (self.dev, self.ino)
    }
}

/// The whole state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub version: u32,
    /// This collector's identity towards the store (`<node>-<random>`),
    /// made when the state directory is new.
    pub source: String,
    /// The number the next batch gets.
    pub next_batch: u64,
    pub files: Vec<FileState>,
}

impl State {
    pub fn new(node: &str) -> State {
        let suffix: u32 = rand::random();
        State {
            version: VERSION,
            source: format!("{node}-{suffix:08x}"),
            next_batch: 1,
            files: Vec::new(),
        }
    }

    /// Reads the state of `dir`, or `None` when there is none yet.
    pub fn load(dir: &Path) -> Result<Option<State>, StateError> {
        let path = dir.join(STATE_FILE);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(StateError::Io { path, source }),
        };
        let state: State = serde_json::from_slice(&bytes).map_err(|source| StateError::Format {
            path: path.clone(),
            source,
        })?;
        if state.version != VERSION {
            return Err(StateError::Version {
                path,
                found: state.version,
            });
        }
        Ok(Some(state))
    }

    /// Writes the state of `dir` atomically.
    pub fn save(&self, dir: &Path) -> Result<(), StateError> {
        let bytes = serde_json::to_vec(self).map_err(|source| StateError::Format {
            path: dir.join(STATE_FILE),
            source,
        })?;
        write_atomically(&dir.join(STATE_FILE), &bytes)
    }
}

/// Writes `bytes` to `path` so that a crash leaves either the old file or
/// the new one: temporary file, fsync, rename, fsync of the directory.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), StateError> {
    let io = |p: &Path| {
        let path = p.to_path_buf();
        move |source| StateError::Io { path, source }
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
    f.write_all(bytes).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(io(path))?;
    sync_dir(dir).map_err(io(dir))
}

/// fsync of a directory (makes a rename or unlink in it durable).
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_and_replaces_atomically() {
        let d = tempfile::tempdir().unwrap();
        assert!(State::load(d.path()).unwrap().is_none());
        let mut s = State::new("node-1");
        assert!(s.source.starts_with("node-1-"));
        s.files.push(FileState {
            dev: 1,
            ino: 2,
            path: "/var/log/pods/a_b_c/d/0.log".into(),
            fingerprint: Some(7),
            offset: 100,
            size: 100,
            gzip: false,
            gone_since: None,
        });
        s.save(d.path()).unwrap();
        s.next_batch = 9;
        s.save(d.path()).unwrap();
        assert_eq!(State::load(d.path()).unwrap().unwrap(), s);
        assert!(!d.path().join("offsets.tmp").exists());
        std::fs::write(d.path().join(STATE_FILE), "{").unwrap();
        let e = State::load(d.path()).unwrap_err().to_string();
        assert!(e.contains("offsets.json is not a state file"), "{e}");
    }
}
