//! META: a small key-value store on the raw META partition (1 MiB, no
//! filesystem) for what must survive a reboot into another slot and a
//! reset of STATE: upgrade state, boot counts, and the last failed boot.
//!
//! Format: two copies, one in each half of the partition. Each copy is
//! `MAGIC | generation u64 LE | length u32 LE | sha256(generation, length,
//! payload) | payload`, the payload a JSON object of strings. A write goes
//! to the copy that does not hold the newest valid generation, with the
//! next generation number, then fsync. Reading takes the valid copy with
//! the highest generation. A torn write (power cut) leaves a copy whose
//! checksum fails, and the other copy still holds the state before it.
//!
//! Hand-written: the format is a few dozen lines, and no crate offers a
//! torn-write-safe store on a raw block device.

pub mod keys;
mod resource;

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

pub use resource::MetaSpec;

pub const MAGIC: &[u8; 8] = b"CAIRNMT1";
const HEADER_LEN: usize = 8 + 8 + 4 + 32;

pub type Values = BTreeMap<String, String>;

#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    #[error("cannot open META ({path}): {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read META ({path}): {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write META ({path}): {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("META ({path}) is {size} bytes, too small for two copies of {needed} bytes")]
    TooSmall {
        path: PathBuf,
        size: u64,
        needed: usize,
    },
    #[error("the META values need {needed} bytes; a copy holds {capacity}")]
    TooLarge { needed: usize, capacity: usize },
}

/// One decoded copy.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Copy {
    generation: u64,
    values: Values,
}

fn checksum(generation: u64, payload: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(generation.to_le_bytes());
    h.update((payload.len() as u32).to_le_bytes());
    h.update(payload);
    h.finalize().into()
}

fn encode(generation: u64, values: &Values, capacity: usize) -> Result<Vec<u8>, MetaError> {
    let payload = serde_json::to_vec(values).expect("a map of strings always serializes");
    let needed = HEADER_LEN + payload.len();
    if needed > capacity {
        return Err(MetaError::TooLarge { needed, capacity });
    }
    let mut out = Vec::with_capacity(needed);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&generation.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&checksum(generation, &payload));
    out.extend_from_slice(&payload);
    Ok(out)
}

/// A copy if its bytes are whole and its checksum holds.
fn decode(bytes: &[u8]) -> Option<Copy> {
    if bytes.len() < HEADER_LEN || &bytes[..8] != MAGIC {
        return None;
    }
    let generation = u64::from_le_bytes(bytes[8..16].try_into().ok()?);
    let len = u32::from_le_bytes(bytes[16..20].try_into().ok()?) as usize;
    let payload = bytes.get(HEADER_LEN..HEADER_LEN + len)?;
    if checksum(generation, payload) != bytes[20..52] {
        return None;
    }
    let values = serde_json::from_slice(payload).ok()?;
    Some(Copy { generation, values })
}

/// The META partition (or, in tests, a file of the same size).
pub struct MetaStore {
    path: PathBuf,
    file: File,
    copy_len: usize,
    /// The newest valid copy: its index and contents.
    current: Option<(usize, Copy)>,
}

