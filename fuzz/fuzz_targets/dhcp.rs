//! DHCP replies as machined's client reads them: its decoding
//! (host::network::dhcp::decode: dhcproto's decoder behind a check of the
//! option lengths dhcproto asserts), then its lease parsing
//! (host::network::dhcp::parse_lease) and its renewal timing
//! (host::network::lease::next). Never panics; a lease
//! has an address and a prefix of at most 32 bits; the client's next
//! request is always later than now (no busy loop, whatever T1, T2 and the
//! lease time a server sends).
//!
//! The harness is `fuzz-targets/src/dhcp.rs` (shared with the replay
//! test that `make test` runs).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| cairn_fuzz_targets::dhcp::run(data));
