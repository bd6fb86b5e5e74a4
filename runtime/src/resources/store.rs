//! The in-memory resource store: resources by (type, id), one owner per
//! type, and a broadcast of every change for watches.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use tokio::sync::broadcast;

use super::{AnySpec, Kind, Spec};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StoreError {
    #[error("resource type {kind} is already written by {owner}; {claimant} may not write it too")]
    AlreadyOwned {
        kind: &'static str,
        owner: &'static str,
        claimant: &'static str,
    },
    #[error("{owner} did not declare {kind} as an output and may not write it")]
    NotAnOutput {
        owner: &'static str,
        kind: &'static str,
    },
}

/// What the API shows about a resource besides its spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    pub namespace: &'static str,
    pub kind: &'static str,
    pub id: String,
    /// 1 when created, bumped by every change of the spec.
    pub version: u64,
    pub created: SystemTime,
    pub updated: SystemTime,
}

/// A resource: metadata and a shared, immutable spec.
#[derive(Clone)]
pub struct Resource {
    pub metadata: Metadata,
    pub spec: Arc<dyn AnySpec>,
}

impl std::fmt::Debug for Resource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resource")
            .field("metadata", &self.metadata)
            .finish_non_exhaustive()
    }
}

impl Resource {
    /// The spec as its concrete type, if it is one.
    pub fn spec_as<T: Spec>(&self) -> Option<&T> {
        self.spec.as_any().downcast_ref::<T>()
    }
}

/// What happened to a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    Created,
    Updated,
    Destroyed,
}

/// One change, broadcast to watches. A destroyed resource carries its
/// last state.
#[derive(Debug, Clone)]
pub struct Change {
    pub kind: ChangeKind,
    pub resource: Resource,
}

/// The outcome of a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    Created,
    Updated,
    /// The spec equals the stored one: nothing changed, no event.
    Unchanged,
}

