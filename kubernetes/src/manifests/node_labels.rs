//! The Node object's labels and taints follow `machine.kubelet.nodeLabels`
//! and `nodeTaints` on a running node. The kubelet's `--node-labels` and
//! `--register-with-taints` count only when the Node registers, so a label
//! or taint added or removed by a live apply would otherwise never reach
//! the API.
//!
//! Labels: machined server-side applies them under a field manager of its
//! own: the API server then removes the labels this manager applied before
//! and the config no longer names, and leaves every other label (the
//! kubelet's, the role labels, a user's) alone.
//!
//! Taints: `spec.taints` is an atomic list for server-side apply, so owning
//! it would wipe the taints others set (the node controller's `not-ready`,
//! a user's). machined instead records the taints it set in an annotation
//! ([`OWNED_TAINTS`]) and replaces the list in a patch that carries the
//! Node's resource version (a compare-and-swap: a Node changed meanwhile
//! fails the patch, which is retried): the config's taints in, the ones it
//! set before and the config no longer names out, the rest kept.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use config::constants::k8s;
use config::spec::MachineType;
use kube::api::{Api, Patch, PatchParams};
use kube::Client;
use serde_json::{json, Value};

use runtime::resources::{kind, Filter, Watch};
use runtime::Runtime;

/// The field manager that owns the config's node labels.
pub const FIELD_MANAGER: &str = "cairn-machined-node-labels";

/// The apply document for Node `name` with exactly `labels` from us, for
/// the Node at `resource_version`: an apply with a resource version fails
/// when the object changed or is gone instead of creating it.
pub fn apply_doc(name: &str, labels: &BTreeMap<String, String>, resource_version: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": labels, "resourceVersion": resource_version},
    })
}

/// The annotation naming the taints machined set (`key:Effect`, comma
/// separated), so a later config can remove them and only them.
pub const OWNED_TAINTS: &str = "cairn.dev/owned-taints";

/// A taint as the Node's spec lists it; (key, effect) is its identity.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Taint {
    pub key: String,
    pub value: String,
    pub effect: String,
}

impl Taint {
    fn id(&self) -> String {
        format!("{}:{}", self.key, self.effect)
    }
}

/// The taints the running config asks for: `nodeTaints`, and on a control
/// plane that does not take workloads the `master` role's `NoSchedule` (as
/// the kubelet registers them, see [`crate::kubelet`]).
pub fn desired_taints(cfg: &config::MachineConfig) -> BTreeSet<Taint> {
    let mut taints: BTreeSet<Taint> = cfg
        .machine
        .kubelet
        .node_taints
        .iter()
        .filter_map(|(k, v)| {
            let (value, effect) = v.as_str().rsplit_once(':')?;
            Some(Taint {
                key: k.to_string(),
                value: value.to_string(),
                effect: effect.to_string(),
            })
        })
        .collect();
    if cfg.machine.machine_type == MachineType::Controlplane
        && !cfg.cluster.allow_scheduling_on_control_planes
    {
        taints.insert(Taint {
            key: "node-role.kubernetes.io/master".into(),
            value: String::new(),
            effect: "NoSchedule".into(),
        });
    }
    taints
}

/// The Node's taints once the config's are in force: `current` (as the API
/// server returned them, every field kept) without those in `owned` (what
/// machined set before) that `desired` no longer names and without stale
/// versions of desired ones, then `desired`. `None` when nothing changes.
pub fn merged_taints(
    current: &[Value],
    owned: &BTreeSet<String>,
    desired: &BTreeSet<Taint>,
) -> Option<Vec<Value>> {
    let id_of = |t: &Value| {
        format!(
            "{}:{}",
            t["key"].as_str().unwrap_or(""),
            t["effect"].as_str().unwrap_or("")
        )
    };
    let wanted: BTreeMap<String, &Taint> = desired.iter().map(|t| (t.id(), t)).collect();
    let is_current = |t: &Value| {
        wanted
            .get(&id_of(t))
            .is_some_and(|d| t["value"].as_str().unwrap_or("") == d.value)
    };
    let mut taints: Vec<Value> = current
        .iter()
        .filter(|t| {
            let id = id_of(t);
            match wanted.get(&id) {
                // Asked for: kept as it is, or replaced below when its
                // value changed.
                Some(_) => is_current(t),
                // Not asked for: gone if we set it, else someone else's.
                None => !owned.contains(&id),
            }
        })
        .cloned()
        .collect();
    for (id, t) in &wanted {
        if !taints.iter().any(|c| id_of(c) == *id) {
            let mut v = json!({"key": t.key, "effect": t.effect});
            if !t.value.is_empty() {
                v["value"] = json!(t.value);
            }
            taints.push(v);
        }
    }
    (taints.as_slice() != current).then_some(taints)
}

