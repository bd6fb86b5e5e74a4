//! A bounded in-memory ring of log lines, one per service (and one for
//! machined itself), that `cairnctl logs` reads and can follow.

use std::collections::VecDeque;
use std::sync::Mutex;

use tokio::sync::Notify;

/// Default capacity of a service's ring, in bytes of text.
pub const DEFAULT_CAPACITY: usize = 64 * 1024;
/// Longest line kept; longer lines are cut (a runaway writer without
/// newlines must not eat the ring in one entry).
pub const MAX_LINE: usize = 4096;

pub struct LogRing {
    inner: Mutex<Ring>,
    appended: Notify,
    capacity: usize,
}

struct Ring {
    lines: VecDeque<String>,
    bytes: usize,
    /// Sequence number of the next line pushed; the oldest line held has
    /// `next_seq - lines.len()`.
    next_seq: u64,
}

impl LogRing {
    pub fn new(capacity: usize) -> Self {
        Self {
            inner: Mutex::new(Ring {
                lines: VecDeque::new(),
                bytes: 0,
                next_seq: 0,
            }),
            appended: Notify::new(),
            capacity,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Ring> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends one line (without its newline), dropping the oldest lines
    /// to stay within capacity.
    pub fn push(&self, line: &str) {
        let mut line = line.trim_end_matches(['\n', '\r']).to_string();
        if line.len() > MAX_LINE {
            let mut cut = MAX_LINE;
            while !line.is_char_boundary(cut) {
                cut -= 1;
            }
            line.truncate(cut);
        }
        let mut r = self.lock();
        r.bytes += line.len() + 1;
        r.lines.push_back(line);
        r.next_seq += 1;
        while r.bytes > self.capacity && r.lines.len() > 1 {
            if let Some(old) = r.lines.pop_front() {
                r.bytes -= old.len() + 1;
            }
        }
        drop(r);
        self.appended.notify_waiters();
    }

    /// The last `n` lines (all when `None`) and the sequence number to
    /// follow from.
    pub fn tail(&self, n: Option<usize>) -> (Vec<String>, u64) {
        let r = self.lock();
        let skip = n.map_or(0, |n| r.lines.len().saturating_sub(n));
        (r.lines.iter().skip(skip).cloned().collect(), r.next_seq)
    }

    /// Lines pushed at or after `seq` that are still held, and the next
    /// sequence number. Lines that fell out of the ring are skipped.
    pub fn since(&self, seq: u64) -> (Vec<String>, u64) {
        let r = self.lock();
        let oldest = r.next_seq - r.lines.len() as u64;
        let skip = seq.saturating_sub(oldest) as usize;
        (r.lines.iter().skip(skip).cloned().collect(), r.next_seq)
    }

    /// Resolves when a line is pushed after this call (not after the first
    /// poll): create it, then check [`since`](Self::since), then await it,
    /// and no line is missed.
    pub fn appended(&self) -> tokio::sync::futures::Notified<'_> {
        self.appended.notified()
    }

    /// Everything held, newline-terminated.
    pub fn contents(&self) -> String {
        let r = self.lock();
        let mut s = String::with_capacity(r.bytes);
        for l in &r.lines {
            s.push_str(l);
            s.push('\n');
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_newest_lines_within_capacity() {
        let ring = LogRing::new(20);
        for i in 0..10 {
            ring.push(&format!("line {i}\n"));
        }
        let (lines, next) = ring.tail(None);
        assert_eq!(next, 10);
        assert_eq!(lines, vec!["line 8", "line 9"]);
        assert_eq!(ring.tail(Some(1)).0, vec!["line 9"]);
        assert_eq!(ring.contents(), "line 8\nline 9\n");
    }

    #[test]
    fn since_follows_and_skips_dropped() {
        let ring = LogRing::new(1000);
        ring.push("a");
        let (_, seq) = ring.tail(None);
        ring.push("b");
        ring.push("c");
        assert_eq!(ring.since(seq), (vec!["b".to_string(), "c".to_string()], 3));
        let small = LogRing::new(3);
        small.push("x");
        small.push("y");
        small.push("z");
        assert_eq!(small.since(0).0, vec!["z"]);
    }

    #[test]
    fn cuts_long_lines() {
        let ring = LogRing::new(DEFAULT_CAPACITY);
        ring.push(&"é".repeat(MAX_LINE));
        assert!(ring.tail(None).0[0].len() <= MAX_LINE);
    }
}
