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

/// Namespace of every add-on.
pub const NAMESPACE: &str = "kube-system";

/// Every enabled add-on's objects, in apply order (accounts and RBAC of
/// each add-on before its workloads). Each add-on's module appends its
/// objects here when `cfg.cluster.addons.<name>.enabled`.
pub fn objects(cfg: &MachineConfig) -> Vec<Value> {
    let _addons = &cfg.cluster.addons;
    Vec::new()
}
