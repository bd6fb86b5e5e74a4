//! `cluster:`: what every node of one cluster shares.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{is_default, is_false, yes, CertAndKey};
use crate::types::{
    ArgName, Cidr, ClusterName, ControlPlaneEndpoint, DnsName, EncryptionKey, ImageRef,
    KubernetesVersion, PemPrivateKey, ScalarString, SubjectAltName, Token,
};

/// The cluster document's body: identity, endpoint, networks, secrets and
/// the Kubernetes components. Control-plane machines carry every key;
/// workers carry only the certificates and the bootstrap token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ClusterSpec {
    /// The cluster's name (one DNS label). It names the contexts in the
    /// generated cairnconfig and kubeconfig.
    pub cluster_name: ClusterName,
    /// Where the Kubernetes API is reached.
    pub control_plane: ControlPlane,
    /// Pod and service networks and the CNI.
    #[serde(default)]
    pub network: ClusterNetwork,
    /// Kubernetes version. The default component images are
    /// `cairn.local/<component>:<kubernetesVersion>`. Default `v1.20.2`.
    #[serde(default = "default_kubernetes_version")]
    pub kubernetes_version: KubernetesVersion,
    /// The Kubernetes bootstrap token kubelets use to join
    /// (`[a-z0-9]{6}.[a-z0-9]{16}`).
    pub token: Token,
    /// The key kube-apiserver encrypts Secrets with in etcd (secretbox,
    /// 32 bytes, base64). Control planes only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secretbox_encryption_secret: Option<EncryptionKey>,
    /// The Kubernetes CA. Workers carry only the certificate.
    pub ca: CertAndKey,
    /// The front-proxy CA of the API aggregation layer. Control planes only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aggregator_ca: Option<CertAndKey>,
    /// The key that signs service-account tokens. Control planes only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account: Option<ServiceAccount>,
    /// etcd, which control-plane nodes run.
    #[serde(default, skip_serializing_if = "is_default")]
    pub etcd: Etcd,
    /// kube-apiserver.
    #[serde(default, skip_serializing_if = "is_default")]
    pub api_server: Component,
    /// kube-controller-manager.
    #[serde(default, skip_serializing_if = "is_default")]
    pub controller_manager: Component,
    /// kube-scheduler.
    #[serde(default, skip_serializing_if = "is_default")]
    pub scheduler: Component,
    /// kube-proxy, which every node runs.
    #[serde(default, skip_serializing_if = "is_default")]
    pub proxy: Proxy,
    /// Let ordinary pods run on control-plane nodes (no
    /// `node-role.kubernetes.io/master` taint), e.g. for a one-node cluster.
    #[serde(default, skip_serializing_if = "is_false")]
    pub allow_scheduling_on_control_planes: bool,
    /// The cluster add-ons Cairn deploys from its image cache; each is on
    /// unless turned off here.
    #[serde(default, skip_serializing_if = "is_default")]
    pub addons: Addons,
}

pub fn default_kubernetes_version() -> KubernetesVersion {
    crate::version::KUBERNETES_VERSION
        .parse()
        .expect("KUBERNETES_VERSION is valid")
}

/// The Kubernetes API endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ControlPlane {
    /// https URL of the Kubernetes API, e.g. `https://10.5.0.2:6443`: a
    /// control-plane node, a virtual IP or a load balancer in front of them.
    pub endpoint: ControlPlaneEndpoint,
}

/// Cluster networking.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ClusterNetwork {
    /// The cluster DNS domain. Default `cluster.local`.
    #[serde(default = "default_dns_domain")]
    pub dns_domain: DnsName,
    /// Pod networks, at most one per IP family. Default `[10.244.0.0/16]`.
    #[serde(default = "default_pod_subnets")]
    pub pod_subnets: Vec<Cidr>,
    /// Service networks, at most one per IP family. Default
    /// `[10.96.0.0/12]`.
    #[serde(default = "default_service_subnets")]
    pub service_subnets: Vec<Cidr>,
    /// The CNI plugin.
    #[serde(default, skip_serializing_if = "is_default")]
    pub cni: Cni,
}

impl Default for ClusterNetwork {
    fn default() -> Self {
        ClusterNetwork {
            dns_domain: default_dns_domain(),
            pod_subnets: default_pod_subnets(),
            service_subnets: default_service_subnets(),
            cni: Cni::default(),
        }
    }
}

fn default_dns_domain() -> DnsName {
    "cluster.local".parse().expect("valid default")
}
fn default_pod_subnets() -> Vec<Cidr> {
    vec!["10.244.0.0/16".parse().expect("valid default")]
}
fn default_service_subnets() -> Vec<Cidr> {
    vec!["10.96.0.0/12".parse().expect("valid default")]
}

/// The CNI plugin configuration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Cni {
    /// Which CNI to set up. Default `bridge`.
    #[serde(default)]
    pub name: CniName,
}

