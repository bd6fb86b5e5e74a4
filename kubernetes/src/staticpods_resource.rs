//! The `staticpods` resource (namespace `k8s`): one per control-plane pod
//! machined renders for the kubelet (id: the component, e.g.
//! `kube-apiserver`), written by [`crate::staticpods`].

use serde::Serialize;

use runtime::resources::{kind, yaml_of, Kind, Secrets, Spec};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StaticPodSpec {
    /// The manifest file in the kubelet's static pod directory.
    pub path: String,
    pub image: String,
    /// Digest of the secrets the pod mounts when it was rendered.
    pub secrets_digest: String,
    /// The manifest itself (it holds no secrets: only paths to them).
    pub manifest: String,
}

impl Spec for StaticPodSpec {
    const KIND: &'static Kind = kind::STATIC_PODS;
    fn to_yaml(&self, _: Secrets) -> String {
        yaml_of(self)
    }
}
