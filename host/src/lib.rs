//! The node's host layer: the machine under Kubernetes. Disks and what is
//! on them (probing, partitions, STATE and EPHEMERAL, META), the network
//! (links, addresses, DHCP, routes, resolvers, hostname over rtnetlink),
//! time (SNTP), the kernel command line and the config sources it names,
//! and read-only inspection of /proc and files for the API. Built on the
//! `runtime` (store, supervisor) and `system` (syscalls, mounts) crates;
//! the kubernetes crate and machined build on it.

pub mod acquire;
pub mod cmdline;
pub mod disks;
pub mod dmesg;
pub mod entropy;
pub mod files;
pub mod hostname;
pub mod http;
pub mod meta;
pub mod network;
pub mod partitions;
pub mod probe;
pub mod procfs;
pub mod resources;
pub mod time;
