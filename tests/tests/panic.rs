//! A panic in machined (PID 1) is logged and reboots the machine; with
//! `-no-reboot` QEMU then exits on its own.

use std::time::Duration;

use cairn_tests::{Images, Vm, VmConfig};

#[test]
fn machined_panic_reboots_the_vm() {
    // Test hook in machined: panic 5 s after start.
    let mut config = VmConfig::direct("machined-panic", &Images::locate(), "cairn.debug.panic=5")
        .unwrap_or_else(|e| panic!("{e}"));
    config.no_reboot = true;
    let mut vm = Vm::start(&config).unwrap_or_else(|e| panic!("{e}"));
    let boot = config.boot_timeout();
    vm.expect(r"cairn: machined \S+ \(build \S+\) starting as PID 1", boot)
        .unwrap_or_else(|e| panic!("{e}"));
    let panicked = vm
        .expect(r"cairn: machined panicked: .*cairn\.debug\.panic", boot)
        .unwrap_or_else(|e| panic!("{e}"));
    let status = vm
        .wait_exit(Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        status.success(),
        "QEMU exit status {status} (expected a clean -no-reboot exit)"
    );
    assert!(
        panicked.contains("cairn.debug.panic") || panicked.contains("panicked"),
        "{panicked}"
    );
    // It was machined that rebooted, not the kernel panicking on PID 1's death.
    let console = vm.console();
    assert!(
        !console.contains("Attempted to kill init"),
        "PID 1 died instead of rebooting"
    );
}
