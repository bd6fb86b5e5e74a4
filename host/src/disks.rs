//! Block devices from sysfs: whole disks and their partitions, with GPT
//! partition names (`PARTNAME=` in each device's `uevent`).

use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockDevice {
    /// Kernel name, e.g. `vda6`.
    pub name: String,
    /// Device node, e.g. `/dev/vda6`.
    pub node: PathBuf,
    pub is_partition: bool,
    /// Partition number on its disk.
    pub partn: Option<u32>,
    /// GPT partition name.
    pub partname: Option<String>,
    /// Kernel name of the whole disk a partition belongs to.
    pub parent: Option<String>,
    pub size_bytes: u64,
    pub read_only: bool,
}

fn uevent_value<'a>(uevent: &'a str, key: &str) -> Option<&'a str> {
    uevent
        .lines()
        .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
}

/// Reads one device's sysfs directory (`/sys/class/block/<name>`).
pub fn read_device(sys_dir: &Path, dev_root: &Path) -> Option<BlockDevice> {
    let uevent = std::fs::read_to_string(sys_dir.join("uevent")).ok()?;
    let name = uevent_value(&uevent, "DEVNAME")?.to_string();
    let is_partition = uevent_value(&uevent, "DEVTYPE") == Some("partition");
    let read_u64 = |f: &str| {
        std::fs::read_to_string(sys_dir.join(f))
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
    };
    // The parent disk is the directory above a partition's real path.
    let parent = is_partition
        .then(|| std::fs::canonicalize(sys_dir).ok())
        .flatten()
        .and_then(|p| {
            p.parent()
                .and_then(|d| d.file_name())
                .map(|n| n.to_string_lossy().into_owned())
        });
    Some(BlockDevice {
        node: dev_root.join(&name),
        partn: uevent_value(&uevent, "PARTN").and_then(|v| v.parse().ok()),
        partname: uevent_value(&uevent, "PARTNAME").map(str::to_string),
        parent,
        size_bytes: read_u64("size").unwrap_or(0) * 512,
        read_only: read_u64("ro") == Some(1),
        is_partition,
        name,
    })
}

/// Every block device with a size, skipping RAM and loop devices (the
/// rootfs squashfs is on a loop device; it is never a disk to use).
pub fn list() -> Vec<BlockDevice> {
    list_in(Path::new("/sys/class/block"), Path::new("/dev"))
}

pub fn list_in(sys_class_block: &Path, dev_root: &Path) -> Vec<BlockDevice> {
    let Ok(entries) = std::fs::read_dir(sys_class_block) else {
        return Vec::new();
    };
    let mut devices: Vec<BlockDevice> = entries
        .flatten()
        .filter_map(|e| read_device(&e.path(), dev_root))
        .filter(|d| d.size_bytes > 0)
        .filter(|d| {
            !["loop", "ram", "zram"]
                .iter()
                .any(|p| d.name.starts_with(p))
        })
        .filter(|d| !is_empty_optical_drive(d))
        .collect();
    devices.sort_by(|a, b| a.name.cmp(&b.name));
    devices
}

/// Whether `d` is an optical drive without a disc: nothing on it to probe
/// or use. Its sysfs size is a placeholder until the drive is first opened,
/// and every plain open of an empty drive makes the caller wait while the
/// kernel polls the drive (about 0.15 s per open under QEMU TCG, and boot
/// probes each device several times), so it is left out of the list. The
/// open is non-blocking (`O_NONBLOCK` skips cdrom_open's media checks) and
/// the drive answers `CDROM_DRIVE_STATUS` at once.
fn is_empty_optical_drive(d: &BlockDevice) -> bool {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    // <linux/cdrom.h>
    const CDROM_DRIVE_STATUS: libc::c_ulong = 0x5326;
    const CDSL_CURRENT: libc::c_int = libc::c_int::MAX;
    const CDS_NO_DISC: libc::c_int = 1;
    const CDS_TRAY_OPEN: libc::c_int = 2;
    if !d.name.starts_with("sr") || d.is_partition {
        return false;
    }
    let Ok(f) = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&d.node)
    else {
        return false;
    };
    // SAFETY: CDROM_DRIVE_STATUS takes a slot number by value and returns a
    // status code; `f` is an open descriptor for the whole call.
    let status = unsafe { libc::ioctl(f.as_raw_fd(), CDROM_DRIVE_STATUS as _, CDSL_CURRENT) };
    status == CDS_NO_DISC || status == CDS_TRAY_OPEN
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_dev(root: &Path, path: &str, uevent: &str, size: u64) {
        let d = root.join(path);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("uevent"), uevent).unwrap();
        std::fs::write(d.join("size"), format!("{size}\n")).unwrap();
        std::fs::write(d.join("ro"), "0\n").unwrap();
    }

    #[test]
    fn reads_disks_partitions_and_names() {
        let root = tempfile::tempdir().unwrap();
        let devices = root.path().join("devices/pci0/virtio1/block");
        fake_dev(
            &devices,
            "vda",
            "MAJOR=254\nMINOR=0\nDEVNAME=vda\nDEVTYPE=disk\n",
            4194304,
        );
        fake_dev(
            &devices,
            "vda/vda6",
            "MAJOR=254\nMINOR=6\nDEVNAME=vda6\nDEVTYPE=partition\nPARTN=6\nPARTNAME=EPHEMERAL\n",
            1000,
        );
        fake_dev(
            &root.path().join("devices/virtual/block"),
            "loop0",
            "DEVNAME=loop0\nDEVTYPE=disk\n",
            100,
        );
        let class = root.path().join("class/block");
        std::fs::create_dir_all(&class).unwrap();
        std::os::unix::fs::symlink(devices.join("vda"), class.join("vda")).unwrap();
        std::os::unix::fs::symlink(devices.join("vda/vda6"), class.join("vda6")).unwrap();
        std::os::unix::fs::symlink(
            root.path().join("devices/virtual/block/loop0"),
            class.join("loop0"),
        )
        .unwrap();

        let list = list_in(&class, Path::new("/dev"));
        assert_eq!(list.len(), 2, "{list:?}");
        assert_eq!(list[0].name, "vda");
        assert!(!list[0].is_partition);
        assert_eq!(list[0].size_bytes, 4194304 * 512);
        let p = &list[1];
        assert_eq!(p.node, PathBuf::from("/dev/vda6"));
        assert_eq!(p.partn, Some(6));
        assert_eq!(p.partname.as_deref(), Some("EPHEMERAL"));
        assert_eq!(p.parent.as_deref(), Some("vda"));
    }
}
