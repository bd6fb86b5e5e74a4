//! The node's event log: service state changes, config found or applied,
//! stages, power actions. Each event is an `events` resource; the log keeps
//! the newest [`KEEP`] and destroys older ones, so it is a ring that can be
//! listed and watched like any other type.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::specs::{EventSpec, EventType};
use super::{kind, Store, StoreError, Writer};

/// How many events are kept.
pub const KEEP: u64 = 500;

pub struct EventLog {
    writer: Mutex<Writer>,
    next: AtomicU64,
}

impl EventLog {
    /// Registers the log as the writer of `events`.
    pub fn new(store: &Arc<Store>) -> Result<Self, StoreError> {
        Ok(Self {
            writer: Mutex::new(store.writer("events", &[kind::EVENTS])?),
            next: AtomicU64::new(1),
        })
    }

    /// The id of event number `seq`: zero-padded, so ids sort in order.
    pub fn id(seq: u64) -> String {
        format!("{seq:010}")
    }

    /// Records an event.
    pub fn record(&self, event_type: EventType, message: impl Into<String>) {
        let message = message.into();
        tracing::debug!(event = event_type.as_str(), "{message}");
        // One lock around numbering and writing, so events enter the store
        // in the order of their ids.
        let w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let seq = self.next.fetch_add(1, Ordering::SeqCst);
        let spec = EventSpec {
            event_type,
            message,
        };
        if let Err(e) = w.put(Self::id(seq), spec) {
            tracing::warn!(error = %e, "cannot record an event");
        }
        if seq > KEEP {
            let _ = w.destroy::<EventSpec>(&Self::id(seq - KEEP));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest_in_order() {
        let store = Store::new();
        let log = EventLog::new(&store).unwrap();
        for i in 0..KEEP + 3 {
            log.record(EventType::Service, format!("event {i}"));
        }
        let events = store.specs::<EventSpec>();
        assert_eq!(events.len() as u64, KEEP);
        assert_eq!(events[0].0, EventLog::id(4));
        assert_eq!(events[0].1.message, "event 3");
        assert_eq!(
            events.last().unwrap().1.message,
            format!("event {}", KEEP + 2)
        );
        assert!(EventLog::new(&store).is_err(), "a second writer of events");
    }
}
