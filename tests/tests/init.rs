//! init's failure path on a real kernel: an initramfs without the root
//! filesystem image makes init say what it was doing, then reboot.

use std::time::Duration;

use cairn_tests::{cpio, Boot, Images, Vm, VmConfig};

#[test]
fn init_reports_a_missing_rootfs_and_reboots() {
    let images = Images::locate();
    let mut config =
        VmConfig::direct("init-no-rootfs", &images, "panic=-1").unwrap_or_else(|e| panic!("{e}"));
    // The image's own /init, alone in an initramfs.
    let initramfs = images.read_initramfs().unwrap_or_else(|e| panic!("{e}"));
    let init = cpio::find(&initramfs, "init")
        .expect("initramfs is a newc cpio")
        .expect("initramfs has /init")
        .to_vec();
    let dir = tempfile::tempdir().unwrap();
    let only_init = dir.path().join("init-only.cpio");
    std::fs::write(
        &only_init,
        cpio::Writer::new().file("init", 0o755, &init).finish(),
    )
    .unwrap();
    if let Boot::Direct { initrd, .. } = &mut config.boot {
        *initrd = only_init;
    }
    config.no_reboot = true;

    let mut vm = Vm::start(&config).unwrap_or_else(|e| panic!("{e}"));
    let boot = config.boot_timeout();
    vm.expect(
        r"cairn-init: attaching /rootfs.sqsh to a loop device: No such file or directory",
        boot,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    vm.expect(
        r"cairn-init: boot failed; rebooting in 0 s",
        Duration::from_secs(10),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let status = vm
        .wait_exit(Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(status.success(), "QEMU exit status {status}");
}