/// The merge patch that sets `taints` and the record of ours, if the Node
/// is still at `resource_version`.
pub fn taints_patch(taints: &[Value], desired: &BTreeSet<Taint>, resource_version: &str) -> Value {
    let owned: Vec<String> = desired.iter().map(Taint::id).collect();
    json!({
        "metadata": {
            "resourceVersion": resource_version,
            "annotations": {OWNED_TAINTS: owned.join(",")},
        },
        "spec": {"taints": taints},
    })
}

/// The labels the running config asks for.
pub fn desired(cfg: &config::MachineConfig) -> BTreeMap<String, String> {
    cfg.machine
        .kubelet
        .node_labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

async fn client_for(control_plane: bool) -> Result<Client, super::ManifestsError> {
    if control_plane {
        super::client_at(
            Path::new(k8s::ADMIN_KUBECONFIG),
            Some(&super::local_api_server()),
        )
        .await
    } else {
        // A worker's own identity may label its own Node.
        super::client(Path::new(k8s::KUBELET_KUBECONFIG)).await
    }
}

/// Keeps the Node's labels current for as long as machined runs: after
/// every change of the config or the hostname, and again with backoff
/// while the API server or the Node is not there yet.
pub async fn follow(node: Runtime) {
    let filter = Filter {
        kinds: vec![kind::MACHINE_CONFIG, kind::HOSTNAME],
        id: None,
    };
    let mut watch = Watch::new(&node.store, filter, false);
    type Wanted = (String, BTreeMap<String, String>, BTreeSet<Taint>);
    let mut applied: Option<Wanted> = None;
    let mut delay = Duration::from_secs(2);
    loop {
        let wanted = node.running_config().map(|cfg| {
            let w: Wanted = (node.hostname(), desired(&cfg), desired_taints(&cfg));
            (w, cfg)
        });
        let mut retry = false;
        if let Some((wanted, cfg)) = wanted {
            if applied.as_ref() != Some(&wanted) {
                let control_plane = cfg.machine.machine_type == MachineType::Controlplane;
                let (name, labels, taints) = &wanted;
                match apply(control_plane, name, labels, taints).await {
                    Ok(()) => {
                        let list = |v: Vec<String>| {
                            if v.is_empty() {
                                "none".to_string()
                            } else {
                                v.join(", ")
                            }
                        };
                        runtime::console!(
                            "kubernetes: node {name} labels from the config: {}; taints: {}",
                            list(labels.keys().cloned().collect()),
                            list(taints.iter().map(Taint::id).collect())
                        );
                        applied = Some(wanted);
                        delay = Duration::from_secs(2);
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "node labels and taints not applied yet");
                        retry = true;
                    }
                }
            }
        }
        if retry {
            let _ = tokio::time::timeout(delay, watch.next()).await;
            delay = (delay * 2).min(Duration::from_secs(30));
        } else {
            watch.next().await;
        }
    }
}

