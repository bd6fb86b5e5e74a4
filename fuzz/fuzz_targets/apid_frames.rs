//! apid's gRPC frame limit (apid::limit::FrameScanner), which reads message
//! headers out of request bodies it forwards undecoded. Whatever the bytes
//! and however the body is cut into chunks, the scanner agrees with a
//! plain one-pass reading of the frames: the same count, the same end
//! state, and the same refusal of the first message over the limit.
//!
//! The harness is `fuzz-targets/src/apid_frames.rs` (shared with the replay
//! test that `make test` runs).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| cairn_fuzz_targets::apid_frames::run(data));
