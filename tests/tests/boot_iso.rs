//! The ISO boots with SeaBIOS (BIOS -> GRUB El Torito -> kernel) into
//! maintenance mode, and cairnctl reads its version.

use cairn_tests::{checks, Firmware, Images, Vm, VmConfig, MAINTENANCE_BANNER};

#[test]
fn iso_boots_with_seabios_into_maintenance_mode() {
    let config = VmConfig::iso("iso-seabios", &Images::locate(), Firmware::SeaBios)
        .unwrap_or_else(|e| panic!("{e}"));
    let mut vm = Vm::start(&config).unwrap_or_else(|e| panic!("{e}"));
    vm.expect(MAINTENANCE_BANNER, config.boot_timeout())
        .unwrap_or_else(|e| panic!("{e}"));
    checks::maintenance_version_through_cairnctl(&mut vm, "");
}
