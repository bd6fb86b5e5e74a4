//! The mounts init makes, as a table applied idempotently: a mount whose
//! target is already a mount point is skipped (the kernel or a bootloader
//! may have made it), so running the table twice changes nothing.

use rustix::mount::MountFlags;

/// One filesystem to mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mount<'a> {
    pub source: &'a str,
    pub target: &'a str,
    pub fstype: &'a str,
    pub flags: MountFlags,
    pub data: Option<&'a str>,
}

impl Mount<'_> {
    /// What init is doing while it applies this entry, for error messages.
    pub fn describe(&self) -> String {
        format!("mounting {} on {}", self.source, self.target)
    }
}

/// Pseudo-filesystems init needs before it can find the root filesystem:
/// /proc for the command line, /dev (devtmpfs) for the console, kmsg and
/// loop devices, /sys for machined later. They move into the new root.
pub const EARLY: &[Mount<'static>] = &[
    Mount {
        source: "devtmpfs",
        target: "/dev",
        fstype: "devtmpfs",
        flags: MountFlags::NOSUID,
        data: Some("mode=0755"),
    },
    Mount {
        source: "proc",
        target: "/proc",
        fstype: "proc",
        flags: MountFlags::NOSUID
            .union(MountFlags::NODEV)
            .union(MountFlags::NOEXEC),
        data: None,
    },
    Mount {
        source: "sysfs",
        target: "/sys",
        fstype: "sysfs",
        flags: MountFlags::NOSUID
            .union(MountFlags::NODEV)
            .union(MountFlags::NOEXEC),
        data: None,
    },
];

/// Mounts that move into the new root before switching to it: everything
/// in [`EARLY`].
pub fn moved_into_new_root() -> impl Iterator<Item = &'static str> {
    EARLY.iter().map(|m| m.target)
}

/// The root filesystem image inside the initramfs.
pub const ROOTFS_IMAGE: &str = "/rootfs.sqsh";
/// Where the root filesystem is mounted before switching to it.
pub const NEW_ROOT: &str = "/newroot";

/// The root filesystem: the squashfs on its loop device, read-only. `nodev`
/// is not set: the rootfs carries no device nodes, and devtmpfs moves in.
pub fn rootfs(loop_device: &str) -> Mount<'_> {
    Mount {
        source: loop_device,
        target: NEW_ROOT,
        fstype: "squashfs",
        flags: MountFlags::RDONLY,
        data: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devtmpfs_comes_first_so_kmsg_and_the_console_exist() {
        assert_eq!(EARLY[0].fstype, "devtmpfs");
        assert_eq!(EARLY[0].target, "/dev");
    }

    #[test]
    fn every_early_mount_is_nosuid_and_targets_are_unique() {
        for m in EARLY {
            assert!(
                m.flags.contains(MountFlags::NOSUID),
                "{} must be nosuid",
                m.target
            );
        }
        let mut targets: Vec<_> = EARLY.iter().map(|m| m.target).collect();
        targets.sort();
        targets.dedup();
        assert_eq!(targets.len(), EARLY.len());
    }

    #[test]
    fn proc_and_sys_cannot_hold_executables_or_devices() {
        for m in EARLY.iter().filter(|m| m.target != "/dev") {
            assert!(
                m.flags.contains(MountFlags::NOEXEC | MountFlags::NODEV),
                "{}",
                m.target
            );
        }
    }

    #[test]
    fn rootfs_is_read_only_squashfs_on_new_root() {
        let m = rootfs("/dev/loop0");
        assert_eq!(m.fstype, "squashfs");
        assert!(m.flags.contains(MountFlags::RDONLY));
        assert_eq!(m.target, NEW_ROOT);
        assert_eq!(m.describe(), "mounting /dev/loop0 on /newroot");
    }

    #[test]
    fn the_pseudo_filesystems_move_into_the_new_root() {
        let moved: Vec<_> = moved_into_new_root().collect();
        assert_eq!(moved, ["/dev", "/proc", "/sys"]);
    }
}
