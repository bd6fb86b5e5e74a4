//! The scrape loop: every interval, list the Nodes and the Pods' metadata
//! from the API server, read every kubelet's `/metrics/resource` at once,
//! and publish a new [`Snapshot`] that the API handlers read without
//! locking out the next scrape.
//!
//! A kubelet that does not answer keeps its window for a few rounds
//! ([`KEEP_ROUNDS`]: a busy or emulated node that misses one scrape does
//! not drop out of `kubectl top` and the autoscalers, and the next answer
//! has a point to make a rate with); after that its figures are gone, so
//! nothing older than that is served. The error is logged with the node's
//! name. A failed Node or Pod list keeps the previous snapshot.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams};

use crate::kubelet::{KubeletClient, Target};
use crate::prom_text;
use crate::store::NodeWindow;

/// The kubelet path of the resource metrics (Kubernetes 1.18 and later).
pub const RESOURCE_PATH: &str = "/metrics/resource";

/// How many scrape intervals a node's last answer is served for while its
/// kubelet does not answer.
pub const KEEP_ROUNDS: i64 = 3;

/// What the API serves for one node.
#[derive(Debug, Clone, Default)]
pub struct NodeEntry {
    pub labels: BTreeMap<String, String>,
    pub window: NodeWindow,
    /// When the kubelet last answered (ms since the epoch; 0: never).
    pub answered_ms: i64,
}

/// A node's window after its kubelet did not answer at `now_ms`: the last
/// one while it is younger than `keep_ms`, else none.
fn window_after_failure(prev: Option<&NodeEntry>, now_ms: i64, keep_ms: i64) -> (NodeWindow, i64) {
    match prev {
        Some(p) if p.answered_ms > 0 && now_ms - p.answered_ms <= keep_ms => {
            (p.window.clone(), p.answered_ms)
        }
        _ => (NodeWindow::default(), 0),
    }
}

/// A pod's identity and labels.
#[derive(Debug, Clone, Default)]
pub struct PodMeta {
    pub labels: BTreeMap<String, String>,
    /// The node the window that holds the pod's containers belongs to.
    pub node: String,
}

/// One consistent view, replaced as a whole after every scrape.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub nodes: BTreeMap<String, NodeEntry>,
    /// (namespace, name) of every Pod the API server lists.
    pub pods: BTreeMap<(String, String), PodMeta>,
    /// At least one scrape round has finished.
    pub scraped: bool,
}

/// The latest snapshot, shared by the scrape loop and the handlers.
#[derive(Clone, Default)]
pub struct Shared(Arc<RwLock<Arc<Snapshot>>>);

impl Shared {
    pub fn get(&self) -> Arc<Snapshot> {
        match self.0.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
    pub fn set(&self, s: Snapshot) {
        let mut g = match self.0.write() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        *g = Arc::new(s);
    }
}

/// How the scrape loop runs.
pub struct Scraper {
    pub client: kube::Client,
    pub kubelets: KubeletClient,
    /// Node address types in order of preference.
    pub address_types: Vec<String>,
    pub interval: Duration,
}

fn now_ms() -> i64 {
    let now = time::OffsetDateTime::now_utc();
    (now.unix_timestamp_nanos() / 1_000_000) as i64
}

impl Scraper {
    /// One round: the next snapshot after `prev`.
    pub async fn round(&self, prev: &Snapshot) -> Result<Snapshot, kube::Error> {
        let nodes = Api::<Node>::all(self.client.clone())
            .list(&ListParams::default())
            .await?;
        let pods = Api::<Pod>::all(self.client.clone())
            .list_metadata(&ListParams::default())
            .await?;
        let scrapes = nodes.items.iter().map(|node| async move {
            let name = node.metadata.name.clone().unwrap_or_default();
            let result = match Target::of(node, &self.address_types) {
                Ok(t) => self
                    .kubelets
                    .get(&t, RESOURCE_PATH)
                    .await
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            (
                name,
                node.metadata.labels.clone().unwrap_or_default(),
                result,
            )
        });
        let results = futures::future::join_all(scrapes).await;
        let now = now_ms();
        let mut next = Snapshot {
            scraped: true,
            ..Default::default()
        };
        let keep_ms = self.interval.as_millis() as i64 * KEEP_ROUNDS;
        for (name, labels, result) in results {
            let last = prev.nodes.get(&name);
            let (window, answered_ms) =
                match result.and_then(|text| prom_text::parse(&text).map_err(|e| e.to_string())) {
                    Ok(samples) => (
                        last.map(|e| &e.window)
                            .cloned()
                            .unwrap_or_default()
                            .update(&samples, now),
                        now,
                    ),
                    Err(e) => {
                        let kept = window_after_failure(last, now, keep_ms);
                        tracing::warn!(node = %name, error = %e, serving_last = kept.1 > 0,
                        "cannot read the kubelet's resource metrics");
                        kept
                    }
                };
            next.nodes.insert(
                name,
                NodeEntry {
                    labels,
                    window,
                    answered_ms,
                },
            );
        }
        let mut where_: BTreeMap<(String, String), String> = BTreeMap::new();
        for (node, entry) in &next.nodes {
            for key in entry.window.containers.keys() {
                where_.insert((key.namespace.clone(), key.pod.clone()), node.clone());
            }
        }
        for p in pods.items {
            let key = (
                p.metadata.namespace.clone().unwrap_or_default(),
                p.metadata.name.clone().unwrap_or_default(),
            );
            let node = where_.get(&key).cloned().unwrap_or_default();
            next.pods.insert(
                key,
                PodMeta {
                    labels: p.metadata.labels.unwrap_or_default(),
                    node,
                },
            );
        }
        Ok(next)
    }

    /// Scrapes forever, publishing into `shared`.
    pub async fn run(self, shared: Shared) {
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let prev = shared.get();
            match self.round(&prev).await {
                Ok(next) => {
                    tracing::debug!(nodes = next.nodes.len(), pods = next.pods.len(), "scraped");
                    shared.set(next);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot list Nodes or Pods; keeping the last figures")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Point, Series};

    fn answered(at_ms: i64) -> NodeEntry {
        let window = NodeWindow {
            node: Series {
                cpu: None,
                memory: Some(Point { value: 1.0, at_ms }),
            },
            ..Default::default()
        };
        NodeEntry {
            labels: BTreeMap::new(),
            window,
            answered_ms: at_ms,
        }
    }

    #[test]
    fn a_missed_scrape_keeps_the_last_window_for_a_while_only() {
        let last = answered(100_000);
        let (w, at) = window_after_failure(Some(&last), 130_000, 45_000);
        assert_eq!(w, last.window, "one missed scrape keeps the figures");
        assert_eq!(at, 100_000, "and does not make them newer");
        let (w, at) = window_after_failure(Some(&last), 146_000, 45_000);
        assert_eq!(w, NodeWindow::default(), "too old: nothing is served");
        assert_eq!(at, 0);
        let (w, _) = window_after_failure(None, 146_000, 45_000);
        assert_eq!(
            w,
            NodeWindow::default(),
            "a node never answered has nothing"
        );
        let never = NodeEntry::default();
        assert_eq!(window_after_failure(Some(&never), 1, 45_000).1, 0);
    }
}
