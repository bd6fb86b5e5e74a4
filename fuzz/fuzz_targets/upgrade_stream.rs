//! The Upgrade RPC's client stream as machined receives it
//! (machined::upgrade::receive::write_slot): gRPC frames of UpgradeRequest
//! messages (header, chunks, sha256 per asset) written into a scratch BOOT
//! and META. Never panics; a stream that is accepted leaves a bootable
//! slot B that GRUB boots once, and one that is refused leaves slot B and
//! GRUB's default alone.
//!
//! The harness is `fuzz-targets/src/upgrade_stream.rs` (shared with the replay
//! test that `make test` runs).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| cairn_fuzz_targets::upgrade_stream::run(data));
