//! The log files the collector follows, and reading them into a batch.
//!
//! Files are known by device and inode while they exist: a rename by the
//! kubelet's rotation keeps both, so the collector simply goes on reading
//! the renamed file through the descriptor it holds (even after the file
//! is deleted) until its end, while the new `0.log` is a new file. A file
//! that is gone leaves a tombstone with its offset and the fingerprint of
//! its first line; a `.gz` whose first line has that fingerprint (in the
//! same container directory) is its compressed copy and resumes at that
//! offset, counted in decompressed bytes. That also covers the collector
//! being down while the kubelet compressed and deleted a file.
//!
//! An offset only ever advances past whole records: while a `P` (partial)
//! line of a stream waits for its `F`, the file's offset stays at the
//! start of that partial line and the lines completed meanwhile on the
//! other stream are held back, so a restart re-reads the partial line and
//! nothing else twice.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::Read as _;
use std::os::unix::fs::{FileExt as _, MetadataExt as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use flate2::read::MultiGzDecoder;

use crate::cri::{self, Stream};
use crate::layout::{self, Kind, Labels};
use crate::record::{self, Line};
use crate::state::FileState;

type Key = (u64, u64);

/// Bytes of a first line hashed for a fingerprint.
const FINGERPRINT_BYTES: usize = 4096;
/// Bytes read from one file per call.
const CHUNK: usize = 16 * 1024;
/// Tombstones kept per container directory, and for how long.
const TOMBSTONES_PER_DIR: usize = 16;
const TOMBSTONE_TTL: Duration = Duration::from_secs(24 * 3600);
/// Records held back behind a partial line, at most (then the partial line
/// is sent as it is, marked truncated).
const MAX_HELD: usize = 4 << 20;
const WARN_EVERY: Duration = Duration::from_secs(10);

/// FNV-1a, 64 bits: a stable hash for fingerprints kept across versions.
fn fnv(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The fingerprint of a file that starts with `head`: its first line (at
/// most 4 KiB of it), or `None` while it has no complete first line.
fn fingerprint_of(head: &[u8]) -> Option<u64> {
    match head.iter().position(|b| *b == b'\n') {
        Some(end) => Some(fnv(&head[..end.min(FINGERPRINT_BYTES)])),
        None if head.len() >= FINGERPRINT_BYTES => Some(fnv(&head[..FINGERPRINT_BYTES])),
        None => None,
    }
}

fn read_head(r: &mut dyn std::io::Read) -> std::io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(FINGERPRINT_BYTES);
    r.take(FINGERPRINT_BYTES as u64).read_to_end(&mut head)?;
    Ok(head)
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Where a followed file's bytes come from.
enum Source {
    Plain(File),
    Gzip(Box<MultiGzDecoder<std::io::BufReader<File>>>),
    /// Read to its end and closed (a finished gzip file).
    Closed,
}

/// A partial line being joined.
/// (The file's offset stays at the end of the last record emitted, which
/// is where its first part starts: a restart reads it again.)
struct Partial {
    time: String,
    message: Vec<u8>,
    truncated: bool,
}

/// A file being followed.
struct Followed {
    st: FileState,
    labels: Arc<Labels>,
    source: Source,
    /// End of the last complete line processed.
    consumed: u64,
    /// Bytes read past `consumed` without a newline yet.
    carry: Vec<u8>,
    /// Skipping the rest of an overlong line.
    discarding: bool,
    partials: BTreeMap<Stream, Partial>,
    held: Vec<u8>,
    held_lines: usize,
    /// Scans in a row that did not see it (a rotation between a listing
    /// and a stat can hide a file from one scan; two make it gone).
    absent: u32,
    /// Gone from the disk and read to its end: becomes a tombstone.
    finished: bool,
}

/// Counters for the health endpoint and the log.
#[derive(Debug, Default, Clone, Copy)]
pub struct Counters {
    pub lines: u64,
    pub unparsed: u64,
    pub truncated: u64,
}

/// A batch being filled.
#[derive(Debug, Default)]
pub struct Batch {
    pub body: Vec<u8>,
    pub lines: usize,
    /// Offsets of the files after this batch.
    pub offsets: HashMap<Key, u64>,
    pub started: Option<Instant>,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.lines == 0
    }
}

/// All followed files and tombstones.
pub struct Tracker {
    root: PathBuf,
    node: String,
    max_line: usize,
    live: HashMap<Key, Followed>,
    tombstones: Vec<FileState>,
    /// State records of the last run not matched by a scan yet.
    unconfirmed: bool,
    pub counters: Counters,
    last_warn: Option<Instant>,
    warned_lines: u64,
}

impl Tracker {
    /// Starts from the files of a saved state (all unconfirmed until the
    /// first scan finds them).
    pub fn new(root: &Path, node: &str, max_line: usize, saved: Vec<FileState>) -> Tracker {
        Tracker {
            root: root.to_path_buf(),
            node: node.to_string(),
            max_line,
            live: HashMap::new(),
            tombstones: saved,
            unconfirmed: true,
            counters: Counters::default(),
            last_warn: None,
            warned_lines: 0,
        }
    }

    /// Files followed now.
    pub fn followed(&self) -> usize {
        self.live.len()
    }

    /// The state to save: followed files at their buffered offsets, and
    /// tombstones.
    pub fn files(&self) -> Vec<FileState> {
        let mut v: Vec<FileState> = self.live.values().map(|f| f.st.clone()).collect();
        v.extend(self.tombstones.iter().cloned());
        v.sort_by(|a, b| a.path.cmp(&b.path).then(a.key().cmp(&b.key())));
        v
    }

    /// The state of one file by key (followed or tombstone).
    pub fn file(&self, key: Key) -> Option<FileState> {
        self.live
            .get(&key)
            .map(|f| f.st.clone())
            .or_else(|| self.tombstones.iter().find(|t| t.key() == key).cloned())
    }

    /// Records that a batch holding these offsets is in the buffer.
    pub fn buffered(&mut self, offsets: &HashMap<Key, u64>) {
        for (key, off) in offsets {
            if let Some(f) = self.live.get_mut(key) {
                f.st.offset = f.st.offset.max(*off);
            } else if let Some(t) = self.tombstones.iter_mut().find(|t| t.key() == *key) {
                t.offset = t.offset.max(*off);
            }
        }
    }

    /// Raises offsets from a buffered batch's header (recovery at start).
    ///
    /// A key is an inode, which the filesystem gives to a new file once the
    /// old one is deleted: a header written before a rotation can name the
    /// inode of a file gone since, now the new `0.log`'s. Only a record with
    /// the same first line (or one that has none yet) is the same file;
    /// merging another's offset would skip that many bytes of the new file.
    pub fn recover(&mut self, files: &[FileState]) {
        let same_file = |t: &FileState, f: &FileState| {
            t.key() == f.key()
                && (t.fingerprint == f.fingerprint
                    || t.fingerprint.is_none()
                    || f.fingerprint.is_none())
        };
        for f in files {
            match self.tombstones.iter_mut().find(|t| same_file(t, f)) {
                Some(t) => {
                    t.offset = t.offset.max(f.offset);
                    t.size = t.size.max(f.size);
                    if t.fingerprint.is_none() {
                        t.fingerprint = f.fingerprint;
                    }
                }
                None => self.tombstones.push(f.clone()),
            }
        }
    }

    /// Looks at the disk: new files, renamed files, vanished files. Call
    /// with no unbuffered batch (offsets must be the buffered ones).
    pub fn scan(&mut self) -> std::io::Result<()> {
        let found = match layout::scan(&self.root) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        for f in self.live.values_mut() {
            f.absent += 1;
        }
        let mut new = Vec::new();
        for f in found {
            let Ok(meta) = std::fs::metadata(&f.path) else {
                continue;
            };
            let key = (meta.dev(), meta.ino());
            match self.live.get_mut(&key) {
                Some(t) => {
                    t.absent = 0;
                    if t.st.path != f.path {
                        tracing::debug!(from = %t.st.path.display(), to = %f.path.display(), "rotated");
                        t.st.path = f.path.clone();
                    }
                    if let Source::Plain(_) = t.source {
                        t.st.size = meta.len();
                        if meta.len() < t.consumed {
                            tracing::warn!(file = %f.path.display(), offset = t.consumed, size = meta.len(),
                                "file shrank (truncated in place?): reading it again from the start");
                            t.consumed = 0;
                            t.st.offset = 0;
                            t.carry.clear();
                            t.partials.clear();
                            t.held.clear();
                            t.held_lines = 0;
                        }
                    }
                }
                None => new.push(f),
            }
        }
        for f in new {
            // The file is opened first and known by the inode it opened:
            // the name may point elsewhere by now (a rotation between the
            // listing and here), and the inode is what the offset belongs to.
            let opened = File::open(&f.path).and_then(|file| {
                let m = file.metadata()?;
                Ok((file, (m.dev(), m.ino()), m.len()))
            });
            let (file, key, size) = match opened {
                Ok(x) => x,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => {
                    tracing::warn!(file = %f.path.display(), %e, "cannot open log file");
                    continue;
                }
            };
            if let Some(t) = self.live.get_mut(&key) {
                // Renamed to this name since the listing: already followed.
                t.absent = 0;
                t.st.path = f.path.clone();
                continue;
            }
            if let Err(e) = self.adopt(key, file, &f, size) {
                tracing::warn!(file = %f.path.display(), %e, "cannot read log file");
            }
        }
        // Gone and read to the end: tombstones.
        let done: Vec<Key> = self
            .live
            .iter()
            .filter(|(_, f)| f.absent >= 2 && (f.finished || matches!(f.source, Source::Closed)))
            .map(|(k, _)| *k)
            .collect();
        let now = now_secs();
        for k in done {
            if let Some(f) = self.live.remove(&k) {
                let mut st = f.st;
                st.gone_since = Some(now);
                self.tombstones.push(st);
            }
        }
        if self.unconfirmed {
            self.unconfirmed = false;
            for t in self
                .tombstones
                .iter_mut()
                .filter(|t| t.gone_since.is_none())
            {
                t.gone_since = Some(now);
                if t.offset < t.size {
                    tracing::warn!(file = %t.path.display(), offset = t.offset, size = t.size,
                        "file vanished while the collector was not running; unless a compressed copy turns up, its lines past the offset are lost");
                }
            }
        }
        self.prune(now);
        Ok(())
    }

    /// Follows a file not followed yet: resumes a tombstone it is (same
    /// inode and first line, or a compressed copy), or starts at 0.
    fn adopt(&mut self, key: Key, file: File, f: &layout::Found, size: u64) -> std::io::Result<()> {
        let gzip = f.kind == Kind::Gzip;
        let head = if gzip {
            read_head(&mut MultiGzDecoder::new(std::io::BufReader::new(
                file.try_clone()?,
            )))?
        } else {
            let mut buf = vec![0; FINGERPRINT_BYTES];
            let n = file.read_at(&mut buf, 0)?;
            buf.truncate(n);
            buf
        };
        let fingerprint = fingerprint_of(&head);
        let same_dir = |p: &Path| p.parent() == Some(f.dir.as_path());
        if let Some(fp) = fingerprint {
            let copy_of_live = self
                .live
                .iter()
                .any(|(k, l)| *k != key && l.st.fingerprint == Some(fp) && same_dir(&l.st.path));
            if copy_of_live {
                // The kubelet compressing a file still followed: wait until
                // the original is read to its end and gone.
                return Ok(());
            }
        }
        let by_key = self.tombstones.iter().position(|t| {
            t.key() == key
                && t.gzip == gzip
                && (t.fingerprint.is_none() || t.fingerprint == fingerprint)
        });
        let by_print = || {
            fingerprint.and_then(|fp| {
                self.tombstones
                    .iter()
                    .position(|t| t.fingerprint == Some(fp) && same_dir(&t.path))
            })
        };
        let tombstone = by_key.or_else(by_print);
        let offset = tombstone.map_or(0, |i| self.tombstones[i].offset);
        let source = if gzip {
            // Read from the start again (the fingerprint's read moved the
            // shared offset), through the descriptor of this very inode.
            let mut file = file;
            std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(0))?;
            let mut d = MultiGzDecoder::new(std::io::BufReader::new(file));
            let skipped = std::io::copy(&mut (&mut d).take(offset), &mut std::io::sink())?;
            if skipped < offset {
                tracing::warn!(file = %f.path.display(), offset, length = skipped,
                    "compressed copy is shorter than the offset reached in the original");
            }
            Source::Gzip(Box::new(d))
        } else {
            Source::Plain(file)
        };
        // Only now that it is open: a failure above keeps the tombstone.
        let resumed = tombstone.map(|i| self.tombstones.remove(i));
        match &resumed {
            Some(t) => {
                tracing::info!(file = %f.path.display(), offset, was = %t.path.display(), "resuming")
            }
            None => tracing::info!(file = %f.path.display(), "following"),
        }
        let labels = Arc::new(f.labels.clone());
        self.live.insert(
            key,
            Followed {
                st: FileState {
                    dev: key.0,
                    ino: key.1,
                    path: f.path.clone(),
                    fingerprint,
                    offset,
                    size,
                    gzip,
                    gone_since: None,
                },
                labels,
                source,
                consumed: offset,
                carry: Vec::new(),
                discarding: false,
                partials: BTreeMap::new(),
                held: Vec::new(),
                held_lines: 0,
                absent: 0,
                finished: false,
            },
        );
        Ok(())
    }

    /// Drops tombstones of removed container directories, old ones, and
    /// all but the newest few per directory.
    fn prune(&mut self, now: u64) {
        self.tombstones.retain(|t| {
            let dir_exists = t.path.parent().is_some_and(Path::exists);
            let young = t
                .gone_since
                .is_none_or(|g| now.saturating_sub(g) < TOMBSTONE_TTL.as_secs());
            dir_exists && young
        });
        self.tombstones
            .sort_by_key(|t| std::cmp::Reverse(t.gone_since));
        let mut per_dir: HashMap<PathBuf, usize> = HashMap::new();
        self.tombstones.retain(|t| {
            let n = per_dir
                .entry(t.path.parent().map(Path::to_path_buf).unwrap_or_default())
                .or_default();
            *n += 1;
            *n <= TOMBSTONES_PER_DIR
        });
    }

    /// Reads new lines of every followed file into `batch`, up to
    /// `per_file` bytes per file and until the batch holds `max_bytes` or
    /// `max_lines`. Returns the bytes read.
    pub fn read(
        &mut self,
        batch: &mut Batch,
        per_file: usize,
        max_bytes: usize,
        max_lines: usize,
    ) -> u64 {
        let mut total = 0;
        let mut keys: Vec<Key> = self.live.keys().copied().collect();
        keys.sort();
        for key in keys {
            if batch.body.len() >= max_bytes || batch.lines >= max_lines {
                break;
            }
            let Some(mut f) = self.live.remove(&key) else {
                continue;
            };
            match self.read_file(&mut f, batch, per_file, max_bytes, max_lines) {
                Ok(n) => total += n,
                Err(e) => {
                    tracing::warn!(file = %f.st.path.display(), %e, "reading log file");
                }
            }
            self.live.insert(key, f);
        }
        self.warn_unparsed();
        total
    }

    fn warn_unparsed(&mut self) {
        let new = self.counters.unparsed - self.warned_lines;
        if new > 0 && self.last_warn.is_none_or(|t| t.elapsed() >= WARN_EVERY) {
            tracing::warn!(
                lines = new,
                "lines not in the CRI format (sent whole as messages)"
            );
            self.warned_lines = self.counters.unparsed;
            self.last_warn = Some(Instant::now());
        }
    }

    fn read_file(
        &mut self,
        f: &mut Followed,
        batch: &mut Batch,
        budget: usize,
        max_bytes: usize,
        max_lines: usize,
    ) -> std::io::Result<u64> {
        let mut total = 0u64;
        let mut buf = vec![0u8; CHUNK];
        while (total as usize) < budget && batch.body.len() < max_bytes && batch.lines < max_lines {
            let pos = f.consumed + f.carry.len() as u64;
            let n = match &mut f.source {
                Source::Plain(file) => file.read_at(&mut buf, pos)?,
                Source::Gzip(d) => d.read(&mut buf)?,
                Source::Closed => 0,
            };
            if n == 0 {
                // At the end. A file gone from the disk (or a compressed
                // one) will not grow: what is left is its last line.
                let complete = f.absent >= 2 || matches!(f.source, Source::Gzip(_));
                if complete && !f.finished {
                    if !f.carry.is_empty() {
                        let rest = std::mem::take(&mut f.carry);
                        let end = f.consumed + rest.len() as u64;
                        self.line(f, batch, &rest, f.consumed, end);
                    }
                    self.flush_partials(f, batch);
                    f.finished = true;
                    if matches!(f.source, Source::Gzip(_)) {
                        f.source = Source::Closed;
                    }
                }
                break;
            }
            total += n as u64;
            self.take(f, batch, &buf[..n]);
        }
        if let Source::Plain(_) = f.source {
            f.st.size = f.st.size.max(f.consumed + f.carry.len() as u64);
        }
        Ok(total)
    }

    /// Splits new bytes into lines.
    fn take(&mut self, f: &mut Followed, batch: &mut Batch, bytes: &[u8]) {
        let mut rest = bytes;
        while let Some(i) = rest.iter().position(|b| *b == b'\n') {
            let (part, after) = rest.split_at(i);
            rest = &after[1..];
            if f.discarding {
                f.discarding = false;
                f.consumed += part.len() as u64 + 1;
                continue;
            }
            let start = f.consumed;
            let end = start + f.carry.len() as u64 + part.len() as u64 + 1;
            if f.carry.is_empty() {
                self.line(f, batch, part, start, end);
            } else {
                let mut whole = std::mem::take(&mut f.carry);
                whole.extend_from_slice(part);
                self.line(f, batch, &whole, start, end);
            }
        }
        if f.discarding {
            f.consumed += rest.len() as u64;
        } else {
            f.carry.extend_from_slice(rest);
            if f.carry.len() > self.max_line + 256 {
                tracing::warn!(file = %f.st.path.display(), offset = f.consumed,
                    "a line longer than --max-line-bytes without a newline: skipped to its end");
                f.consumed += f.carry.len() as u64;
                f.carry.clear();
                f.discarding = true;
            }
        }
    }

    /// One complete line at `[start, end)` of the file.
    fn line(&mut self, f: &mut Followed, batch: &mut Batch, bytes: &[u8], start: u64, end: u64) {
        f.consumed = end;
        if start == 0 && f.st.fingerprint.is_none() {
            // The same bytes `fingerprint_of` hashes: the first line, at most 4 KiB.
            f.st.fingerprint = Some(fnv(&bytes[..bytes.len().min(FINGERPRINT_BYTES)]));
        }
        let max = self.max_line;
        match cri::parse(bytes) {
            Ok(l) if l.partial => {
                let p = f.partials.entry(l.stream).or_insert_with(|| Partial {
                    time: l.time.to_string(),
                    message: Vec::new(),
                    truncated: false,
                });
                let room = max.saturating_sub(p.message.len());
                if l.message.len() > room {
                    p.message.extend_from_slice(&l.message[..room]);
                    p.truncated = true;
                } else {
                    p.message.extend_from_slice(l.message);
                }
            }
            Ok(l) => {
                let joined = f.partials.remove(&l.stream);
                let mut out = Vec::new();
                match &joined {
                    Some(p) => {
                        let mut message = p.message.clone();
                        let room = max.saturating_sub(message.len());
                        let truncated = p.truncated || l.message.len() > room;
                        message.extend_from_slice(&l.message[..l.message.len().min(room)]);
                        self.counters.truncated += u64::from(truncated);
                        record::append(
                            &mut out,
                            &self.node,
                            &f.labels,
                            &Line {
                                time: Some(&p.time),
                                stream: Some(l.stream.as_str()),
                                message: &message,
                                truncated,
                                unparsed: None,
                            },
                        );
                    }
                    None => {
                        let truncated = l.message.len() > max;
                        self.counters.truncated += u64::from(truncated);
                        record::append(
                            &mut out,
                            &self.node,
                            &f.labels,
                            &Line {
                                time: Some(l.time),
                                stream: Some(l.stream.as_str()),
                                message: &l.message[..l.message.len().min(max)],
                                truncated,
                                unparsed: None,
                            },
                        );
                    }
                }
                self.emit(f, batch, out);
            }
            Err(e) => {
                self.counters.unparsed += 1;
                let why = e.to_string();
                let mut out = Vec::new();
                record::append(
                    &mut out,
                    &self.node,
                    &f.labels,
                    &Line {
                        time: None,
                        stream: None,
                        message: &bytes[..bytes.len().min(max)],
                        truncated: bytes.len() > max,
                        unparsed: Some(&why),
                    },
                );
                self.emit(f, batch, out);
            }
        }
        if f.held.len() > MAX_HELD {
            tracing::warn!(file = %f.st.path.display(), "a partial line waits too long for its end: sending it as it is");
            self.flush_partials(f, batch);
        }
    }

    /// Adds a record to the batch, or holds it while a partial line waits.
    fn emit(&mut self, f: &mut Followed, batch: &mut Batch, record: Vec<u8>) {
        if record.is_empty() {
            return;
        }
        self.counters.lines += 1;
        if !f.partials.is_empty() {
            f.held.extend_from_slice(&record);
            f.held_lines += 1;
            return;
        }
        if !f.held.is_empty() {
            batch.body.append(&mut f.held);
            batch.lines += std::mem::take(&mut f.held_lines);
        }
        batch.body.extend_from_slice(&record);
        batch.lines += 1;
        batch.offsets.insert(f.st.key(), f.consumed);
        batch.started.get_or_insert_with(Instant::now);
    }

    /// Sends waiting partial lines as they are (the file ended, or they
    /// waited too long).
    fn flush_partials(&mut self, f: &mut Followed, batch: &mut Batch) {
        let partials = std::mem::take(&mut f.partials);
        let mut out = Vec::new();
        for (stream, p) in partials {
            record::append(
                &mut out,
                &self.node,
                &f.labels,
                &Line {
                    time: Some(&p.time),
                    stream: Some(stream.as_str()),
                    message: &p.message,
                    truncated: true,
                    unparsed: None,
                },
            );
        }
        if !out.is_empty() {
            // Released with the held ones, ahead of them.
            let mut held = std::mem::take(&mut f.held);
            let held_lines = std::mem::take(&mut f.held_lines);
            let lines = out.iter().filter(|b| **b == b'\n').count();
            self.counters.lines += lines as u64;
            self.counters.truncated += lines as u64;
            batch.body.extend_from_slice(&out);
            batch.lines += lines;
            batch.body.append(&mut held);
            batch.lines += held_lines;
            batch.offsets.insert(f.st.key(), f.consumed);
            batch.started.get_or_insert_with(Instant::now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(batch: &Batch) -> Vec<String> {
        String::from_utf8_lossy(&batch.body)
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["message"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect()
    }

    fn append(path: &Path, text: &str) {
        use std::io::Write as _;
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }

    /// Reads what is new into a fresh batch and marks it buffered.
    fn step(t: &mut Tracker) -> Batch {
        t.scan().unwrap();
        let mut b = Batch::default();
        t.read(&mut b, 1 << 20, 1 << 20, 100_000);
        t.buffered(&b.offsets);
        b
    }

    #[test]
    fn a_partial_line_holds_the_offset_and_the_other_stream_back() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("ns_pod_uid/c");
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("0.log");
        append(&log, "t stdout F one\nt stdout P two-a \nt stderr F err\n");
        let mut t = Tracker::new(d.path(), "n", 1 << 20, Vec::new());
        let b = step(&mut t);
        assert_eq!(messages(&b), ["one"]);
        let after_one = "t stdout F one\n".len() as u64;
        assert_eq!(
            t.files()[0].offset,
            after_one,
            "the offset stays before the partial line"
        );
        // A restart now reads the partial line (and the held line) again, and nothing else.
        let mut again = Tracker::new(d.path(), "n", 1 << 20, t.files());
        append(&log, "t stdout F two-b\n");
        let b = step(&mut again);
        assert_eq!(messages(&b), ["err", "two-a two-b"]);
        let size = std::fs::metadata(&log).unwrap().len();
        assert_eq!(again.files()[0].offset, size);
        assert!(messages(&step(&mut again)).is_empty());
    }

    #[test]
    fn long_lines_are_cut_and_labelled() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("ns_pod_uid/c");
        std::fs::create_dir_all(&dir).unwrap();
        append(
            &dir.join("0.log"),
            &format!(
                "t stdout P {}\nt stdout F {}\nt stdout F short\n",
                "a".repeat(80),
                "b".repeat(80)
            ),
        );
        let mut t = Tracker::new(d.path(), "n", 100, Vec::new());
        let b = step(&mut t);
        let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&b.body)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines[0]["message"].as_str().unwrap().len(), 100);
        assert_eq!(lines[0]["truncated"], "true");
        assert_eq!(lines[1]["message"], "short");
        assert_eq!(t.counters.truncated, 1);
    }

    #[test]
    fn a_buffered_header_of_a_deleted_file_does_not_move_the_offset_of_a_new_file_on_its_inode() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("ns_pod_uid/c");
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("0.log");
        append(&log, "t stdout F new-1\nt stdout F new-2\n");
        let mut t = Tracker::new(d.path(), "n", 1 << 20, Vec::new());
        assert_eq!(messages(&step(&mut t)), ["new-1", "new-2"]);
        let saved = t.files();
        // A header buffered before the rotation: the deleted file that had
        // this inode before, read much further.
        let old = FileState {
            fingerprint: Some(fnv(b"t stdout F old-1")),
            offset: 5000,
            size: 5000,
            ..saved[0].clone()
        };
        let mut again = Tracker::new(d.path(), "n", 1 << 20, saved.clone());
        again.recover(std::slice::from_ref(&old));
        append(&log, "t stdout F new-3\n");
        assert_eq!(messages(&step(&mut again)), ["new-3"]);
        // The same file's header still raises its offset.
        let mut third = Tracker::new(d.path(), "n", 1 << 20, saved.clone());
        let further = FileState {
            offset: std::fs::metadata(&log).unwrap().len(),
            ..saved[0].clone()
        };
        third.recover(&[further]);
        assert!(messages(&step(&mut third)).is_empty());
    }

    #[test]
    fn fingerprints_need_a_first_line() {
        assert_eq!(fingerprint_of(b"abc"), None);
        assert_eq!(fingerprint_of(b"abc\ndef"), Some(fnv(b"abc")));
        assert_eq!(fingerprint_of(&[b'x'; 5000]), Some(fnv(&[b'x'; 4096])));
        assert_ne!(fnv(b"a"), fnv(b"b"));
    }
}
