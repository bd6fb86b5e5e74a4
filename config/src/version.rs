//! The version of this build, shared by every binary.

/// Release version (`CAIRN_VERSION` at build time, else the crate version).
pub const VERSION: &str = match option_env!("CAIRN_VERSION") {
    Some(v) => v,
    None => concat!("v", env!("CARGO_PKG_VERSION")),
};

/// Build identifier (`CAIRN_BUILD_ID` at build time, set by the image build
/// from the hash of its inputs), or "dev" for a local cargo build.
pub const BUILD_ID: &str = match option_env!("CAIRN_BUILD_ID") {
    Some(v) => v,
    None => "dev",
};

/// The Kubernetes version a generated config uses and the image carries.
pub const KUBERNETES_VERSION: &str = "v1.20.2";

/// The etcd version the image carries (Debian bookworm's etcd-server).
pub const ETCD_VERSION: &str = "v3.4.23";
