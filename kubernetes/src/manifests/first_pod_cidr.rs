//! The first control plane's podCIDR, claimed as soon as its Node exists.
//!
//! A node is Ready only once its CNI config is written, and that needs the
//! Node's podCIDR, which the controller-manager's node IPAM assigns. On the
//! first node of a new cluster the controller-manager is started only once
//! the API server answers, and under emulation it takes a minute or more
//! to get that far (it starts every controller, each with its own service
//! account token, before its informers run). So machined gives the first
//! node the very subnet node IPAM would: the first `/<mask>` of the
//! cluster's Pod network. Node IPAM takes a podCIDR it finds set as
//! occupied, so nothing is allocated twice; with any other Node present
//! nothing is claimed (node IPAM may be handing out subnets already), and
//! a podCIDR already set is never touched (it is immutable anyway).

use std::time::Duration;

use config::MachineConfig;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::Client;

/// node IPAM's default IPv4 mask size (`--node-cidr-mask-size`).
const DEFAULT_MASK: u8 = 24;
/// How long to wait for this node's Node object.
const WAIT_FOR_NODE: Duration = Duration::from_secs(300);

/// The subnet node IPAM would give the first node of a cluster with `cfg`,
/// or None when it is not clear-cut (dual stack, IPv6, a mask the Pod
/// network cannot hold).
pub fn first_subnet(cfg: &MachineConfig) -> Option<ipnet::IpNet> {
    let subnets = &cfg.cluster.network.pod_subnets;
    let [only] = subnets.as_slice() else {
        return None;
    };
    let ipnet::IpNet::V4(net) = only.net() else {
        return None;
    };
    let args = &cfg.cluster.controller_manager.extra_args;
    let mask = ["node-cidr-mask-size-ipv4", "node-cidr-mask-size"]
        .iter()
        .find_map(|name| {
            args.iter()
                .find(|(k, _)| k.as_str() == *name)
                .map(|(_, v)| v.as_str().parse::<u8>().ok())
        })
        .unwrap_or(Some(DEFAULT_MASK))?;
    if mask < net.prefix_len() || mask > 32 {
        return None;
    }
    net.subnets(mask).ok()?.next().map(ipnet::IpNet::V4)
}

/// Claims [`first_subnet`] for the Node `me` when it is the cluster's only
/// Node and has no podCIDR yet; says what it did on the console.
pub async fn claim(client: Client, cfg: MachineConfig, me: String) {
    let Some(subnet) = first_subnet(&cfg) else {
        return;
    };
    let nodes: Api<Node> = Api::all(client);
    let waited = tokio::time::timeout(WAIT_FOR_NODE, async {
        loop {
            if let Ok(list) = nodes.list(&ListParams::default()).await {
                if list
                    .items
                    .iter()
                    .any(|n| n.metadata.name.as_ref() == Some(&me))
                {
                    return list.items;
                }
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    })
    .await;
    let Ok(items) = waited else {
        return;
    };
    let has_cidr = |n: &Node| n.spec.as_ref().and_then(|s| s.pod_cidr.as_ref()).is_some();
    if items.len() != 1 || items.iter().any(has_cidr) {
        return;
    }
    let patch = serde_json::json!({
        "spec": {"podCIDR": subnet.to_string(), "podCIDRs": [subnet.to_string()]}
    });
    match nodes
        .patch(&me, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => runtime::console!(
            "kubernetes: node {me} is the cluster's first: podCIDR {subnet} (node IPAM's first subnet, claimed before the controller-manager is up)"
        ),
        // The controller-manager was first: its subnet stands.
        Err(e) => tracing::info!(error = %e, "podCIDR not claimed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(yaml_patch: &str) -> MachineConfig {
        let mut c = crate::testutil::machine_config();
        let patch: serde_yaml::Value = serde_yaml::from_str(yaml_patch).unwrap();
        if let Some(subnets) = patch.get("podSubnets") {
            c.cluster.network.pod_subnets = serde_yaml::from_value(subnets.clone()).unwrap();
        }
        if let Some(args) = patch.get("extraArgs") {
            c.cluster.controller_manager.extra_args = serde_yaml::from_value(args.clone()).unwrap();
        }
        c
    }

    #[test]
    fn the_first_subnet_is_node_ipams_first() {
        let first = |p: &str| first_subnet(&cfg(p)).map(|n| n.to_string());
        assert_eq!(first("{}").as_deref(), Some("10.244.0.0/24"));
        assert_eq!(
            first("{podSubnets: [10.32.0.0/12]}").as_deref(),
            Some("10.32.0.0/24")
        );
        assert_eq!(
            first("{extraArgs: {node-cidr-mask-size: '26'}}").as_deref(),
            Some("10.244.0.0/26")
        );
        assert_eq!(
            first("{extraArgs: {node-cidr-mask-size-ipv4: '25'}}").as_deref(),
            Some("10.244.0.0/25")
        );
        // Not clear-cut: no claim.
        assert_eq!(first("{extraArgs: {node-cidr-mask-size: '12'}}"), None);
        assert_eq!(first("{extraArgs: {node-cidr-mask-size: x}}"), None);
        assert_eq!(first("{podSubnets: ['fd00::/48']}"), None);
        assert_eq!(first("{podSubnets: [10.244.0.0/16, 'fd00::/48']}"), None);
    }
}
