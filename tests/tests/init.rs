//! init's failure path on a real kernel: an initramfs without the root
//! filesystem image makes init say what it was doing, then reboot, or wait
//! forever when the kernel command line says `panic=0`.

use std::path::Path;
use std::time::Duration;

use cairn_tests::{cpio, Boot, Images, Vm, VmConfig};

/// A direct boot of the image's own /init, alone in an initramfs.
fn init_without_rootfs(name: &str, append: &str, dir: &Path) -> VmConfig {
    let images = Images::locate();
    let mut config = VmConfig::direct(name, &images, append).unwrap_or_else(|e| panic!("{e}"));
    let initramfs = images.read_initramfs().unwrap_or_else(|e| panic!("{e}"));
    let init = cpio::find(&initramfs, "init")
        .expect("initramfs is a newc cpio")
        .expect("initramfs has /init")
        .to_vec();
    let only_init = dir.join("init-only.cpio");
    std::fs::write(
        &only_init,
        cpio::Writer::new().file("init", 0o755, &init).finish(),
    )
    .unwrap();
    if let Boot::Direct { initrd, .. } = &mut config.boot {
        *initrd = only_init;
    }
    config.no_reboot = true;
    config
}

const MISSING_ROOTFS: &str =
    r"cairn-init: attaching /rootfs.sqsh to a loop device: No such file or directory";

#[test]
fn init_reports_a_missing_rootfs_and_reboots() {
    let dir = tempfile::tempdir().unwrap();
    let config = init_without_rootfs("init-no-rootfs", "panic=-1", dir.path());
    let mut vm = Vm::start(&config).unwrap_or_else(|e| panic!("{e}"));
    vm.expect(MISSING_ROOTFS, config.boot_timeout())
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

#[test]
fn init_waits_forever_with_panic_0() {
    let dir = tempfile::tempdir().unwrap();
    let config = init_without_rootfs("init-no-rootfs-panic-0", "panic=0", dir.path());
    let mut vm = Vm::start(&config).unwrap_or_else(|e| panic!("{e}"));
    vm.expect(MISSING_ROOTFS, config.boot_timeout())
        .unwrap_or_else(|e| panic!("{e}"));
    vm.expect(
        r"cairn-init: boot failed; halted \(panic=0",
        Duration::from_secs(10),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    // Still there well after a reboot would have happened (and no kernel
    // panic from PID 1 exiting).
    std::thread::sleep(Duration::from_secs(5));
    assert!(vm.exit_status().is_none(), "QEMU exited: init did not wait");
    assert!(!vm.console().contains("Attempted to kill init"));
}
