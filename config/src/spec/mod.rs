//! The bodies of the two config documents: `machine:` (kind
//! `MachineConfig`) and `cluster:` (kind `ClusterConfig`), modelled on Talos
//! v1alpha1. Every field is documented here; the doc comments become the
//! JSON Schema descriptions.

mod cluster;
mod machine;

pub use cluster::{
    default_kubernetes_version, Addon, Addons, ClusterNetwork, ClusterSpec, Cni, CniName,
    Component, ControlPlane, Etcd, Proxy, ServiceAccount,
};
pub use machine::{
    Bond, BondMode, DeviceSelector, Features, File, FileOp, Install, Interface, Kubelet,
    LogDestination, LogFormat, Logging, MachineSpec, MachineType, Mirror, Network, NodeIp,
    Registries, Route, Time, Vlan,
};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::types::{PemCertificate, PemPrivateKey};

/// A certificate and, on machines that sign with it, its private key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CertAndKey {
    /// The certificate, PEM.
    pub crt: PemCertificate,
    /// The private key, PEM (PKCS#8). Only machines that issue certificates
    /// from this CA (control planes) carry it; workers omit it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<PemPrivateKey>,
}

impl From<crate::pki::CertifiedKey> for CertAndKey {
    fn from(c: crate::pki::CertifiedKey) -> Self {
        CertAndKey {
            crt: c.crt,
            key: Some(c.key),
        }
    }
}

impl CertAndKey {
    /// The certificate without its key (what a worker gets).
    pub fn without_key(&self) -> Self {
        CertAndKey {
            crt: self.crt.clone(),
            key: None,
        }
    }
    /// Both halves, when the key is present.
    pub fn certified_key(&self) -> Option<crate::pki::CertifiedKey> {
        self.key.as_ref().map(|key| crate::pki::CertifiedKey {
            crt: self.crt.clone(),
            key: key.clone(),
        })
    }
}

pub(crate) fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

pub(crate) fn is_false(v: &bool) -> bool {
    !*v
}

pub(crate) fn yes() -> bool {
    true
}