impl MetaStore {
    /// Opens META and reads the newest valid copy.
    pub fn open(path: &Path) -> Result<MetaStore, MetaError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|source| MetaError::Open {
                path: path.to_path_buf(),
                source,
            })?;
        let size = device_size(&file).map_err(|source| MetaError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let copy_len = (size / 2).min(512 * 1024) as usize;
        if copy_len < 4096 {
            return Err(MetaError::TooSmall {
                path: path.to_path_buf(),
                size,
                needed: 4096,
            });
        }
        let mut store = MetaStore {
            path: path.to_path_buf(),
            file,
            copy_len,
            current: None,
        };
        store.reload()?;
        Ok(store)
    }

    fn reload(&mut self) -> Result<(), MetaError> {
        let mut best: Option<(usize, Copy)> = None;
        for i in 0..2 {
            let mut buf = vec![0u8; self.copy_len];
            self.file
                .read_exact_at(&mut buf, (i * self.copy_len) as u64)
                .map_err(|source| MetaError::Read {
                    path: self.path.clone(),
                    source,
                })?;
            if let Some(c) = decode(&buf) {
                if best
                    .as_ref()
                    .is_none_or(|(_, b)| c.generation > b.generation)
                {
                    best = Some((i, c));
                }
            }
        }
        self.current = best;
        Ok(())
    }

    pub fn values(&self) -> Values {
        self.current
            .as_ref()
            .map(|(_, c)| c.values.clone())
            .unwrap_or_default()
    }

    pub fn generation(&self) -> u64 {
        self.current.as_ref().map_or(0, |(_, c)| c.generation)
    }

    /// Writes `values` as the next generation into the other copy.
    pub fn write(&mut self, values: &Values) -> Result<(), MetaError> {
        let generation = self.generation() + 1;
        let target = match &self.current {
            Some((i, _)) => 1 - i,
            None => 0,
        };
        let bytes = encode(generation, values, self.copy_len)?;
        let err = |source| MetaError::Write {
            path: self.path.clone(),
            source,
        };
        self.file
            .write_all_at(&bytes, (target * self.copy_len) as u64)
            .map_err(err)?;
        self.file.sync_all().map_err(err)?;
        self.current = Some((
            target,
            Copy {
                generation,
                values: values.clone(),
            },
        ));
        Ok(())
    }

    /// Zeroes both copies (reset).
    pub fn erase(&mut self) -> Result<(), MetaError> {
        let zeros = vec![0u8; self.copy_len * 2];
        let err = |source| MetaError::Write {
            path: self.path.clone(),
            source,
        };
        self.file.write_all_at(&zeros, 0).map_err(err)?;
        self.file.sync_all().map_err(err)?;
        self.current = None;
        Ok(())
    }
}

fn device_size(file: &File) -> std::io::Result<u64> {
    use std::io::{Seek, SeekFrom};
    let mut f = file;
    let end = f.seek(SeekFrom::End(0))?;
    f.seek(SeekFrom::Start(0))?;
    Ok(end)
}

/// The node's META, shared by the boot sequence, upgrades, rollback and
/// reset; mirrored into the `meta` resources (`cairnctl get meta`).
pub struct Meta {
    store: Mutex<MetaStore>,
    writer: Option<runtime::resources::Writer>,
}

