//! cairn-dns: the cluster DNS server of Cairn.
//!
//! - `zone`: the records of the cluster domain, built from Services and Endpoints
//! - `watch`: kube-rs watchers that rebuild the zone when the cluster changes
//! - `objects`: the same objects from a JSON file (`--from-file`)
//! - `answer`: one query in, one response out (zone or upstream)
//! - `upstream` + `cache`: forwarding to the resolv.conf servers, with a TTL cache
//! - `server`: UDP and TCP listeners; `probes`: /health and /ready over HTTP

pub mod answer;
pub mod cache;
pub mod objects;
pub mod probes;
pub mod server;
pub mod upstream;
pub mod watch;
pub mod zone;