async fn apply(
    control_plane: bool,
    name: &str,
    labels: &BTreeMap<String, String>,
    taints: &BTreeSet<Taint>,
) -> Result<(), String> {
    let client = client_for(control_plane).await.map_err(|e| e.to_string())?;
    let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(client);
    // Only a Node the kubelet registered. A server-side apply creates what
    // is missing: a Node with labels and no status, which the 1.20 kubelet
    // then found at registration and panicked on (a nil capacity map in
    // reconcileHugePageResource) at every start, so the node never went
    // Ready (CI saw it 40 times in a row).
    let node = nodes
        .get_opt(name)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("node {name} has not registered yet"))?;
    let version = node.metadata.resource_version.clone().unwrap_or_default();
    let node = nodes
        .patch(
            name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(apply_doc(name, labels, &version)),
        )
        .await
        .map_err(|e| e.to_string())?;

    let current: Vec<Value> = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .map(|t| {
            t.iter()
                .filter_map(|t| serde_json::to_value(t).ok())
                .collect()
        })
        .unwrap_or_default();
    // Before machined first recorded its taints, the kubelet registered
    // the config's: those are ours.
    let ours = taints.iter().map(Taint::id).collect::<Vec<_>>().join(",");
    let recorded = node
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(OWNED_TAINTS))
        .cloned();
    let owned: BTreeSet<String> = recorded
        .as_deref()
        .unwrap_or(&ours)
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    let recorded = recorded.as_deref() == Some(ours.as_str());
    let merged = merged_taints(&current, &owned, taints);
    if merged.is_none() && recorded {
        return Ok(());
    }
    let version = node.metadata.resource_version.unwrap_or_default();
    let patch = taints_patch(&merged.unwrap_or(current), taints, &version);
    nodes
        .patch(name, &PatchParams::default(), &Patch::Merge(patch))
        .await
        .map(drop)
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_apply_document_names_only_the_configs_labels() {
        let mut cfg = crate::testutil::machine_config();
        cfg.machine
            .kubelet
            .node_labels
            .insert("example.com/zone".parse().unwrap(), "a".parse().unwrap());
        let doc = apply_doc("cp1", &desired(&cfg), "42");
        assert_eq!(
            doc,
            json!({"apiVersion": "v1", "kind": "Node",
                   "metadata": {"name": "cp1", "labels": {"example.com/zone": "a"},
                                "resourceVersion": "42"}})
        );
        // No labels: an empty map, so the API server drops the ones we set.
        let none = apply_doc("cp1", &BTreeMap::new(), "42");
        assert_eq!(none["metadata"]["labels"], json!({}));
    }

    fn taint(key: &str, value: &str, effect: &str) -> Taint {
        Taint {
            key: key.into(),
            value: value.into(),
            effect: effect.into(),
        }
    }

    #[test]
    fn the_configs_taints_and_the_masters_on_a_control_plane_without_workloads() {
        let mut cfg = crate::testutil::machine_config();
        cfg.machine.kubelet.node_taints.insert(
            "example.com/gpu".parse().unwrap(),
            "true:NoSchedule".parse().unwrap(),
        );
        cfg.machine.machine_type = MachineType::Controlplane;
        cfg.cluster.allow_scheduling_on_control_planes = false;
        let t = desired_taints(&cfg);
        assert!(
            t.contains(&taint("example.com/gpu", "true", "NoSchedule")),
            "{t:?}"
        );
        assert!(
            t.contains(&taint("node-role.kubernetes.io/master", "", "NoSchedule")),
            "{t:?}"
        );
        cfg.cluster.allow_scheduling_on_control_planes = true;
        assert_eq!(desired_taints(&cfg).len(), 1);
    }

    #[test]
    fn ours_no_longer_asked_for_go_others_stay_new_ones_come() {
        let current = vec![
            json!({"key": "example.com/old", "value": "x", "effect": "NoSchedule"}),
            json!({"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule",
                   "timeAdded": "2026-12-07T10:00:00Z"}),
            json!({"key": "users.example/keep", "effect": "NoExecute"}),
        ];
        let owned: BTreeSet<String> = ["example.com/old:NoSchedule".to_string()].into();
        let desired: BTreeSet<Taint> = [taint("example.com/new", "", "PreferNoSchedule")].into();
        let merged = merged_taints(&current, &owned, &desired).expect("a change");
        assert_eq!(
            merged,
            vec![
                current[1].clone(),
                current[2].clone(),
                json!({"key": "example.com/new", "effect": "PreferNoSchedule"}),
            ],
            "the node controller's taint (with its timeAdded) and a user's stay"
        );
        // Applied again: nothing changes.
        let owned: BTreeSet<String> = ["example.com/new:PreferNoSchedule".to_string()].into();
        assert_eq!(merged_taints(&merged, &owned, &desired), None);
    }

    #[test]
    fn a_taint_whose_value_changed_is_replaced_and_a_users_taint_with_our_key_is_kept_unless_asked()
    {
        let current = vec![json!({"key": "example.com/gpu", "value": "a", "effect": "NoSchedule"})];
        let desired: BTreeSet<Taint> = [taint("example.com/gpu", "b", "NoSchedule")].into();
        let merged = merged_taints(&current, &BTreeSet::new(), &desired).unwrap();
        assert_eq!(
            merged,
            vec![json!({"key": "example.com/gpu", "value": "b", "effect": "NoSchedule"})]
        );
        // Not ours, not asked for: left alone.
        assert_eq!(
            merged_taints(&current, &BTreeSet::new(), &BTreeSet::new()),
            None
        );
        let patch = taints_patch(&merged, &desired, "7");
        assert_eq!(patch["metadata"]["resourceVersion"], "7");
        assert_eq!(
            patch["metadata"]["annotations"][OWNED_TAINTS],
            "example.com/gpu:NoSchedule"
        );
    }
}