impl Meta {
    /// Opens META at `path` and publishes it in `store` (when given).
    pub fn open(
        path: &Path,
        store: Option<&Arc<runtime::resources::Store>>,
    ) -> Result<Arc<Meta>, MetaError> {
        let s = MetaStore::open(path)?;
        let writer =
            store.and_then(
                |st| match st.writer("meta", &[runtime::resources::kind::META]) {
                    Ok(w) => Some(w),
                    Err(e) => {
                        tracing::error!(error = %e, "cannot publish META as resources");
                        None
                    }
                },
            );
        let meta = Arc::new(Meta {
            store: Mutex::new(s),
            writer,
        });
        meta.publish();
        Ok(meta)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MetaStore> {
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn values(&self) -> Values {
        self.lock().values()
    }

    pub fn get(&self, key: &str) -> Option<String> {
        self.lock().values().get(key).cloned()
    }

    /// Changes the values with `edit` and writes them (one new generation).
    pub fn update(&self, edit: impl FnOnce(&mut Values)) -> Result<(), MetaError> {
        let result = {
            let mut s = self.lock();
            let mut v = s.values();
            edit(&mut v);
            s.write(&v)
        };
        self.publish();
        result
    }

    pub fn erase(&self) -> Result<(), MetaError> {
        let r = self.lock().erase();
        self.publish();
        r
    }

    fn publish(&self) {
        if let Some(w) = &self.writer {
            let specs = self
                .values()
                .into_iter()
                .map(|(k, v)| (k, MetaSpec { value: v }));
            if let Err(e) = w.reconcile(specs) {
                tracing::warn!(error = %e, "cannot publish META");
            }
        }
    }
}

/// Now, as RFC 3339 (what META's times are written as).
pub fn now() -> String {
    let t = prost_types::Timestamp::from(std::time::SystemTime::now());
    prost_types::Timestamp {
        seconds: t.seconds,
        nanos: 0,
    }
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta_file(dir: &Path) -> PathBuf {
        let p = dir.join("meta");
        File::create(&p).unwrap().set_len(1 << 20).unwrap();
        p
    }

    #[test]
    fn blank_meta_is_empty_and_writes_alternate_copies() {
        let dir = tempfile::tempdir().unwrap();
        let p = meta_file(dir.path());
        let mut s = MetaStore::open(&p).unwrap();
        assert!(s.values().is_empty());
        let mut v = Values::new();
        v.insert("upgrade.state".into(), "writing".into());
        s.write(&v).unwrap();
        v.insert("upgrade.state".into(), "trying".into());
        s.write(&v).unwrap();
        assert_eq!(s.generation(), 2);
        let s = MetaStore::open(&p).unwrap();
        assert_eq!(s.values()["upgrade.state"], "trying");
        assert_eq!(s.generation(), 2);
        // Generation 1 is in copy 0, generation 2 in copy 1.
        let bytes = std::fs::read(&p).unwrap();
        assert_eq!(decode(&bytes[..512 * 1024]).unwrap().generation, 1);
        assert_eq!(decode(&bytes[512 * 1024..]).unwrap().generation, 2);
    }

    #[test]
    fn a_torn_write_keeps_the_previous_state() {
        let dir = tempfile::tempdir().unwrap();
        let p = meta_file(dir.path());
        let mut s = MetaStore::open(&p).unwrap();
        let mut v = Values::new();
        v.insert("k".into(), "old".into());
        s.write(&v).unwrap(); // gen 1, copy 0
        v.insert("k".into(), "new".into());
        s.write(&v).unwrap(); // gen 2, copy 1
                              // Generation 3 goes to copy 0: cut it off half-way.
        v.insert("k".into(), "newest".into());
        let full = encode(3, &v, 512 * 1024).unwrap();
        let f = OpenOptions::new().write(true).open(&p).unwrap();
        f.write_all_at(&full[..full.len() / 2], 0).unwrap();
        let s = MetaStore::open(&p).unwrap();
        assert_eq!(s.values()["k"], "new");
        assert_eq!(s.generation(), 2);
        // A flipped bit makes a copy invalid too (here both are now).
        let mut bytes = std::fs::read(&p).unwrap();
        bytes[512 * 1024 + HEADER_LEN + 2] ^= 1;
        std::fs::write(&p, &bytes).unwrap();
        let mut s = MetaStore::open(&p).unwrap();
        assert!(s.values().is_empty());
        s.erase().unwrap();
        assert!(MetaStore::open(&p).unwrap().values().is_empty());
    }

    #[test]
    fn too_much_is_refused_and_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("small");
        File::create(&p).unwrap().set_len(16 * 1024).unwrap();
        let mut s = MetaStore::open(&p).unwrap();
        let mut v = Values::new();
        v.insert("log".into(), "x".repeat(20_000));
        assert!(matches!(s.write(&v), Err(MetaError::TooLarge { .. })));
        assert_eq!(s.generation(), 0);
    }

    #[test]
    fn meta_is_published_as_resources() {
        let dir = tempfile::tempdir().unwrap();
        let p = meta_file(dir.path());
        let store = runtime::resources::Store::new();
        let m = Meta::open(&p, Some(&store)).unwrap();
        m.update(|v| {
            v.insert("boot.count.A".into(), "1".into());
        })
        .unwrap();
        let specs = store.specs::<MetaSpec>();
        assert_eq!(
            specs,
            vec![("boot.count.A".to_string(), MetaSpec { value: "1".into() })]
        );
        assert_eq!(m.get("boot.count.A").as_deref(), Some("1"));
    }
}
