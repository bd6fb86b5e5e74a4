//! The cluster add-ons Cairn deploys: plain Kubernetes objects (JSON, the
//! way `kubectl apply` takes them) that machined's bootstrap applies with
//! server-side apply on a control plane once the API server answers, after
//! the core objects (RBAC, kube-proxy, DNS).
//!
//! Each add-on is a module with `objects(cfg) -> Vec<Value>`; an add-on
//! turned off in `cluster.addons.<name>.enabled` contributes nothing. The
//! images are in the payload's image cache (`cairn.local/...`), so nothing
//! is pulled. Every add-on runs in `kube-system` under its own
//! ServiceAccount with least-privilege RBAC, with requests and limits.
//!
//! Keeping them here, outside machined, lets the add-ons' own crates and
//! tests use the same objects machined applies.

use config::MachineConfig;
use serde_json::Value;

mod common;
pub mod dashboard;
pub mod logging;
pub mod metrics_server;
pub mod prometheus;
pub mod tls;

/// Namespace of every add-on.
pub const NAMESPACE: &str = "kube-system";

/// Every enabled add-on's objects, in apply order (accounts and RBAC of
/// each add-on before its workloads). Each add-on's module appends its
/// objects here when `cfg.cluster.addons.<name>.enabled`.
pub fn objects(cfg: &MachineConfig) -> Vec<Value> {
    let addons = &cfg.cluster.addons;
    let mut v = Vec::new();
    if addons.metrics_server.enabled {
        v.extend(metrics_server::objects(cfg));
    }
    if addons.prometheus.enabled {
        v.extend(prometheus::objects(cfg));
    }
    if addons.dashboard.enabled {
        v.extend(dashboard::objects(cfg));
    }
    if addons.logging.enabled {
        v.extend(logging::objects(cfg));
    }
    v
}

/// The serving certificates of the enabled add-ons that need one (see
/// [`tls`]): machined creates each Secret ([`tls::secret`]) when it is
/// absent or no longer [`tls::is_current`], before [`objects`].
pub fn serving_certs(cfg: &MachineConfig) -> Vec<tls::ServingCert> {
    let addons = &cfg.cluster.addons;
    let mut v = Vec::new();
    if addons.metrics_server.enabled {
        v.push(metrics_server::serving_cert(cfg));
    }
    if addons.dashboard.enabled {
        v.push(dashboard::serving_cert(cfg));
    }
    v
}
