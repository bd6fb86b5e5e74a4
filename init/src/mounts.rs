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

/// One line of `/proc/self/mountinfo`: what the kernel says is mounted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountInfo {
    pub mount_point: String,
    /// Per-mount options, e.g. `ro,relatime`.
    pub options: String,
    pub fstype: String,
    pub source: String,
}

impl MountInfo {
    /// Parses `36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw`.
    pub fn parse(line: &str) -> Option<Self> {
        let (left, right) = line.split_once(" - ")?;
        let left: Vec<&str> = left.split(' ').collect();
        let mut right = right.split(' ');
        Some(MountInfo {
            mount_point: unescape(left.get(4)?),
            options: left.get(5)?.to_string(),
            fstype: right.next()?.to_string(),
            source: unescape(right.next()?),
        })
    }

    pub fn is_read_only(&self) -> bool {
        self.options.split(',').any(|o| o == "ro")
    }
}

/// The last mount on `mount_point` (the one visible there) in a mountinfo
/// text.
pub fn find_mount(mountinfo: &str, mount_point: &str) -> Option<MountInfo> {
    mountinfo
        .lines()
        .rev()
        .filter_map(MountInfo::parse)
        .find(|m| m.mount_point == mount_point)
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|b| (b'0'..=b'7').contains(b)));
        if let (b'\\', Some(d)) = (bytes[i], octal) {
            let v = (d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
22 1 0:5 / /dev rw,nosuid relatime - devtmpfs devtmpfs rw,size=1002836k,mode=755
23 1 0:20 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw
25 1 7:0 / /newroot ro,relatime - squashfs /dev/loop0 ro,errors=continue
26 1 0:22 / /with\\040space rw - tmpfs tmpfs rw
";

    #[test]
    fn finds_the_new_root_as_the_kernel_reports_it() {
        let root = find_mount(MOUNTINFO, NEW_ROOT).unwrap();
        assert_eq!(root.fstype, "squashfs");
        assert_eq!(root.source, "/dev/loop0");
        assert_eq!(root.options, "ro,relatime");
        assert!(root.is_read_only());
        assert!(!find_mount(MOUNTINFO, "/proc").unwrap().is_read_only());
        assert_eq!(find_mount(MOUNTINFO, "/sys"), None);
    }

    #[test]
    fn mount_points_are_unescaped() {
        assert!(find_mount(MOUNTINFO, "/with space").is_some());
        assert_eq!(MountInfo::parse("garbage"), None);
    }

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
