//! Pod logs (`cairnctl logs -k`): container ids and CRI log lines from the
//! kubelet's files. Never panics; a message is the end of its line; a log
//! file streams (tail or not) the messages of its complete lines.
//!
//! The harness is `fuzz-targets/src/pod_logs.rs` (shared with the replay
//! test that `make test` runs).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| cairn_fuzz_targets::pod_logs::run(data));
