//! Who apid may forward calls to: the control-plane endpoint and every
//! node the API server lists (the `members` resource). machined writes
//! them into apid's settings, which apid reloads, so `cairnctl -n <worker>`
//! through a control plane works once the worker's Node exists, and stops
//! working for a node that was deleted.

use std::sync::{Arc, Weak};

use config::MachineConfig;
use kubernetes::members::MemberSpec;
use runtime::resources::{kind, Filter, Store, Watch};

use crate::secure::ApidSettingsFile;
use crate::state::Node;

/// The hosts apid may forward to besides its own names, sorted.
pub fn hosts(store: &Store, config: &MachineConfig) -> Vec<String> {
    let mut hosts: Vec<String> = store
        .specs::<MemberSpec>()
        .into_iter()
        .flat_map(|(_, m)| m.addresses)
        .collect();
    let endpoint = config.cluster.control_plane.endpoint.host();
    if !endpoint.is_empty() {
        hosts.push(
            endpoint
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
        );
    }
    hosts.sort();
    hosts.dedup();
    hosts
}

/// Keeps the members in apid's settings (in `dir`) current while the node
/// runs a config.
pub async fn follow(node: Weak<Node>, file: Arc<ApidSettingsFile>) {
    let Some(store) = node.upgrade().map(|n| n.store.clone()) else {
        return;
    };
    let filter = Filter {
        kinds: vec![kind::MEMBERS, kind::MACHINE_CONFIG],
        id: None,
    };
    let mut watch = Watch::new(&store, filter, false);
    loop {
        let want = node
            .upgrade()
            .and_then(|n| n.running_config())
            .map(|c| hosts(&store, &c));
        if let Some(want) = want {
            let file = file.clone();
            let count = want.len();
            let written = tokio::task::spawn_blocking(move || {
                file.update(|s| {
                    let changed = s.members != want;
                    s.members = want;
                    changed
                })
            })
            .await;
            match written {
                Ok(Ok(true)) => tracing::info!(members = count, "apid: cluster members updated"),
                Ok(Ok(false)) => {}
                Ok(Err(e)) => runtime::console!("apid: cannot write the cluster's members: {e}"),
                Err(e) => tracing::warn!(error = %e, "apid members task"),
            }
        }
        watch.next().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use runtime::resources::Store;

    #[test]
    fn the_endpoint_and_every_listed_node_address() {
        let store = Store::new();
        let w = store.writer("members", &[kind::MEMBERS]).unwrap();
        let member = |a: &[&str]| MemberSpec {
            addresses: a.iter().map(|s| s.to_string()).collect(),
            control_plane: false,
            ready: true,
        };
        w.put("worker-1", member(&["10.5.0.10", "192.0.2.7"]))
            .unwrap();
        w.put("cp-1", member(&["10.5.0.2"])).unwrap();
        let (cfg, _) = config::generate::sample_controlplane();
        let endpoint = cfg.cluster.control_plane.endpoint.host().to_string();
        let mut want = vec![
            "10.5.0.10".to_string(),
            "192.0.2.7".into(),
            "10.5.0.2".into(),
            endpoint,
        ];
        want.sort();
        want.dedup();
        assert_eq!(hosts(&store, &cfg), want);
    }
}
