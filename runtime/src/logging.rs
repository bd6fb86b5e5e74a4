//! machined's logging: `tracing` events go to /dev/kmsg (so they reach the
//! console and `dmesg`) and to machined's own log ring.
//!
//! Events with target [`CONSOLE`] are the lines a person (and the VM tests)
//! read on the console; they are written as `cairn: <message>` at notice
//! level so they show even with a quiet console loglevel. Everything else is
//! `machined: <message> key=value...` at its own level.

use std::fmt::Write as _;
use std::fs::File;
use std::io::Write as _;
use std::sync::{Arc, Mutex};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

use crate::supervisor::logbuf::LogRing;

/// Target of the console lines (see [`console!`](crate::console)).
pub const CONSOLE: &str = "cairn::console";
/// The kmsg record limit is about 1 KiB; longer lines are cut.
const MAX_RECORD: usize = 976;

/// Writes a `cairn: ...` line to the console (through kmsg).
#[macro_export]
macro_rules! console {
    ($($arg:tt)*) => {
        tracing::info!(target: $crate::logging::CONSOLE, $($arg)*)
    };
}

pub struct KmsgLayer {
    kmsg: Option<Mutex<File>>,
    ring: Arc<LogRing>,
    max_level: Level,
}

impl KmsgLayer {
    pub fn new(ring: Arc<LogRing>, max_level: Level) -> Self {
        let kmsg = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/kmsg")
            .ok()
            .map(Mutex::new);
        Self {
            kmsg,
            ring,
            max_level,
        }
    }
}

/// Syslog priority for a tracing level.
fn priority(level: &Level, console: bool) -> u8 {
    if console {
        return 5;
    }
    match *level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        _ => 7,
    }
}

#[derive(Default)]
struct Fields {
    message: String,
    rest: String,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            let _ = write!(self.rest, " {}={:?}", field.name(), value);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.rest, " {}={:?}", field.name(), value);
        }
    }
}

/// Formats an event as a single line (without the kmsg priority).
pub fn format_line(target: &str, fields: &str, rest: &str) -> String {
    let mut line = if target == CONSOLE {
        format!("cairn: {fields}{rest}")
    } else {
        format!("machined: {fields}{rest}")
    };
    line.retain(|c| c != '\n');
    line
}

impl<S: Subscriber> Layer<S> for KmsgLayer {
    fn enabled(&self, metadata: &tracing::Metadata<'_>, _ctx: Context<'_, S>) -> bool {
        metadata.target() == CONSOLE || *metadata.level() <= self.max_level
    }

    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let meta = event.metadata();
        let mut f = Fields::default();
        event.record(&mut f);
        let console = meta.target() == CONSOLE;
        let line = format_line(meta.target(), &f.message, &f.rest);
        self.ring.push(&line);
        if !on_console(meta.target(), self.max_level) {
            return;
        }
        if let Some(kmsg) = &self.kmsg {
            let mut record = format!("<{}>{}", priority(meta.level(), console), line);
            if record.len() > MAX_RECORD {
                let mut cut = MAX_RECORD;
                while !record.is_char_boundary(cut) {
                    cut -= 1;
                }
                record.truncate(cut);
            }
            record.push('\n');
            if let Ok(mut k) = kmsg.lock() {
                // One write per record: kmsg takes each write as one message.
                let _ = k.write_all(record.as_bytes());
            }
        }
    }
}

/// Whether an event of `target` is also written to kmsg. Libraries' events
/// (kube-client logs every refused connection at error level while the
/// API server is not up yet; our own code reports what matters) go only to
/// machined's log ring (`cairnctl logs machined`) unless debugging.
fn on_console(target: &str, max_level: Level) -> bool {
    target.starts_with("machined") || target.starts_with("cairn") || max_level >= Level::DEBUG
}

/// Turns off kmsg rate limiting for userspace writers, so a burst of
/// machined lines at boot is not dropped ("printk: machined: N output
/// lines suppressed").
pub fn allow_kmsg_bursts() -> std::io::Result<()> {
    std::fs::write("/proc/sys/kernel/printk_devkmsg", "on")
}

/// Installs the kmsg layer as the global subscriber.
pub fn init(ring: Arc<LogRing>, debug: bool) {
    use tracing_subscriber::layer::SubscriberExt;
    let level = if debug { Level::DEBUG } else { Level::INFO };
    let subscriber = tracing_subscriber::registry().with(KmsgLayer::new(ring, level));
    let _ = tracing::subscriber::set_global_default(subscriber);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn library_events_stay_off_the_console() {
        assert!(on_console(CONSOLE, Level::INFO));
        assert!(on_console("machined::kubelet", Level::INFO));
        assert!(!on_console("kube_client::client::builder", Level::INFO));
        assert!(on_console("kube_client::client::builder", Level::DEBUG));
    }

    #[test]
    fn console_and_regular_lines() {
        assert_eq!(
            format_line(CONSOLE, "service apid: Running", ""),
            "cairn: service apid: Running"
        );
        assert_eq!(
            format_line("machined::mounts", "mounted", " target=\"/run\""),
            "machined: mounted target=\"/run\""
        );
        assert_eq!(priority(&Level::INFO, true), 5);
        assert_eq!(priority(&Level::ERROR, false), 3);
    }

    #[test]
    fn events_reach_the_ring() {
        use tracing_subscriber::layer::SubscriberExt;
        let ring = Arc::new(LogRing::new(4096));
        let layer = KmsgLayer {
            kmsg: None,
            ring: ring.clone(),
            max_level: Level::INFO,
        };
        let sub = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(sub, || {
            crate::console!("hello {}", 1);
            tracing::info!(service = "apid", "started");
            tracing::debug!("hidden");
        });
        assert_eq!(
            ring.tail(None).0,
            vec!["cairn: hello 1", "machined: started service=\"apid\""]
        );
    }
}
