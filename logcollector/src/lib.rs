//! cairn-logcollector: Cairn's per-node log collector (a DaemonSet). It
//! follows the kubelet's container logs under /var/log/pods (CRI format,
//! partial lines joined, rotation and compression followed), labels each
//! line with node, namespace, pod and container, and ships batches to
//! cairn-logstore through a bounded disk buffer, advancing its offsets on
//! the node only once a batch is durable, so restarts neither lose nor
//! repeat lines. See logcollector/README.md.

pub mod buffer;
pub mod cri;
pub mod files;
pub mod health;
pub mod layout;
pub mod reader;
pub mod record;
pub mod run;
pub mod sender;
pub mod state;
