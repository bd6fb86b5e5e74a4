//! cairn-webui: the Web UI of a Cairn cluster. Server-rendered pages over
//! the Kubernetes API, every request made with the signed-in user's own
//! bearer token so Kubernetes RBAC decides what they see and do.

#[cfg(feature = "browser")]
pub mod browser;
pub mod chart;
pub mod cluster;
pub mod html;
pub mod logsearch;
pub mod pages;
pub mod routes;
pub mod session;
pub mod usage;
