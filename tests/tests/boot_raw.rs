//! The raw disk image boots with OVMF (UEFI -> GRUB on the ESP -> slot A on
//! BOOT) into maintenance mode, and cairnctl reads its version. The image
//! sits behind a qcow2 overlay, so it is never modified.

use cairn_tests::{checks, Firmware, Images, Vm, VmConfig, MAINTENANCE_BANNER};

#[test]
fn raw_disk_boots_with_ovmf_into_maintenance_mode() {
    let config = VmConfig::disk("raw-ovmf", &Images::locate(), Firmware::Ovmf)
        .unwrap_or_else(|e| panic!("{e}"));
    let mut vm = Vm::start(&config).unwrap_or_else(|e| panic!("{e}"));
    vm.expect(MAINTENANCE_BANNER, config.boot_timeout())
        .unwrap_or_else(|e| panic!("{e}"));
    checks::maintenance_version_through_cairnctl(&mut vm, "A");
}
