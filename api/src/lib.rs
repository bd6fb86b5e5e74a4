//! The Cairn machine API: generated tonic/prost code for `cairn.machine.v1`.

/// `cairn.machine.v1`: the service apid serves on :50000 and machined on its
/// unix socket.
pub mod machine {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("cairn.machine.v1");
}

/// `cairn.security.v1`: certificates for joining machines, served by
/// control planes' apid on :50001 and by machined on its unix socket.
pub mod security {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("cairn.security.v1");
}

/// The encoded `FileDescriptorSet` of every .proto in this crate.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/descriptor.binpb"));
