//! Config patches: strategic-merge YAML and RFC 6902 JSON patches applied
//! to the golden control-plane and worker configs. Never panics; a patched
//! config renders to text that parses back to it.
//!
//! The harness is `fuzz-targets/src/config_patch.rs` (shared with the replay
//! test that `make test` runs).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| cairn_fuzz_targets::config_patch::run(data));
