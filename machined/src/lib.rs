//! machined: Cairn's PID 1 agent. `init` switches root and execs it; from
//! then on it reaps orphans, mounts, supervises services (apid first),
//! acquires the machine config and serves the internal API on a unix socket.
//!
//! A library (with a thin `main.rs`) so that the pieces later issues build
//! on (supervisor, network, partitions) have a public surface and tests.

#[macro_use]
pub mod logging;
pub mod acquire;
pub mod api;
pub mod apply;
pub mod cluster_health;
pub mod cmdline;
pub mod console;
pub mod containerd;
pub mod debug;
pub mod disks;
pub mod dmesg;
pub mod entropy;
pub mod etcd;
pub mod exec;
pub mod files;
pub mod hostname;
pub mod http;
pub mod images;
pub mod install;
pub mod k8s_pki;
pub mod kubelet;
pub mod kubernetes;
pub mod lifecycle;
pub mod maintenance;
pub mod manifests;
pub mod meta;
pub mod mounts;
pub mod network;
pub mod partitions;
pub mod payload;
pub mod pid1;
pub mod probe;
pub mod procfs;
pub mod reaper;
pub mod registry;
pub mod reset;
pub mod resources;
pub mod secure;
pub mod shutdown;
pub mod state;
pub mod staticpods;
pub mod supervisor;
pub mod syscall;
pub mod sysctl;
pub mod time;
pub mod upgrade;
