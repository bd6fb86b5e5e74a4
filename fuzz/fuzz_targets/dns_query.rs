//! The DNS add-on's query handling (dns::answer::Resolver::answer): any
//! bytes over UDP and TCP, against a zone with ClusterIP, headless and
//! ExternalName Services and no upstream. Never panics; an answer is a DNS
//! response with the query's id that decodes, and a UDP answer to a query
//! without EDNS fits in 512 bytes.
//!
//! The harness is `fuzz-targets/src/dns_query.rs` (shared with the replay
//! test that `make test` runs).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| cairn_fuzz_targets::dns_query::run(data));
