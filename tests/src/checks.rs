//! Checks several tests share.

use regex::Regex;

use crate::{cairnctl, Vm, FINGERPRINT_LINE};

/// The node answers Version in maintenance mode, through apid, and the real
/// `cairnctl` shows it: the text form for people, the JSON form checked
/// field by field. `slot` is "A" for a disk boot and "" for a live boot.
pub fn maintenance_version_through_cairnctl(vm: &mut Vm, slot: &str) {
    let timeout = std::time::Duration::from_secs(30);
    let direct = vm
        .wait_for_version(timeout)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        direct.maintenance,
        "Version says not in maintenance mode: {direct:?}"
    );

    let node = vm.apid_node();
    let text = cairnctl::run_ok(&["-n", &node, "--insecure", "version"]);
    for expected in [
        "Client:".to_string(),
        "Server:".to_string(),
        format!("  NODE:      {node}\n"),
        format!("  Tag:       {}\n", direct.version),
        "  Mode:      maintenance\n".to_string(),
    ] {
        assert!(
            text.contains(&expected),
            "cairnctl version output lacks {expected:?}:\n{text}"
        );
    }

    let json = cairnctl::run_ok(&["-n", &node, "--insecure", "version", "-v", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_str(&json).expect("cairnctl -o json prints JSON");
    let server = &v["servers"][0];
    assert_eq!(server["node"], node.as_str());
    assert_eq!(server["mode"], "maintenance");
    assert_eq!(server["slot"], slot, "booted slot");
    let tag = server["tag"].as_str().unwrap_or_default();
    assert!(tag.starts_with('v'), "server tag {tag:?}");
    assert!(
        !server["build"].as_str().unwrap_or_default().is_empty(),
        "server build id empty"
    );
    let kernel = server["kernel"].as_str().unwrap_or_default();
    assert!(kernel.starts_with("6.1."), "server kernel {kernel:?}");

    // The certificate cairnctl saw is the one machined announced (last) on
    // the console: what a user compares before trusting an insecure
    // connection.
    let console = vm.console();
    let re = Regex::new(FINGERPRINT_LINE).unwrap();
    let announced = re
        .captures_iter(&console)
        .last()
        .map(|c| c[1].to_string())
        .unwrap_or_else(|| panic!("no console line /{FINGERPRINT_LINE}/"));
    assert_eq!(server["certificate"], announced.as_str());
}
