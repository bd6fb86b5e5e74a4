//! Approves the kubelets' serving certificates. Every kubelet asks for one
//! (`serverTLSBootstrap`: a CSR for signer `kubernetes.io/kubelet-serving`),
//! kube-controller-manager signs it with the cluster CA once approved, and
//! the API server then verifies the kubelet (`--kubelet-certificate-authority`)
//! for `kubectl logs`, `exec` and the metrics API. Kubernetes leaves the
//! approval to the cluster: a control plane's machined approves a request
//! only when it comes from the node it names (`system:node:<name>` in
//! `system:nodes`), for serving only, and for names and addresses that
//! Node has; a request naming anything else is denied with the reason.

use std::time::Duration;

use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestCondition,
};
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::Client;

/// The signer of kubelet serving certificates.
pub const KUBELET_SERVING: &str = "kubernetes.io/kubelet-serving";
/// How often pending requests are looked at.
const EVERY: Duration = Duration::from_secs(3);

/// What to do with one request.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    Approve,
    Deny(String),
    /// Not decidable yet (the Node has not registered); asked again later.
    Wait,
    /// Not ours to decide (another signer) or decided already.
    Skip,
}

fn decided(csr: &CertificateSigningRequest) -> bool {
    csr.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| {
            c.iter()
                .any(|c| c.type_ == "Approved" || c.type_ == "Denied")
        })
}

/// Decides on `csr`, given the Node it names (if it exists).
pub fn decide(csr: &CertificateSigningRequest, node: Option<&Node>) -> Decision {
    let spec = &csr.spec;
    if spec.signer_name != KUBELET_SERVING || decided(csr) {
        return Decision::Skip;
    }
    let user = spec.username.as_deref().unwrap_or_default();
    let Some(name) = user.strip_prefix("system:node:") else {
        return Decision::Deny(format!("requested by {user:?}, not by a node"));
    };
    if !spec
        .groups
        .as_ref()
        .is_some_and(|g| g.iter().any(|g| g == "system:nodes"))
    {
        return Decision::Deny(format!("{user} is not in group system:nodes"));
    }
    let usages = spec.usages.clone().unwrap_or_default();
    let allowed = ["digital signature", "key encipherment", "server auth"];
    if let Some(u) = usages.iter().find(|u| !allowed.contains(&u.as_str())) {
        return Decision::Deny(format!("usage {u:?} is not for serving"));
    }
    if !usages.iter().any(|u| u == "server auth") {
        return Decision::Deny("no server auth usage".into());
    }
    let Some(node) = node else {
        return Decision::Wait;
    };
    let pem = String::from_utf8_lossy(&spec.request.0);
    let names = match config::join::requested_names(&pem) {
        Ok(n) => n,
        Err(e) => return Decision::Deny(e.to_string()),
    };
    if names.is_empty() {
        return Decision::Deny("the request names nothing".into());
    }
    let addresses: Vec<String> = node
        .status
        .as_ref()
        .and_then(|s| s.addresses.as_ref())
        .map(|a| a.iter().map(|a| a.address.clone()).collect())
        .unwrap_or_default();
    for n in &names {
        let ok = match n {
            config::types::SubjectAltName::Ip(ip) => addresses.contains(&ip.to_string()),
            config::types::SubjectAltName::Dns(d) => d == name || addresses.contains(d),
        };
        if !ok {
            return Decision::Deny(format!("{n} is not an address or name of node {name}"));
        }
    }
    Decision::Approve
}

/// Approves or denies through the `approval` subresource.
async fn settle(api: &Api<CertificateSigningRequest>, csr: &str, approve: bool, message: &str) {
    let condition = CertificateSigningRequestCondition {
        type_: if approve { "Approved" } else { "Denied" }.into(),
        status: "True".into(),
        reason: Some("CairnKubeletServing".into()),
        message: Some(message.into()),
        ..Default::default()
    };
    let patch = serde_json::json!({"status": {"conditions": [condition]}});
    match api
        .patch_approval(csr, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) if approve => runtime::console!("kubernetes: approved {csr} ({message})"),
        Ok(_) => runtime::console!("kubernetes: denied {csr}: {message}"),
        // Another control plane may have decided first.
        Err(e) => tracing::debug!(csr, error = %e, "cannot settle the CSR"),
    }
}

