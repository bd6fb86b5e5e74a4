//! Issue 5: a node without DHCP, configured by the kernel command line's
//! `ip=` (static address, gateway, hostname, device), reaches maintenance
//! mode and answers the API on that address.

use std::time::{Duration, Instant};

use cairn_tests::{Images, Vm, VmConfig, MAINTENANCE_BANNER};

#[test]
fn kernel_ip_static_address_and_hostname() {
    let started = Instant::now();
    let mut config = VmConfig::direct(
        "network-static",
        &Images::locate(),
        "ip=10.0.2.20::10.0.2.2:255.255.255.0:node1:eth0:off",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    // apid's forward goes to the static address, not QEMU's DHCP one.
    config.guest_addr = Some("10.0.2.20".into());
    let mut vm = Vm::start(&config).unwrap_or_else(|e| panic!("{e}"));
    vm.expect(MAINTENANCE_BANNER, config.boot_timeout())
        .unwrap_or_else(|e| panic!("{e}"));
    let version = vm
        .wait_for_version(Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{e}"));
    // The kernel applies ip= itself when it has IP autoconfiguration;
    // machined applies it otherwise and keeps it either way. Its summary
    // line comes before or after the banner, as the boot's timing has it.
    let address = regex::Regex::new(r"addresses: 10\.0\.2\.20/24 on eth0").unwrap();
    let addressed = cairn_tests::kube::eventually(
        "the static address on eth0",
        Duration::from_secs(60),
        Duration::from_millis(500),
        || {
            anyhow::ensure!(address.is_match(&vm.console()), "not on the console yet");
            Ok(())
        },
    );
    addressed.unwrap_or_else(|e| panic!("{e:#}\n{}", vm.console_tail(40)));
    assert_eq!(version.hostname, "node1");
    assert!(version.maintenance);
    let console = vm.console();
    assert!(
        !console.contains("asking for a DHCP lease"),
        "no DHCP with a static ip=:\n{}",
        vm.console_tail(40)
    );
    eprintln!("network_static: {:?}", started.elapsed());
}
