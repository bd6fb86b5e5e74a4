//! Joining machines that hold no CA key (workers): a control plane signs
//! their apid certificates ([`signer`], the `cairn.security.v1` service
//! apid serves on :50001), and a worker asks a control plane for its own
//! ([`requester`]) and keeps it renewed. The crypto is `config::join`.

pub mod limit;
pub mod requester;
pub mod signer;

/// Request metadata with the address a Security call came from; apid sets
/// it from the TCP connection (and drops whatever the client sent).
pub const PEER_METADATA: &str = "x-cairn-peer";