/// Looks at the pending requests for as long as machined runs.
pub async fn run(client: Client) {
    let csrs: Api<CertificateSigningRequest> = Api::all(client.clone());
    let nodes: Api<Node> = Api::all(client);
    // Only kubelet serving requests, and the Node is read only for those
    // still undecided: a settled request costs nothing on later rounds.
    let serving = ListParams::default().fields(&format!("spec.signerName={KUBELET_SERVING}"));
    loop {
        match csrs.list(&serving).await {
            Ok(list) => {
                for csr in list.items {
                    let Some(name) = csr.metadata.name.clone() else {
                        continue;
                    };
                    if decided(&csr) {
                        continue;
                    }
                    let node_name = csr
                        .spec
                        .username
                        .as_deref()
                        .and_then(|u| u.strip_prefix("system:node:"))
                        .map(str::to_string);
                    let node = match &node_name {
                        Some(n) => nodes.get_opt(n).await.ok().flatten(),
                        None => None,
                    };
                    match decide(&csr, node.as_ref()) {
                        Decision::Approve => {
                            let who = node_name.unwrap_or_default();
                            settle(
                                &csrs,
                                &name,
                                true,
                                &format!("serving certificate of node {who}"),
                            )
                            .await
                        }
                        Decision::Deny(why) => settle(&csrs, &name, false, &why).await,
                        Decision::Wait | Decision::Skip => {}
                    }
                }
            }
            Err(e) => tracing::debug!(error = %e, "cannot list CSRs"),
        }
        tokio::time::sleep(EVERY).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::certificates::v1::CertificateSigningRequestSpec;
    use k8s_openapi::api::core::v1::{NodeAddress, NodeStatus};
    use k8s_openapi::ByteString;

    fn csr(user: &str, names: &[&str], usages: &[&str]) -> CertificateSigningRequest {
        let sans: Vec<config::types::SubjectAltName> =
            names.iter().map(|n| n.parse().unwrap()).collect();
        let (_, pem) = config::join::server_csr(user, &sans).unwrap();
        CertificateSigningRequest {
            spec: CertificateSigningRequestSpec {
                signer_name: KUBELET_SERVING.into(),
                username: Some(user.into()),
                groups: Some(vec!["system:nodes".into(), "system:authenticated".into()]),
                usages: Some(usages.iter().map(|u| u.to_string()).collect()),
                request: ByteString(pem.into_bytes()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn node(addresses: &[(&str, &str)]) -> Node {
        Node {
            status: Some(NodeStatus {
                addresses: Some(
                    addresses
                        .iter()
                        .map(|(t, a)| NodeAddress {
                            type_: t.to_string(),
                            address: a.to_string(),
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    const SERVING: &[&str] = &["digital signature", "key encipherment", "server auth"];

    #[test]
    fn a_node_gets_a_serving_certificate_for_its_own_names() {
        let n = node(&[("InternalIP", "10.5.0.3"), ("Hostname", "worker-1")]);
        let c = csr("system:node:worker-1", &["worker-1", "10.5.0.3"], SERVING);
        assert_eq!(decide(&c, Some(&n)), Decision::Approve);
        // The Node not registered yet: asked again later.
        assert_eq!(decide(&c, None), Decision::Wait);
    }

    #[test]
    fn anything_else_is_denied_with_the_reason() {
        let n = node(&[("InternalIP", "10.5.0.3"), ("Hostname", "worker-1")]);
        let other_ip = csr("system:node:worker-1", &["worker-1", "10.5.0.2"], SERVING);
        assert!(matches!(decide(&other_ip, Some(&n)), Decision::Deny(m) if m.contains("10.5.0.2")));
        let other_name = csr("system:node:worker-1", &["cp-1"], SERVING);
        assert!(matches!(decide(&other_name, Some(&n)), Decision::Deny(_)));
        let client_use = csr(
            "system:node:worker-1",
            &["worker-1"],
            &["digital signature", "client auth"],
        );
        assert!(matches!(decide(&client_use, Some(&n)), Decision::Deny(_)));
        let not_a_node = csr("alice", &["worker-1"], SERVING);
        assert!(matches!(decide(&not_a_node, Some(&n)), Decision::Deny(_)));
        let mut other_signer = csr("system:node:worker-1", &["worker-1"], SERVING);
        other_signer.spec.signer_name = "kubernetes.io/kube-apiserver-client-kubelet".into();
        assert_eq!(decide(&other_signer, Some(&n)), Decision::Skip);
    }
}
