//! Machine-config parsing (YAML: anchors, aliases, tags, several
//! documents, anything): never panics, never blows up (aliases are refused
//! before anything expands them), and a config that parses renders to text
//! that parses back to the same config and validates without panicking.
//!
//! The harness is `fuzz-targets/src/config_parse.rs` (shared with the replay
//! test that `make test` runs).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| cairn_fuzz_targets::config_parse::run(data));
