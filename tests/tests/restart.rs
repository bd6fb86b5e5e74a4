//! A killed service comes back: machined's supervisor restarts apid with
//! backoff and the API answers again.

use std::time::Duration;

use cairn_tests::{checks, Images, Vm, VmConfig, MAINTENANCE_BANNER};

#[test]
fn killed_apid_is_restarted_with_backoff() {
    // Test hook in machined: SIGKILL apid once, 5 s after it started (which
    // may be before or after the maintenance banner).
    let config = VmConfig::direct("restart-apid", &Images::locate(), "cairn.debug.kill=apid@5")
        .unwrap_or_else(|e| panic!("{e}"));
    let mut vm = Vm::start(&config).unwrap_or_else(|e| panic!("{e}"));
    let boot = config.boot_timeout();
    vm.expect(r"cairn: debug: sending SIGKILL to service apid", boot)
        .unwrap_or_else(|e| panic!("{e}"));

    let wait = Duration::from_secs(30);
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

    // The restarted apid serves the API again, and stays up.
    vm.wait_for_version(boot).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        vm.console().contains(MAINTENANCE_BANNER),
        "no maintenance banner on the console"
    );
    checks::maintenance_version_through_cairnctl(&mut vm, "");
    let console = vm.console();
    let after_restart = &console[console.find("Waiting (restart 1 in").unwrap_or(0)..];
    assert!(
        !after_restart.contains("Waiting (restart 2 in"),
        "apid failed again after its restart:\n{}",
        vm.console_tail(30)
    );
}
