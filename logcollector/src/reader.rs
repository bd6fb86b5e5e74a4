//! The reader thread: scans the pod log directory, reads new lines into a
//! batch, and writes each full (or old enough) batch to the disk buffer,
//! then the offsets to the state file, then tells the sender. When the
//! buffer holds `--buffer-size`, it stops reading (the kubelet's files keep
//! the lines meanwhile) and says so in its log.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::buffer::{Buffer, BufferError, Header};
use crate::files::{Batch, Tracker};
use crate::state::{State, StateError};

/// The reader's settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub pods_dir: PathBuf,
    pub state_dir: PathBuf,
    pub node: String,
    pub batch_lines: usize,
    pub batch_bytes: usize,
    pub batch_wait: Duration,
    pub scan_interval: Duration,
    pub poll_interval: Duration,
    pub buffer_limit: u64,
    pub max_line: usize,
}

/// What the reader shares with the sender and the health endpoint.
#[derive(Debug, Default)]
pub struct Shared {
    /// Set to stop the reader.
    pub stop: AtomicBool,
    /// Milliseconds since the epoch of the reader's last loop.
    pub heartbeat: AtomicU64,
    pub lines: AtomicU64,
    pub followed: AtomicU64,
    pub buffer_full: AtomicBool,
}

#[derive(Debug, thiserror::Error)]
pub enum ReaderError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Buffer(#[from] BufferError),
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

pub struct Reader {
    settings: Settings,
    state: State,
    buffer: Buffer,
    tracker: Tracker,
    batch: Batch,
    shared: Arc<Shared>,
    published: watch::Sender<u64>,
    /// When the buffer-full warning was last logged (at most once a
    /// minute, and once more when it has half its room again).
    full_warned: Option<Instant>,
    last_write_error: Option<Instant>,
}

impl Reader {
    /// Loads the state (or makes a new one) and recovers offsets from the
    /// batches still in the buffer.
    pub fn open(
        settings: Settings,
        shared: Arc<Shared>,
        published: watch::Sender<u64>,
    ) -> Result<Reader, ReaderError> {
        std::fs::create_dir_all(&settings.state_dir).map_err(|source| StateError::Io {
            path: settings.state_dir.clone(),
            source,
        })?;
        let mut state = match State::load(&settings.state_dir)? {
            Some(s) => s,
            None => {
                let s = State::new(&settings.node);
                tracing::info!(source = %s.source, dir = %settings.state_dir.display(), "new state");
                s
            }
        };
        let buffer = Buffer::open(&settings.state_dir)?;
        let mut tracker = Tracker::new(
            &settings.pods_dir,
            &settings.node,
            settings.max_line,
            std::mem::take(&mut state.files),
        );
        let waiting = buffer.list()?;
        for e in &waiting {
            let (h, _) = buffer.read(e)?;
            tracker.recover(&h.files);
            state.next_batch = state.next_batch.max(h.batch + 1);
        }
        state.files = tracker.files();
        state.save(&settings.state_dir)?;
        tracing::info!(
            source = %state.source,
            files = state.files.len(),
            buffered = waiting.len(),
            next_batch = state.next_batch,
            "state loaded"
        );
        published.send_replace(state.next_batch - 1);
        Ok(Reader {
            settings,
            state,
            buffer,
            tracker,
            batch: Batch::default(),
            shared,
            published,
            full_warned: None,
            last_write_error: None,
        })
    }

    pub fn source(&self) -> String {
        self.state.source.clone()
    }

    pub fn buffer(&self) -> Buffer {
        self.buffer.clone()
    }

    /// Runs until `shared.stop` is set.
    pub fn run(mut self) {
        let s = self.settings.clone();
        let mut next_scan = Instant::now();
        let mut buffered = self.buffer.bytes().unwrap_or(0);
        while !self.shared.stop.load(Ordering::Relaxed) {
            self.shared.heartbeat.store(now_ms(), Ordering::Relaxed);
            let full = self.batch.body.len() >= s.batch_bytes || self.batch.lines >= s.batch_lines;
            let old = self
                .batch
                .started
                .is_some_and(|t| t.elapsed() >= s.batch_wait);
            if full || old {
                buffered = self.flush();
            }
            if Instant::now() >= next_scan {
                if !self.batch.is_empty() {
                    buffered = self.flush();
                }
                if self.batch.is_empty() {
                    if let Err(e) = self.tracker.scan() {
                        tracing::warn!(dir = %s.pods_dir.display(), %e, "scanning pod logs");
                    }
                    self.shared
                        .followed
                        .store(self.tracker.followed() as u64, Ordering::Relaxed);
                }
                next_scan = Instant::now() + s.scan_interval;
            }
            if buffered >= s.buffer_limit {
                buffered = self.buffer.bytes().unwrap_or(buffered);
            }
            let is_full = buffered >= s.buffer_limit;
            self.shared.buffer_full.store(is_full, Ordering::Relaxed);
            if is_full {
                if self
                    .full_warned
                    .is_none_or(|t| t.elapsed() >= Duration::from_secs(60))
                {
                    tracing::warn!(
                        buffered = buffered,
                        limit = s.buffer_limit,
                        "disk buffer full: not reading new lines until the store takes the buffered ones (the kubelet's log files keep them meanwhile)"
                    );
                    self.full_warned = Some(Instant::now());
                }
                std::thread::sleep(s.poll_interval);
                continue;
            }
            if self.full_warned.is_some() && buffered < s.buffer_limit / 2 {
                tracing::info!(buffered, "disk buffer has room again: reading");
                self.full_warned = None;
            }
            if self
                .last_write_error
                .is_some_and(|t| t.elapsed() < Duration::from_secs(1))
            {
                std::thread::sleep(s.poll_interval);
                continue;
            }
            let n = self
                .tracker
                .read(&mut self.batch, 256 * 1024, s.batch_bytes, s.batch_lines);
            self.shared
                .lines
                .store(self.tracker.counters.lines, Ordering::Relaxed);
            let full = self.batch.body.len() >= s.batch_bytes || self.batch.lines >= s.batch_lines;
            if n == 0 && !full {
                std::thread::sleep(s.poll_interval);
            }
        }
        if !self.batch.is_empty() {
            self.flush();
        }
        tracing::info!("reader stopped");
    }

    /// Writes the batch to the buffer, then the state; returns the bytes
    /// now buffered. On a write error the batch stays for the next try.
    fn flush(&mut self) -> u64 {
        if self.batch.is_empty() {
            return self.buffer.bytes().unwrap_or(0);
        }
        let n = self.state.next_batch;
        let files = self
            .batch
            .offsets
            .iter()
            .filter_map(|(key, off)| {
                self.tracker.file(*key).map(|mut f| {
                    f.offset = *off;
                    f
                })
            })
            .collect();
        let header = Header {
            batch: n,
            lines: self.batch.lines,
            files,
        };
        if let Err(e) = self.buffer.write(&header, &self.batch.body) {
            tracing::error!(%e, "cannot write a batch to the disk buffer; retrying");
            self.last_write_error = Some(Instant::now());
            return self.buffer.bytes().unwrap_or(0);
        }
        self.last_write_error = None;
        let batch = std::mem::take(&mut self.batch);
        self.tracker.buffered(&batch.offsets);
        self.state.next_batch = n + 1;
        self.state.files = self.tracker.files();
        // The batch header already holds these offsets: a failed save is
        // recovered from the buffer at the next start.
        if let Err(e) = self.state.save(&self.settings.state_dir) {
            tracing::error!(%e, "cannot save the offsets");
        }
        tracing::debug!(
            batch = n,
            lines = batch.lines,
            bytes = batch.body.len(),
            "buffered"
        );
        self.published.send_replace(n);
        self.buffer.bytes().unwrap_or(0)
    }
}
