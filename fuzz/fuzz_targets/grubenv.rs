//! GRUB's environment block (BOOT's grub/grubenv), which machined reads to
//! pick boot slots: parsing never panics, and what parses renders to a
//! block (when it fits in 1024 bytes) that parses back to the same values.
//!
//! The harness is `fuzz-targets/src/grubenv.rs` (shared with the replay
//! test that `make test` runs).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| cairn_fuzz_targets::grubenv::run(data));
