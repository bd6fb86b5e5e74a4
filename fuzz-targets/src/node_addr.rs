//! Node addresses as callers name them (`-n host:port`, the `nodes`
//! metadata apid reads): parsing never panics; a parsed address prints to
//! text that parses back to it; membership answers the same for both.

use apid::members::Members;
use apid::peers::NodeAddr;

/// One input, as the fuzzer gives it.
pub fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(addr) = NodeAddr::parse(text) else {
        return;
    };
    let shown = addr.to_string();
    let again = match NodeAddr::parse(&shown) {
        Ok(a) => a,
        Err(e) => panic!("{text:?} parsed to {addr:?}, whose text {shown:?} does not parse: {e}"),
    };
    assert_eq!(again, addr, "{text:?} -> {shown:?}");
    let members = Members::new([&addr]);
    assert_eq!(members.check(&addr).is_ok(), members.check(&again).is_ok());
    let _ = Members::for_node([addr.host.as_str()], Some(addr.port), []).check(&again);
}