/// CNI choices.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum CniName {
    /// The reference `bridge` plugin with host-local IPAM on each node's
    /// slice of the pod network, and routes to every other node's slice
    /// via its InternalIP (host-gw; the nodes share one network), which
    /// machined keeps from the Node objects.
    #[default]
    Bridge,
    /// No CNI config and no Pod routes: install a CNI yourself.
    None,
}

/// The add-ons: ordinary Kubernetes workloads in `kube-system`, run from
/// images the payload carries (nothing is pulled).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Addons {
    /// The Web UI (`cairn-webui`).
    #[serde(default, skip_serializing_if = "is_default")]
    pub dashboard: DashboardAddon,
    /// The resource metrics API (`metrics.k8s.io`, `kubectl top`).
    #[serde(default, skip_serializing_if = "is_default")]
    pub metrics_server: Addon,
    /// Prometheus: the time-series store of container and node metrics.
    #[serde(default, skip_serializing_if = "is_default")]
    pub prometheus: Addon,
    /// Cluster-level logging: the per-node collector and the log store.
    #[serde(default, skip_serializing_if = "is_default")]
    pub logging: Addon,
}

/// One add-on's switch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Addon {
    /// Deploy it. Default `true`.
    #[serde(default = "yes")]
    pub enabled: bool,
}

impl Default for Addon {
    fn default() -> Self {
        Addon { enabled: true }
    }
}

/// The Web UI's switch, and how it is reached.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DashboardAddon {
    /// Deploy it. Default `true`.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Also serve it on this port of every node (a NodePort Service,
    /// 30000-32767). Default: none; `cairnctl dashboard --web` forwards it
    /// to 127.0.0.1 through the API server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_port: Option<u16>,
}

impl Default for DashboardAddon {
    fn default() -> Self {
        DashboardAddon {
            enabled: true,
            node_port: None,
        }
    }
}

/// The service-account signing key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ServiceAccount {
    /// The private key, PEM (PKCS#8, ECDSA P-256 or RSA).
    pub key: PemPrivateKey,
}

/// etcd settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Etcd {
    /// The etcd CA. Control planes only (with its key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<CertAndKey>,
    /// etcd image; by default `cairn.local/etcd:<etcd version>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageRef>,
    /// Extra etcd flags without leading dashes.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra_args: BTreeMap<ArgName, ScalarString>,
}

/// A Kubernetes control-plane component.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Component {
    /// The image; by default `cairn.local/<component>:<kubernetesVersion>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageRef>,
    /// Extra flags without leading dashes; they override Cairn's.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra_args: BTreeMap<ArgName, ScalarString>,
    /// Extra SANs for the component's serving certificate (kube-apiserver
    /// only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cert_sans: Vec<SubjectAltName>,
}

/// kube-proxy settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Proxy {
    /// Do not run kube-proxy (e.g. when the CNI replaces it).
    #[serde(default, skip_serializing_if = "is_false")]
    pub disabled: bool,
    /// The image; by default `cairn.local/kube-proxy:<kubernetesVersion>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageRef>,
    /// Extra flags without leading dashes.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra_args: BTreeMap<ArgName, ScalarString>,
}

impl ClusterSpec {
    fn default_image(&self, component: &str) -> ImageRef {
        ImageRef::from_parts(
            &format!("{}/{component}", crate::constants::IMAGE_REGISTRY),
            &self.kubernetes_version.to_string(),
        )
        .expect("registry, component and version form a valid reference")
    }
    /// The kube-apiserver image to run.
    pub fn api_server_image(&self) -> ImageRef {
        self.api_server
            .image
            .clone()
            .unwrap_or_else(|| self.default_image("kube-apiserver"))
    }
    /// The kube-controller-manager image to run.
    pub fn controller_manager_image(&self) -> ImageRef {
        self.controller_manager
            .image
            .clone()
            .unwrap_or_else(|| self.default_image("kube-controller-manager"))
    }
    /// The kube-scheduler image to run.
    pub fn scheduler_image(&self) -> ImageRef {
        self.scheduler
            .image
            .clone()
            .unwrap_or_else(|| self.default_image("kube-scheduler"))
    }
    /// The kube-proxy image to run.
    pub fn proxy_image(&self) -> ImageRef {
        self.proxy
            .image
            .clone()
            .unwrap_or_else(|| self.default_image("kube-proxy"))
    }
    /// The etcd image to run.
    pub fn etcd_image(&self) -> ImageRef {
        self.etcd.image.clone().unwrap_or_else(|| {
            ImageRef::from_parts(
                &format!("{}/etcd", crate::constants::IMAGE_REGISTRY),
                crate::version::ETCD_VERSION,
            )
            .expect("valid default etcd image")
        })
    }
    /// The kubelet image for a machine with `kubelet`.
    pub fn kubelet_image(&self, kubelet: &super::Kubelet) -> ImageRef {
        kubelet
            .image
            .clone()
            .unwrap_or_else(|| self.default_image("kubelet"))
    }
}
