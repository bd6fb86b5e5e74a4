//! Kubernetes on a Cairn node: everything between a running machine
//! config and a Ready node. The payload (binaries and images on a
//! read-only squashfs), containerd and the images imported into it, the
//! image cache served as a registry, the Kubernetes PKI, etcd, the kubelet,
//! the control plane's static Pods, and what machined applies through the
//! API server (bootstrap objects, add-ons, node labels, the CNI config).
//!
//! [`bringup`] is the sequence that starts it all and retries failed steps;
//! [`specs`] derives each service's spec from the running config, and the
//! services' runners read their spec every time they start. Built on the
//! `host` (network, time, disks), `runtime` and `system` crates; only the
//! `machined` binary sits above it.

pub mod addresses;
pub mod bringup;
pub mod cluster_health;
pub mod containerd;
pub mod etcd;
pub mod images;
pub mod k8s_pki;
pub mod kubelet;
pub mod manifests;
pub mod members;
pub mod payload;
pub mod podlogs;
pub mod podnet;
pub mod registry;
pub mod specs;
pub mod staticpods;
pub mod staticpods_resource;
pub mod timeline;

pub use addresses::{dns_service_ip, node_ip};
pub use bringup::start;

#[cfg(test)]
pub(crate) mod testutil;
