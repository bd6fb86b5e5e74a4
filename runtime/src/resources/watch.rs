//! Watches: the current state of some resources (optionally), a marker,
//! then every change as it happens, in store order.
//!
//! A watch remembers the version of every resource it has accounted for.
//! If it falls behind the store's change backlog, it lists the store again
//! and reports the difference (created, updated, destroyed) instead of the
//! changes it missed, so a slow reader never ends up with a wrong picture.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use tokio::sync::broadcast::{self, error::RecvError};

use super::store::{Change, ChangeKind};
use super::{Kind, Resource, Store};

/// Which resources a watch follows.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Types to follow; empty follows every type.
    pub kinds: Vec<&'static Kind>,
    /// One resource by id.
    pub id: Option<String>,
}

impl Filter {
    pub fn kind(kind: &'static Kind) -> Self {
        Self {
            kinds: vec![kind],
            id: None,
        }
    }

    pub fn matches(&self, r: &Resource) -> bool {
        (self.kinds.is_empty() || self.kinds.iter().any(|k| k.name == r.metadata.kind))
            && self.id.as_ref().is_none_or(|id| *id == r.metadata.id)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum WatchKind {
    Created,
    Updated,
    Destroyed,
    /// The initial listing is complete; carries no resource.
    Bootstrapped,
}

#[derive(Debug, Clone)]
pub struct WatchEvent {
    pub kind: WatchKind,
    pub resource: Option<Resource>,
}

pub struct Watch {
    store: Arc<Store>,
    filter: Filter,
    rx: broadcast::Receiver<Change>,
    pending: VecDeque<WatchEvent>,
    /// Version of each resource (type, id) this watch has accounted for.
    seen: BTreeMap<(&'static str, String), u64>,
}

fn key(r: &Resource) -> (&'static str, String) {
    (r.metadata.kind, r.metadata.id.clone())
}

impl Watch {
    /// Starts watching. With `bootstrap`, the current resources come first
    /// as Created events, then a Bootstrapped marker.
    pub fn new(store: &Arc<Store>, filter: Filter, bootstrap: bool) -> Self {
        let (current, rx) = store.snapshot_and_subscribe(|r| filter.matches(r));
        let seen = current
            .iter()
            .map(|r| (key(r), r.metadata.version))
            .collect();
        let mut pending = VecDeque::new();
        if bootstrap {
            pending.extend(current.into_iter().map(|r| WatchEvent {
                kind: WatchKind::Created,
                resource: Some(r),
            }));
            pending.push_back(WatchEvent {
                kind: WatchKind::Bootstrapped,
                resource: None,
            });
        }
        Self {
            store: store.clone(),
            filter,
            rx,
            pending,
            seen,
        }
    }

    /// The next event; waits for one.
    pub async fn next(&mut self) -> WatchEvent {
        loop {
            if let Some(e) = self.pending.pop_front() {
                return e;
            }
            match self.rx.recv().await {
                Ok(change) => {
                    if let Some(e) = self.account(change) {
                        return e;
                    }
                }
                Err(RecvError::Lagged(_)) => self.resync(),
                // The store lives as long as this watch holds it.
                Err(RecvError::Closed) => std::future::pending::<()>().await,
            }
        }
    }

    /// Turns a store change into an event for this watch, if it is one.
    fn account(&mut self, change: Change) -> Option<WatchEvent> {
        if !self.filter.matches(&change.resource) {
            return None;
        }
        let k = key(&change.resource);
        let kind = match change.kind {
            ChangeKind::Destroyed => {
                self.seen.remove(&k);
                WatchKind::Destroyed
            }
            ChangeKind::Created | ChangeKind::Updated => {
                let v = change.resource.metadata.version;
                match self.seen.insert(k, v) {
                    Some(old) if old >= v => return None,
                    Some(_) => WatchKind::Updated,
                    None if change.kind == ChangeKind::Created => WatchKind::Created,
                    None => WatchKind::Updated,
                }
            }
        };
        Some(WatchEvent {
            kind,
            resource: Some(change.resource),
        })
    }

    /// Lists the store again and queues the difference from what this
    /// watch has reported.
    fn resync(&mut self) {
        let (current, rx) = self
            .store
            .snapshot_and_subscribe(|r| self.filter.matches(r));
        self.rx = rx;
        let mut now: BTreeMap<_, _> = current.into_iter().map(|r| (key(&r), r)).collect();
        let gone: Vec<_> = self
            .seen
            .keys()
            .filter(|k| !now.contains_key(*k))
            .cloned()
            .collect();
        for k in gone {
            self.seen.remove(&k);
            // The last state is gone with the missed changes; report what
            // identifies the resource.
            tracing::debug!(kind = k.0, id = %k.1, "watch resync: destroyed while behind");
            self.pending.push_back(WatchEvent {
                kind: WatchKind::Destroyed,
                resource: Some(tombstone(k.0, k.1)),
            });
        }
        for (k, r) in std::mem::take(&mut now) {
            let v = r.metadata.version;
            let kind = match self.seen.insert(k, v) {
                None => WatchKind::Created,
                Some(old) if old != v => WatchKind::Updated,
                Some(_) => continue,
            };
            self.pending.push_back(WatchEvent {
                kind,
                resource: Some(r),
            });
        }
    }
}

/// A stand-in for a resource destroyed while a watch was behind: its
/// identity and an empty spec.
fn tombstone(kind: &'static str, id: String) -> Resource {
    use std::time::SystemTime;
    let k = Kind::named(kind).expect("watched kinds are registered kinds");
    Resource {
        metadata: super::Metadata {
            namespace: k.namespace,
            kind: k.name,
            id,
            version: 0,
            created: SystemTime::UNIX_EPOCH,
            updated: SystemTime::UNIX_EPOCH,
        },
        spec: Arc::new(Tombstone(k)),
    }
}

struct Tombstone(&'static Kind);

impl super::AnySpec for Tombstone {
    fn kind(&self) -> &'static Kind {
        self.0
    }
    fn to_yaml(&self, _: super::Secrets) -> String {
        "{}\n".to_string()
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
    fn same_as(&self, _: &dyn super::AnySpec) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::super::specs::HostnameSpec;
    use super::super::{kind, Secrets, Spec};
    use super::*;
    use std::time::Duration;

    #[derive(Debug, Clone, PartialEq)]
    struct Link(u32);
    impl Spec for Link {
        const KIND: &'static Kind = kind::LINKS;
        fn to_yaml(&self, _: Secrets) -> String {
            format!("index: {}\n", self.0)
        }
    }

    async fn next(w: &mut Watch) -> (WatchKind, Option<String>, u64) {
        let e = tokio::time::timeout(Duration::from_secs(5), w.next())
            .await
            .expect("watch event");
        let id = e.resource.as_ref().map(|r| r.metadata.id.clone());
        let v = e.resource.as_ref().map_or(0, |r| r.metadata.version);
        (e.kind, id, v)
    }

    #[tokio::test]
    async fn current_state_then_marker_then_changes_in_order() {
        let store = Store::new();
        let w = store
            .writer("network", &[kind::LINKS, kind::HOSTNAME])
            .unwrap();
        w.put("eth0", Link(2)).unwrap();
        w.put("lo", Link(1)).unwrap();
        let mut watch = Watch::new(&store, Filter::kind(kind::LINKS), true);
        assert_eq!(
            next(&mut watch).await,
            (WatchKind::Created, Some("eth0".into()), 1)
        );
        assert_eq!(
            next(&mut watch).await,
            (WatchKind::Created, Some("lo".into()), 1)
        );
        assert_eq!(next(&mut watch).await, (WatchKind::Bootstrapped, None, 0));
        // Other types are filtered out.
        w.put("hostname", HostnameSpec::new("n")).unwrap();
        w.put("eth0", Link(5)).unwrap();
        w.put("eth1", Link(3)).unwrap();
        w.destroy::<Link>("lo").unwrap();
        assert_eq!(
            next(&mut watch).await,
            (WatchKind::Updated, Some("eth0".into()), 2)
        );
        assert_eq!(
            next(&mut watch).await,
            (WatchKind::Created, Some("eth1".into()), 1)
        );
        assert_eq!(
            next(&mut watch).await,
            (WatchKind::Destroyed, Some("lo".into()), 1)
        );
    }

    #[tokio::test]
    async fn one_id_without_bootstrap() {
        let store = Store::new();
        let w = store.writer("network", &[kind::LINKS]).unwrap();
        w.put("eth0", Link(2)).unwrap();
        let mut watch = Watch::new(
            &store,
            Filter {
                kinds: vec![kind::LINKS],
                id: Some("eth0".into()),
            },
            false,
        );
        w.put("eth1", Link(3)).unwrap();
        w.put("eth0", Link(4)).unwrap();
        assert_eq!(
            next(&mut watch).await,
            (WatchKind::Updated, Some("eth0".into()), 2)
        );
    }

    #[tokio::test]
    async fn a_watch_that_fell_behind_resynchronizes() {
        let store = Store::new();
        let w = store.writer("network", &[kind::LINKS]).unwrap();
        w.put("gone", Link(0)).unwrap();
        w.put("kept", Link(0)).unwrap();
        w.put("same", Link(0)).unwrap();
        let mut watch = Watch::new(&store, Filter::kind(kind::LINKS), false);
        // Far more changes than the backlog holds.
        for i in 0..1000 {
            w.put("kept", Link(i + 1)).unwrap();
        }
        w.destroy::<Link>("gone").unwrap();
        w.put("new", Link(9)).unwrap();
        let mut events = Vec::new();
        for _ in 0..3 {
            events.push(next(&mut watch).await);
        }
        events.sort();
        let mut expected = vec![
            (WatchKind::Created, Some("new".into()), 1),
            (WatchKind::Updated, Some("kept".into()), 1001),
            (WatchKind::Destroyed, Some("gone".into()), 0),
        ];
        expected.sort();
        assert_eq!(events, expected);
        // Back in step: the next change arrives as itself.
        w.put("same", Link(1)).unwrap();
        assert_eq!(
            next(&mut watch).await,
            (WatchKind::Updated, Some("same".into()), 2)
        );
    }
}
