//! DHCP replies as machined's client reads them: its decoding
//! (host::network::dhcp::decode: dhcproto's decoder behind a check of the
//! option lengths dhcproto asserts), then its lease parsing
//! (host::network::dhcp::parse_lease) and its renewal timing
//! (host::network::lease::next). Never panics; a lease
//! has an address and a prefix of at most 32 bits; the client's next
//! request is always later than now (no busy loop, whatever T1, T2 and the
//! lease time a server sends).

use std::time::Duration;

use host::network::lease::{next, Next};

/// One input, as the fuzzer gives it.
pub fn run(data: &[u8]) {
    let Some(msg) = host::network::dhcp::decode(data) else {
        return;
    };
    let Ok(lease) = host::network::dhcp::parse_lease(&msg) else {
        return;
    };
    assert!(!lease.address.is_unspecified());
    assert!(lease.prefix_len <= 32);
    let acquired = tokio::time::Instant::now();
    for after in [0, 1, 59, 60, 3600, 86_400, u64::from(u32::MAX)] {
        let now = acquired + Duration::from_secs(after);
        if let Next::RequestAt(at) = next(&lease, acquired, now) {
            assert!(at > now, "a request due at once: {lease:?} {after} s after");
        }
    }
}
