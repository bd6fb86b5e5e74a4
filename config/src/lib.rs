//! Cairn machine config: types, defaults, validation, patches, generation,
//! secrets and PKI. Also the constants every binary shares. No daemon
//! internals live here, so the CLI stays light.

pub mod apid;
pub mod client;
pub mod constants;
pub mod document;
pub mod error;
pub mod fsutil;
pub mod generate;
pub mod join;
pub mod patch;
pub mod pki;
pub mod schema;
pub mod secrets;
pub mod signing;
pub mod spec;
pub mod tls;
pub mod types;
pub mod validate;
pub mod version;

pub use document::MachineConfig;
pub use error::{ParseError, ParseErrors};
pub use secrets::SecretsBundle;
