//! The fuzz targets' harnesses, one module per target, each with `run`:
//! what one input checks. `fuzz/` wraps each in a libFuzzer binary
//! (`cargo fuzz`, nightly, `make fuzz`); this crate's replay test runs the
//! committed seeds, the regressions of fixed crashes and a few thousand
//! deterministic mutations of them through the same code on the stable
//! toolchain, so `make test` keeps every target building and every fixed
//! crash fixed without libFuzzer.

pub mod apid_frames;
pub mod config_parse;
pub mod config_patch;
pub mod dhcp;
pub mod dns_query;
pub mod grubenv;
pub mod meta_decode;
pub mod node_addr;
pub mod pod_logs;
pub mod sntp;
pub mod upgrade_stream;

/// A harness: what one input checks.
pub type Harness = fn(&[u8]);

/// Every target by name, as `fuzz/fuzz_targets/<name>.rs` names it.
pub const TARGETS: &[(&str, Harness)] = &[
    ("apid_frames", apid_frames::run),
    ("config_parse", config_parse::run),
    ("config_patch", config_patch::run),
    ("dhcp", dhcp::run),
    ("dns_query", dns_query::run),
    ("grubenv", grubenv::run),
    ("meta_decode", meta_decode::run),
    ("node_addr", node_addr::run),
    ("pod_logs", pod_logs::run),
    ("sntp", sntp::run),
    ("upgrade_stream", upgrade_stream::run),
];
