//! Counters and latencies per kind of call, and apid's memory over time.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

#[derive(Default)]
struct Op {
    /// Latencies of the calls that succeeded, in microseconds.
    micros: Vec<u64>,
    /// Failures by their reason.
    errors: BTreeMap<String, u64>,
}

/// Everything the load test measures.
#[derive(Default)]
pub struct Stats {
    ops: Mutex<BTreeMap<&'static str, Op>>,
}

impl Stats {
    pub fn ok(&self, op: &'static str, took: Duration) {
        let mut ops = self.ops.lock().unwrap_or_else(|e| e.into_inner());
        ops.entry(op)
            .or_default()
            .micros
            .push(took.as_micros() as u64);
    }

    pub fn error(&self, op: &'static str, why: impl Into<String>) {
        let mut ops = self.ops.lock().unwrap_or_else(|e| e.into_inner());
        *ops.entry(op)
            .or_default()
            .errors
            .entry(why.into())
            .or_default() += 1;
    }

    /// Successes and failures of `op`.
    pub fn counts(&self, op: &str) -> (u64, u64) {
        let ops = self.ops.lock().unwrap_or_else(|e| e.into_inner());
        ops.get(op)
            .map_or((0, 0), |o| (o.micros.len() as u64, o.errors.values().sum()))
    }

    /// One line per kind of call: count, rate, p50, p99, max, errors.
    pub fn report(&self, elapsed: Duration) -> String {
        let mut ops = self.ops.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = format!(
            "{:<24} {:>9} {:>9} {:>9} {:>9} {:>9}  errors\n",
            "call", "ok", "per s", "p50 ms", "p99 ms", "max ms"
        );
        for (name, op) in ops.iter_mut() {
            op.micros.sort_unstable();
            let pct = |p: f64| -> f64 {
                if op.micros.is_empty() {
                    return 0.0;
                }
                let i = ((op.micros.len() as f64 - 1.0) * p).round() as usize;
                op.micros[i] as f64 / 1000.0
            };
            let errors = if op.errors.is_empty() {
                "-".to_string()
            } else {
                op.errors
                    .iter()
                    .map(|(k, v)| format!("{v} {k}"))
                    .collect::<Vec<_>>()
                    .join("; ")
            };
            out.push_str(&format!(
                "{:<24} {:>9} {:>9.1} {:>9.2} {:>9.2} {:>9.2}  {}\n",
                name,
                op.micros.len(),
                op.micros.len() as f64 / elapsed.as_secs_f64(),
                pct(0.5),
                pct(0.99),
                op.micros.last().map_or(0.0, |m| *m as f64 / 1000.0),
                errors
            ));
        }
        out
    }
}

/// A field of /proc/<pid>/status in KiB (VmRSS, VmHWM).
pub fn status_kib(pid: u32, key: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The number of open descriptors of `pid`.
pub fn open_fds(pid: u32) -> Option<usize> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()
        .map(|d| d.count())
}
