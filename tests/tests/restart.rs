//! A killed service comes back: machined's supervisor restarts apid with
//! backoff and the API answers again.

use std::time::Duration;

use cairn_tests::{checks, Images, Vm, VmConfig, MAINTENANCE_BANNER};

#[test]
fn killed_apid_is_restarted_with_backoff() {
    // Test hook in machined: SIGKILL apid once, 5 s after it started.
    let config = VmConfig::direct("restart-apid", &Images::locate(), "cairn.debug.kill=apid@5")
        .unwrap_or_else(|e| panic!("{e}"));
    let mut vm = Vm::start(&config).unwrap_or_else(|e| panic!("{e}"));
    let boot = config.boot_timeout();
    vm.expect(MAINTENANCE_BANNER, boot)
        .unwrap_or_else(|e| panic!("{e}"));

    let wait = Duration::from_secs(60);
    vm.expect(r"cairn: debug: sending SIGKILL to service apid", wait)
        .unwrap_or_else(|e| panic!("{e}"));
    vm.expect(r"cairn: service apid: Failed", wait)
        .unwrap_or_else(|e| panic!("{e}"));
    let waiting = vm
        .expect(
            r"cairn: service apid: Waiting \(restart 1 in [0-9.]+s\)",
            wait,
        )
        .unwrap_or_else(|e| panic!("{e}"));
    let delay: f64 = waiting
        .rsplit(" in ")
        .next()
        .and_then(|s| s.trim_end_matches("s)").parse().ok())
        .unwrap_or_else(|| panic!("no delay in {waiting:?}"));
    assert!(delay > 0.0, "restart without backoff: {waiting}");
    vm.expect(r"cairn: service apid: Running", wait)
        .unwrap_or_else(|e| panic!("{e}"));

    checks::maintenance_version_through_cairnctl(&mut vm, "");
}
