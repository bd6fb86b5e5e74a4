//! META, the raw key-value store on the META partition: opening a
//! partition holding any bytes never panics, and a store opened from any
//! bytes can write and read back its values. With the first input bit set
//! the harness gives the copy a valid magic and checksum, so that the JSON
//! payload behind them is reached too.
//!
//! The harness is `fuzz-targets/src/meta_decode.rs` (shared with the replay
//! test that `make test` runs).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| cairn_fuzz_targets::meta_decode::run(data));
