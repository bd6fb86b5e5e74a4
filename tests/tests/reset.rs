//! Issue 7, reset: a configured node, `cairnctl reset --reboot`, and the
//! node is back in maintenance mode with STATE, META and EPHEMERAL wiped
//! (the next boot finds them blank and formats them).

mod common;

use std::time::{Duration, Instant};

use cairn_tests::{Firmware, Images, Vm, VmConfig, MAINTENANCE_BANNER};
use common::{text, Cluster, REBOOT_TIMEOUT};

#[test]
fn reset_reboot_wipes_the_node_back_to_maintenance_mode() {
    let started = Instant::now();
    let images = Images::locate();
    let config =
        VmConfig::disk("reset", &images, Firmware::SeaBios).unwrap_or_else(|e| panic!("{e}"));
    let mut vm = Vm::start(&config).unwrap_or_else(|e| panic!("{e}"));
    vm.expect(MAINTENANCE_BANNER, config.boot_timeout())
        .unwrap_or_else(|e| panic!("{e}"));
    vm.wait_for_version(Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{e}"));
    let cluster = Cluster::generate("");
    let addr = cluster.target(&vm);
    let out = cluster.apply_insecure(&addr, &cluster.config(), "no-reboot");
    assert!(out.status.success(), "apply-config: {}", text(&out));
    cluster.wait_configured(&vm, &addr, Duration::from_secs(120));
    // Something in META and on EPHEMERAL to be wiped.
    assert!(cluster.meta(&addr).contains_key("boot.count.A"));

    let out = cluster.ctl(&addr, &["reset", "--reboot"]);
    assert!(out.status.success(), "reset: {}", text(&out));
    for line in [
        r"reset: wiped STATE",
        r"reset: wiped META",
        r"reset: wiped EPHEMERAL",
    ] {
        vm.expect(line, Duration::from_secs(120))
            .unwrap_or_else(|e| panic!("{e}"));
    }
    // The next boot: blank partitions formatted, no config, maintenance.
    vm.expect(r"disk: formatting STATE", REBOOT_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}"));
    vm.expect(r"disk: formatting EPHEMERAL", Duration::from_secs(120))
        .unwrap_or_else(|e| panic!("{e}"));
    vm.expect(MAINTENANCE_BANNER, Duration::from_secs(180))
        .unwrap_or_else(|e| panic!("{e}"));
    let v = vm
        .wait_for_version(Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(v.maintenance, "{v:?}");
    assert_eq!(v.booted_slot, "A");
    eprintln!("reset test: {} s", started.elapsed().as_secs());
}
