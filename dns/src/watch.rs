//! Keeps the zone snapshot in step with the cluster: kube-rs watchers with reflectors
//! over Services and Endpoints of every namespace, and a rebuild of the zone shortly
//! after any change.
//!
//! Why core/v1 Endpoints and not EndpointSlices: the cluster runs Kubernetes 1.20, which
//! serves EndpointSlices only as discovery.k8s.io/v1beta1, and the oldest API version
//! the current k8s-openapi supports is 1.33 (discovery.k8s.io/v1 only). 1.20 serves
//! core/v1 Endpoints, whose shape has not changed since, so those are what is watched.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Endpoints, Service};
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client, Resource, ResourceExt};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::zone::{Zone, ZoneSettings};

/// Changes arriving within this window are folded into one rebuild.
const DEBOUNCE: Duration = Duration::from_millis(100);

/// Watches the cluster and publishes a new zone after changes. `ready` turns true once
/// both watchers completed their first full list and the zone reflects it.
pub async fn run(
    client: Client,
    settings: ZoneSettings,
    zone_tx: watch::Sender<Option<Arc<Zone>>>,
    ready: Arc<AtomicBool>,
    shutdown: CancellationToken,
) -> Result<(), WatchError> {
    let (services, services_writer) = reflector::store::<Service>();
    let (endpoints, endpoints_writer) = reflector::store::<Endpoints>();
    let config = watcher::Config::default();
    let service_events = watcher::watcher(Api::<Service>::all(client.clone()), config.clone())
        .default_backoff()
        .modify(slim)
        .reflect(services_writer);
    let endpoint_events = watcher::watcher(Api::<Endpoints>::all(client), config)
        .default_backoff()
        .modify(slim)
        .reflect(endpoints_writer);
    let mut service_events = std::pin::pin!(service_events);
    let mut endpoint_events = std::pin::pin!(endpoint_events);

    let (mut services_synced, mut endpoints_synced) = (false, false);
    let mut rebuild_at: Option<tokio::time::Instant> = None;
    loop {
        let changed = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            event = service_events.next() => note("services", event, &mut services_synced)?,
            event = endpoint_events.next() => note("endpoints", event, &mut endpoints_synced)?,
            _ = sleep_until(rebuild_at) => {
                rebuild_at = None;
                publish(&settings, &services, &endpoints, &zone_tx);
                if !ready.swap(true, Ordering::Relaxed) {
                    tracing::info!(services = services.len(), endpoints = endpoints.len(), "first sync complete; ready");
                }
                continue;
            }
        };
        if changed && services_synced && endpoints_synced && rebuild_at.is_none() {
            rebuild_at = Some(tokio::time::Instant::now() + DEBOUNCE);
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// The watcher retries errors with a backoff, so its stream never ends by design;
    /// if it does, the zone would go stale silently: better to exit and be restarted.
    #[error("the watch of {kind} ended")]
    Ended { kind: &'static str },
}

/// Records what one watcher event means; returns whether the zone may have changed.
fn note<K: Resource>(
    kind: &'static str,
    event: Option<Result<Event<K>, watcher::Error>>,
    synced: &mut bool,
) -> Result<bool, WatchError> {
    Ok(match event {
        Some(Ok(Event::InitDone)) => {
            if !*synced {
                tracing::info!(kind, "initial list complete");
            }
            *synced = true;
            true
        }
        Some(Ok(Event::Init | Event::InitApply(_))) => false,
        Some(Ok(Event::Apply(_) | Event::Delete(_))) => true,
        Some(Err(err)) => {
            // The backoff retries; the last good zone stays in service meanwhile.
            tracing::warn!(kind, %err, "watch failed; retrying");
            false
        }
        None => return Err(WatchError::Ended { kind }),
    })
}

fn publish(
    settings: &ZoneSettings,
    services: &Store<Service>,
    endpoints: &Store<Endpoints>,
    zone_tx: &watch::Sender<Option<Arc<Zone>>>,
) {
    let services = services.state();
    let endpoints = endpoints.state();
    let zone = Zone::build(
        settings,
        services.iter().map(|s| s.as_ref()),
        endpoints.iter().map(|e| e.as_ref()),
    );
    tracing::debug!(
        services = services.len(),
        endpoints = endpoints.len(),
        "zone rebuilt"
    );
    zone_tx.send_replace(Some(Arc::new(zone)));
}

/// Drops what the zone never reads before objects enter the reflector's cache, to keep
/// the resident memory small in clusters with large annotations.
fn slim<K: ResourceExt>(object: &mut K) {
    object.managed_fields_mut().clear();
    object.annotations_mut().clear();
    object.labels_mut().clear();
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Connects with the in-cluster configuration (the ServiceAccount token and CA, the
/// KUBERNETES_SERVICE_HOST/PORT environment), falling back to $KUBECONFIG for runs
/// outside a cluster.
pub async fn client() -> Result<Client, kube::Error> {
    Client::try_default().await
}
