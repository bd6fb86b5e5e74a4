//! SNTP answers as machined's time sync reads them: sntpc's packet
//! processing (host::time::sntp uses sntpc::get_time) fed with any
//! bytes as the server's reply, through a socket that answers from the
//! input. With the first input bit set the reply echoes the request's
//! transmit time as its originate time, so the checks behind that one are
//! reached. Also machined's own test responder
//! (host::time::responder::reply) with any request. Never panics.
//!
//! The harness is `fuzz-targets/src/sntp.rs` (shared with the replay
//! test that `make test` runs).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| cairn_fuzz_targets::sntp::run(data));
