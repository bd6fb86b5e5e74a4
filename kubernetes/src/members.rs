//! The `members` resource (namespace `k8s`): the cluster's nodes as the
//! API server lists them (id: the Node's name), read with the kubelet's
//! credentials every [`EVERY`]. machined gives their addresses to apid,
//! which forwards calls (`cairnctl -n <node>`) only to members; users see
//! them with `cairnctl get members`.
//!
//! Polling, not a watch: a node lists at most a few hundred small objects
//! every ten seconds, and a poll needs no resumption logic when the API
//! server restarts (which it does during bring-up and upgrades).

use std::path::PathBuf;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, ListParams};
use serde::Serialize;

use config::constants::k8s;
use runtime::resources::{kind, yaml_of, Controller, ControllerError, Input, Kind, Secrets};
use runtime::resources::{Spec, Writer};

use crate::manifests::CONTROL_PLANE_LABELS;

/// How often the Nodes are listed.
const EVERY: Duration = Duration::from_secs(10);

/// One node of the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MemberSpec {
    /// The Node's addresses (InternalIP first, then ExternalIP), without
    /// host names.
    pub addresses: Vec<String>,
    /// Whether the Node carries a control-plane role label.
    pub control_plane: bool,
    /// The Node's Ready condition is True.
    pub ready: bool,
}

impl Spec for MemberSpec {
    const KIND: &'static Kind = kind::MEMBERS;
    fn to_yaml(&self, _: Secrets) -> String {
        yaml_of(self)
    }
}

/// The members a list of Nodes describes, by Node name.
pub fn members_of(nodes: &[Node]) -> Vec<(String, MemberSpec)> {
    nodes
        .iter()
        .filter_map(|n| {
            let name = n.metadata.name.clone()?;
            let status = n.status.as_ref();
            let mut addresses: Vec<(u8, String)> = status
                .and_then(|s| s.addresses.as_ref())
                .into_iter()
                .flatten()
                .filter_map(|a| {
                    let rank = match a.type_.as_str() {
                        "InternalIP" => 0,
                        "ExternalIP" => 1,
                        _ => return None,
                    };
                    a.address
                        .parse::<std::net::IpAddr>()
                        .ok()
                        .map(|ip| (rank, ip.to_string()))
                })
                .collect();
            addresses.sort();
            addresses.dedup();
            let labels = n.metadata.labels.as_ref();
            let control_plane = CONTROL_PLANE_LABELS
                .iter()
                .any(|l| labels.is_some_and(|m| m.contains_key(*l)));
            let ready = status
                .and_then(|s| s.conditions.as_ref())
                .into_iter()
                .flatten()
                .any(|c| c.type_ == "Ready" && c.status == "True");
            Some((
                name,
                MemberSpec {
                    addresses: addresses.into_iter().map(|(_, a)| a).collect(),
                    control_plane,
                    ready,
                },
            ))
        })
        .collect()
}

/// Lists the Nodes with the kubelet's kubeconfig once it exists. A failed
/// list keeps the last members (an API server restarting does not make
/// every node a stranger).
#[derive(Clone)]
pub struct MembersController {
    pub kubeconfig: PathBuf,
}

impl Default for MembersController {
    fn default() -> Self {
        MembersController {
            kubeconfig: PathBuf::from(k8s::KUBELET_KUBECONFIG),
        }
    }
}

impl Controller for MembersController {
    fn name(&self) -> &'static str {
        "members"
    }

    fn inputs(&self) -> Vec<Input> {
        vec![Input::External("the API server's Nodes")]
    }

    fn outputs(&self) -> Vec<&'static Kind> {
        vec![kind::MEMBERS]
    }

    fn run(self, writer: Writer) -> BoxFuture<'static, Result<(), ControllerError>> {
        async move {
            let mut client = None;
            loop {
                if client.is_none() && self.kubeconfig.exists() {
                    match crate::manifests::client(&self.kubeconfig).await {
                        Ok(c) => client = Some(c),
                        Err(e) => tracing::debug!(error = %e, "members: no client yet"),
                    }
                }
                if let Some(c) = &client {
                    match Api::<Node>::all(c.clone())
                        .list(&ListParams::default())
                        .await
                    {
                        Ok(list) => {
                            writer.reconcile(members_of(&list.items))?;
                        }
                        Err(e) => tracing::debug!(error = %e, "members: cannot list the Nodes"),
                    }
                }
                tokio::time::sleep(EVERY).await;
            }
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{NodeAddress, NodeCondition, NodeStatus};
    use kube::api::ObjectMeta;

    fn node(name: &str, addrs: &[(&str, &str)], labels: &[&str], ready: bool) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some(
                    labels
                        .iter()
                        .map(|l| (l.to_string(), String::new()))
                        .collect(),
                ),
                ..Default::default()
            },
            status: Some(NodeStatus {
                addresses: Some(
                    addrs
                        .iter()
                        .map(|(t, a)| NodeAddress {
                            type_: t.to_string(),
                            address: a.to_string(),
                        })
                        .collect(),
                ),
                conditions: Some(vec![NodeCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn nodes_become_members_with_their_ip_addresses_roles_and_readiness() {
        let nodes = [
            node(
                "cp-1",
                &[("Hostname", "cp-1"), ("InternalIP", "10.5.0.2")],
                &["node-role.kubernetes.io/control-plane"],
                true,
            ),
            node(
                "worker-1",
                &[("ExternalIP", "192.0.2.7"), ("InternalIP", "10.5.0.10")],
                &[],
                false,
            ),
            node("bad", &[("InternalIP", "not-an-ip")], &[], true),
        ];
        let m = members_of(&nodes);
        assert_eq!(m.len(), 3);
        assert_eq!(m[0].0, "cp-1");
        assert_eq!(m[0].1.addresses, ["10.5.0.2"]);
        assert!(m[0].1.control_plane && m[0].1.ready);
        assert_eq!(m[1].1.addresses, ["10.5.0.10", "192.0.2.7"]);
        assert!(!m[1].1.control_plane && !m[1].1.ready);
        assert!(m[2].1.addresses.is_empty());
    }
}
