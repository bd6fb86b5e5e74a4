//! Node addresses as callers name them (`-n host:port`, the `nodes`
//! metadata apid reads): parsing never panics; a parsed address prints to
//! text that parses back to it; membership answers the same for both.
//!
//! The harness is `fuzz-targets/src/node_addr.rs` (shared with the replay
//! test that `make test` runs).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| cairn_fuzz_targets::node_addr::run(data));
