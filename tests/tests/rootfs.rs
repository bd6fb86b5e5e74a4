//! The root filesystem carries no shell and no userland tools, and the
//! booted guest's root is mounted read-only.

use std::process::Command;

use cairn_tests::{Images, Vm, VmConfig, MAINTENANCE_BANNER};

/// Programs an appliance without a shell must not carry.
const FORBIDDEN: &[&str] = &[
    "sh",
    "bash",
    "ash",
    "dash",
    "zsh",
    "busybox",
    "toybox",
    "ls",
    "cat",
    "cp",
    "mv",
    "rm",
    "ln",
    "mount",
    "chmod",
    "env",
    "coreutils",
    "su",
    "sudo",
    "login",
    "ssh",
    "sshd",
    "apt",
    "dpkg",
    "python3",
    "perl",
];

/// `unsquashfs -lls` of the rootfs inside the image's initramfs:
/// (permissions, path) per entry.
fn rootfs_listing() -> Vec<(String, String)> {
    let dir = tempfile::tempdir().unwrap();
    let sqsh = Images::locate()
        .extract_rootfs(dir.path())
        .unwrap_or_else(|e| panic!("{e}"));
    let out = Command::new("unsquashfs")
        .args(["-lls", "-d", ""])
        .arg(&sqsh)
        .output()
        .expect("running unsquashfs (squashfs-tools)");
    assert!(
        out.status.success(),
        "unsquashfs: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.len() > 10 && l.as_bytes()[1..10].iter().all(|c| b"rwxsStT-".contains(c)))
        .map(|l| {
            let perms = l[..10].to_string();
            // `-rwxr-xr-x root/root 123 2024-01-01 00:00 /sbin/machined`
            let path = l.split_whitespace().nth(5).unwrap_or_default().to_string();
            (perms, path)
        })
        .collect()
}

#[test]
fn rootfs_has_no_shell_and_no_userland_tools() {
    let listing = rootfs_listing();
    let paths: Vec<&str> = listing.iter().map(|(_, p)| p.as_str()).collect();
    for must in ["/sbin/machined", "/sbin/apid", "/etc/os-release"] {
        assert!(
            paths.contains(&must),
            "rootfs lacks {must}; it has:\n{}",
            paths.join("\n")
        );
    }
    for path in &paths {
        let name = path.rsplit('/').next().unwrap_or_default();
        assert!(!FORBIDDEN.contains(&name), "rootfs carries {path}");
    }
    for (perms, path) in &listing {
        assert!(
            !perms.contains('s') && !perms.contains('S'),
            "setuid/setgid file in rootfs: {perms} {path}"
        );
    }
}

#[test]
fn guest_root_is_read_only() {
    let config =
        VmConfig::direct("root-read-only", &Images::locate(), "").unwrap_or_else(|e| panic!("{e}"));
    let mut vm = Vm::start(&config).unwrap_or_else(|e| panic!("{e}"));
    // After switch_root, init logs the root's line from the kernel's mount
    // table (/proc/self/mountinfo) and execs machined on it. squashfs has
    // no write support, so nothing can remount it read-write later.
    let root = vm
        .expect(
            r"cairn-init: root filesystem: /dev/loop\d+ on / type squashfs \(",
            config.boot_timeout(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    let options = root
        .rsplit_once(" (")
        .and_then(|(_, o)| o.split_once(')'))
        .map(|(o, _)| o)
        .unwrap_or_default();
    assert!(
        options.split(',').any(|o| o == "ro"),
        "root not mounted read-only: {root}"
    );
    // ...and machined came up on that root.
    vm.expect(MAINTENANCE_BANNER, config.boot_timeout())
        .unwrap_or_else(|e| panic!("{e}"));
}