type Key = (&'static str, String);

#[derive(Default)]
struct Inner {
    resources: BTreeMap<Key, Resource>,
    owners: BTreeMap<&'static str, &'static str>,
}

pub struct Store {
    inner: Mutex<Inner>,
    changes: broadcast::Sender<Change>,
}

/// How many changes a slow watch may fall behind before it resynchronizes
/// from a fresh listing (see [`super::Watch`]).
const CHANGE_BACKLOG: usize = 256;

impl Store {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            inner: Mutex::new(Inner::default()),
            changes: broadcast::channel(CHANGE_BACKLOG).0,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers `owner` as the only writer of `outputs`.
    pub fn writer(
        self: &Arc<Self>,
        owner: &'static str,
        outputs: &[&'static Kind],
    ) -> Result<Writer, StoreError> {
        let mut inner = self.lock();
        for k in outputs {
            if let Some(existing) = inner.owners.get(k.name) {
                return Err(StoreError::AlreadyOwned {
                    kind: k.name,
                    owner: existing,
                    claimant: owner,
                });
            }
        }
        for k in outputs {
            inner.owners.insert(k.name, owner);
        }
        Ok(Writer {
            store: self.clone(),
            owner,
            outputs: outputs.to_vec(),
        })
    }

    /// Who writes `kind`, if anyone does yet.
    pub fn owner(&self, kind: &Kind) -> Option<&'static str> {
        self.lock().owners.get(kind.name).copied()
    }

    pub fn get(&self, kind: &'static Kind, id: &str) -> Option<Resource> {
        self.lock()
            .resources
            .get(&(kind.name, id.to_string()))
            .cloned()
    }

    /// Every resource of `kind`, by id.
    pub fn list(&self, kind: &'static Kind) -> Vec<Resource> {
        list_in(&self.lock(), kind)
    }

    /// The spec of one resource, typed.
    pub fn spec<T: Spec>(&self, id: &str) -> Option<T> {
        self.get(T::KIND, id)
            .and_then(|r| r.spec_as::<T>().cloned())
    }

    /// Every spec of one type with its id, typed.
    pub fn specs<T: Spec>(&self) -> Vec<(String, T)> {
        self.list(T::KIND)
            .into_iter()
            .filter_map(|r| r.spec_as::<T>().cloned().map(|s| (r.metadata.id, s)))
            .collect()
    }

    /// The resources matching `matches` and a subscription to every change
    /// after them, taken together so that nothing falls in between.
    pub(super) fn snapshot_and_subscribe(
        &self,
        matches: impl Fn(&Resource) -> bool,
    ) -> (Vec<Resource>, broadcast::Receiver<Change>) {
        let inner = self.lock();
        let list = inner
            .resources
            .values()
            .filter(|r| matches(r))
            .cloned()
            .collect();
        (list, self.changes.subscribe())
    }

    fn put(&self, kind: &'static Kind, id: String, spec: Arc<dyn AnySpec>) -> Written {
        let now = SystemTime::now();
        let mut inner = self.lock();
        let key = (kind.name, id);
        let (change, resource) = match inner.resources.get(&key) {
            Some(old) if old.spec.same_as(spec.as_ref()) => return Written::Unchanged,
            Some(old) => {
                let mut metadata = old.metadata.clone();
                metadata.version += 1;
                metadata.updated = now.max(metadata.created);
                (ChangeKind::Updated, Resource { metadata, spec })
            }
            None => (
                ChangeKind::Created,
                Resource {
                    metadata: Metadata {
                        namespace: kind.namespace,
                        kind: kind.name,
                        id: key.1.clone(),
                        version: 1,
                        created: now,
                        updated: now,
                    },
                    spec,
                },
            ),
        };
        inner.resources.insert(key, resource.clone());
        // Sent under the lock, so watches see changes in store order. No
        // receivers is not an error.
        let _ = self.changes.send(Change {
            kind: change,
            resource,
        });
        match change {
            ChangeKind::Created => Written::Created,
            _ => Written::Updated,
        }
    }

    fn destroy(&self, kind: &'static Kind, id: &str) -> bool {
        let mut inner = self.lock();
        match inner.resources.remove(&(kind.name, id.to_string())) {
            Some(resource) => {
                let _ = self.changes.send(Change {
                    kind: ChangeKind::Destroyed,
                    resource,
                });
                true
            }
            None => false,
        }
    }
}

fn list_in(inner: &Inner, kind: &'static Kind) -> Vec<Resource> {
    inner
        .resources
        .range((kind.name, String::new())..)
        .take_while(|((k, _), _)| *k == kind.name)
        .map(|(_, r)| r.clone())
        .collect()
}

/// The write side of the store for one owner and its declared outputs.
#[derive(Clone)]
pub struct Writer {
    store: Arc<Store>,
    owner: &'static str,
    outputs: Vec<&'static Kind>,
}

impl Writer {
    pub fn owner(&self) -> &'static str {
        self.owner
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    fn check(&self, kind: &'static Kind) -> Result<(), StoreError> {
        if self.outputs.iter().any(|k| k.name == kind.name) {
            Ok(())
        } else {
            Err(StoreError::NotAnOutput {
                owner: self.owner,
                kind: kind.name,
            })
        }
    }

    /// Creates or updates one resource.
    pub fn put<T: Spec>(&self, id: impl Into<String>, spec: T) -> Result<Written, StoreError> {
        self.check(T::KIND)?;
        Ok(self.store.put(T::KIND, id.into(), Arc::new(spec)))
    }

    /// Removes one resource; false when it did not exist.
    pub fn destroy<T: Spec>(&self, id: &str) -> Result<bool, StoreError> {
        self.check(T::KIND)?;
        Ok(self.store.destroy(T::KIND, id))
    }

    /// Makes the resources of type `T` exactly `desired`: creates and
    /// updates what is listed and destroys what is not (stale outputs).
    /// Returns whether anything changed.
    pub fn reconcile<T: Spec>(
        &self,
        desired: impl IntoIterator<Item = (String, T)>,
    ) -> Result<bool, StoreError> {
        self.check(T::KIND)?;
        let desired: BTreeMap<String, T> = desired.into_iter().collect();
        let mut changed = false;
        for r in self.store.list(T::KIND) {
            if !desired.contains_key(&r.metadata.id) {
                changed |= self.store.destroy(T::KIND, &r.metadata.id);
            }
        }
        for (id, spec) in desired {
            changed |= self.store.put(T::KIND, id, Arc::new(spec)) != Written::Unchanged;
        }
        Ok(changed)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{kind, Secrets};
    use super::*;

    #[derive(Debug, Clone, PartialEq)]
    pub struct Hostname(pub String);
    impl Spec for Hostname {
        const KIND: &'static Kind = kind::HOSTNAME;
        fn to_yaml(&self, _: Secrets) -> String {
            format!("hostname: {}\n", self.0)
        }
    }

    #[derive(Debug, Clone, PartialEq)]
    pub struct Link(pub u32);
    impl Spec for Link {
        const KIND: &'static Kind = kind::LINKS;
        fn to_yaml(&self, _: Secrets) -> String {
            format!("index: {}\n", self.0)
        }
    }

    #[test]
    fn versions_bump_only_on_change() {
        let store = Store::new();
        let w = store.writer("test", &[kind::HOSTNAME]).unwrap();
        assert_eq!(
            w.put("hostname", Hostname("a".into())).unwrap(),
            Written::Created
        );
        let first = store.get(kind::HOSTNAME, "hostname").unwrap();
        assert_eq!(first.metadata.version, 1);
        assert_eq!(first.metadata.namespace, "network");
        assert_eq!(
            w.put("hostname", Hostname("a".into())).unwrap(),
            Written::Unchanged
        );
        assert_eq!(
            store
                .get(kind::HOSTNAME, "hostname")
                .unwrap()
                .metadata
                .version,
            1
        );
        assert_eq!(
            w.put("hostname", Hostname("b".into())).unwrap(),
            Written::Updated
        );
        let second = store.get(kind::HOSTNAME, "hostname").unwrap();
        assert_eq!(second.metadata.version, 2);
        assert_eq!(second.metadata.created, first.metadata.created);
        assert!(second.metadata.updated >= first.metadata.updated);
        assert_eq!(
            store.spec::<Hostname>("hostname"),
            Some(Hostname("b".into()))
        );
    }

    #[test]
    fn one_writer_per_type_and_only_declared_outputs() {
        let store = Store::new();
        let w = store.writer("network", &[kind::LINKS]).unwrap();
        assert_eq!(
            store
                .writer("intruder", &[kind::HOSTNAME, kind::LINKS])
                .err(),
            Some(StoreError::AlreadyOwned {
                kind: "links",
                owner: "network",
                claimant: "intruder"
            })
        );
        // The failed claim took nothing.
        assert_eq!(store.owner(kind::HOSTNAME), None);
        assert_eq!(
            w.put("h", Hostname("x".into())).unwrap_err(),
            StoreError::NotAnOutput {
                owner: "network",
                kind: "hostname"
            }
        );
        assert!(store.get(kind::HOSTNAME, "h").is_none());
    }

    #[test]
    fn reconcile_removes_stale_and_lists_by_id() {
        let store = Store::new();
        let w = store.writer("network", &[kind::LINKS]).unwrap();
        let h = store.writer("node", &[kind::HOSTNAME]).unwrap();
        h.put("hostname", Hostname("n".into())).unwrap();
        assert!(w
            .reconcile([
                ("lo".to_string(), Link(1)),
                ("eth0".to_string(), Link(2)),
                ("eth1".to_string(), Link(3))
            ])
            .unwrap());
        let ids: Vec<_> = store
            .list(kind::LINKS)
            .into_iter()
            .map(|r| r.metadata.id)
            .collect();
        assert_eq!(ids, vec!["eth0", "eth1", "lo"]);
        assert!(w
            .reconcile([("lo".to_string(), Link(1)), ("eth0".to_string(), Link(7))])
            .unwrap());
        let links = store.specs::<Link>();
        assert_eq!(
            links,
            vec![("eth0".to_string(), Link(7)), ("lo".to_string(), Link(1))]
        );
        assert_eq!(store.get(kind::LINKS, "eth0").unwrap().metadata.version, 2);
        assert_eq!(store.get(kind::LINKS, "lo").unwrap().metadata.version, 1);
        // Nothing to do the second time; other types untouched.
        assert!(!w
            .reconcile([("lo".to_string(), Link(1)), ("eth0".to_string(), Link(7))])
            .unwrap());
        assert_eq!(store.list(kind::HOSTNAME).len(), 1);
        assert!(w.destroy::<Link>("lo").unwrap());
        assert!(!w.destroy::<Link>("lo").unwrap());
    }
}
