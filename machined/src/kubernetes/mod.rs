//! Kubernetes on a configured node: the sequence of CONTRACTS-K8S.md
//! ("Sequence on a configured node"), started by the configurator once a
//! config is in force.

pub mod addresses;

pub use addresses::{dns_service_ip, node_ip};

#[cfg(test)]
pub(crate) mod testutil;
