//! Cairn machine config: types, defaults, validation, patches, generation,
//! secrets and PKI. Also the constants every binary shares. No daemon
//! internals live here, so the CLI stays light.

pub mod constants;
pub mod pki;
pub mod types;
pub mod version;
