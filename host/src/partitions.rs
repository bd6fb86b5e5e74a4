//! The system disk's partitions: STATE on /system/state and EPHEMERAL on
//! /var. On first boot a blank EPHEMERAL is grown to the end of the disk
//! (GPT entry and backup header, with the `gpt` crate) and formatted ext4;
//! a blank STATE is formatted. Without a system disk (live ISO boot) /var
//! is a tmpfs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use config::constants::{partition, EPHEMERAL_MOUNT, STATE_MOUNT};
use nix::mount::MsFlags;

use crate::disks::BlockDevice;
use crate::probe::{self, Contents};
use system::mounts::{self, MountPoint};
use system::syscall::Syscalls;

#[derive(Debug, thiserror::Error)]
pub enum PartitionError {
    #[error("cannot read the GPT of {disk}: {source}")]
    ReadGpt {
        disk: PathBuf,
        #[source]
        source: gpt::GptError,
    },
    #[error("cannot write the GPT of {disk}: {source}")]
    WriteGpt {
        disk: PathBuf,
        #[source]
        source: gpt::GptError,
    },
    #[error("partition {partn} is not in the GPT of {disk}")]
    NoSuchPartition { disk: PathBuf, partn: u32 },
    #[error("cannot tell the kernel about the new size of partition {partn} of {disk}: {source}")]
    Reread {
        disk: PathBuf,
        partn: u32,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot probe {device}: {source}")]
    Probe {
        device: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{device} holds data machined does not recognize; refusing to format it as {label}")]
    UnknownContents { device: PathBuf, label: String },
    #[error("mke2fs on {device} failed: {message}")]
    Format { device: PathBuf, message: String },
    #[error(transparent)]
    Mount(#[from] mounts::MountError),
}

/// The partitions machined uses on the system disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemPartitions {
    pub disk: Option<String>,
    pub state: Option<BlockDevice>,
    pub ephemeral: Option<BlockDevice>,
}

fn by_label(devices: &[BlockDevice], label: &str) -> Option<BlockDevice> {
    // GPT partition name first, filesystem label second.
    devices
        .iter()
        .find(|d| d.is_partition && d.partname.as_deref() == Some(label))
        .or_else(|| {
            devices.iter().find(|d| {
                matches!(probe::probe(&d.node), Ok(Contents::Filesystem(fs)) if fs.label() == label)
            })
        })
        .cloned()
}

/// Finds STATE and EPHEMERAL; `None` when neither exists (live boot).
pub fn find(devices: &[BlockDevice]) -> Option<SystemPartitions> {
    let state = by_label(devices, partition::STATE);
    let ephemeral = by_label(devices, partition::EPHEMERAL);
    if state.is_none() && ephemeral.is_none() {
        return None;
    }
    let disk = ephemeral
        .as_ref()
        .or(state.as_ref())
        .and_then(|p| p.parent.clone());
    Some(SystemPartitions {
        disk,
        state,
        ephemeral,
    })
}

/// The result of growing a partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grown {
    pub first_lba: u64,
    pub old_last_lba: u64,
    pub new_last_lba: u64,
    pub lba_size: u64,
}

fn lb_size(bytes: u64) -> gpt::disk::LogicalBlockSize {
    if bytes == 4096 {
        gpt::disk::LogicalBlockSize::Lb4096
    } else {
        gpt::disk::LogicalBlockSize::Lb512
    }
}

/// Grows partition `partn` (which must end last on the disk) to the end of
/// the disk, moving the backup GPT header and partition array to the new
/// end. Returns `None` when there is no room to grow.
pub fn grow_to_end(
    disk: &Path,
    partn: u32,
    lba_size: u64,
) -> Result<Option<Grown>, PartitionError> {
    let read_err = |source| PartitionError::ReadGpt {
        disk: disk.to_path_buf(),
        source,
    };
    // The backup header of a disk that grew is not at the (new) end, so
    // opening may only find the primary; that is expected.
    let mut gpt = gpt::GptConfig::new()
        .writable(true)
        .logical_block_size(lb_size(lba_size))
        .open(disk)
        .map_err(&read_err)?;
    let header = gpt
        .primary_header()
        .map_err(|e| read_err(e.into()))?
        .clone();
    let mut parts: BTreeMap<u32, gpt::partition::Partition> = gpt.partitions().clone();
    let last_end = parts.values().map(|p| p.last_lba).max().unwrap_or(0);
    let Some(part) = parts.get_mut(&partn) else {
        return Err(PartitionError::NoSuchPartition {
            disk: disk.to_path_buf(),
            partn,
        });
    };
    if part.last_lba != last_end {
        // Not the last partition: growing would overlap another.
        return Ok(None);
    }
    let total_lbas = std::fs::metadata(disk)
        .map(|m| m.len())
        .ok()
        .filter(|l| *l > 0)
        .or_else(|| block_device_size(disk))
        .unwrap_or(0)
        / lba_size;
    let array_lbas = (u64::from(header.num_parts) * u64::from(header.part_size)).div_ceil(lba_size);
    // The backup header is the last LBA, its partition array right before.
    let new_last = match total_lbas.checked_sub(1 + array_lbas + 1) {
        Some(n) => n,
        None => return Ok(None),
    };
    if new_last <= part.last_lba {
        return Ok(None);
    }
    let grown = Grown {
        first_lba: part.first_lba,
        old_last_lba: part.last_lba,
        new_last_lba: new_last,
        lba_size,
    };
    part.last_lba = new_last;
    let write_err = |source| PartitionError::WriteGpt {
        disk: disk.to_path_buf(),
        source,
    };
    // update_partitions recomputes both headers for the current disk size,
    // which moves the backup header to the new last LBA.
    gpt.update_partitions(parts).map_err(write_err)?;
    gpt.write_inplace().map_err(write_err)?;
    Ok(Some(grown))
}

/// Size of a block device (a regular file's metadata says 0 for these).
fn block_device_size(path: &Path) -> Option<u64> {
    use std::io::Seek;
    std::fs::File::open(path)
        .ok()?
        .seek(std::io::SeekFrom::End(0))
        .ok()
}

/// `struct blkpg_partition` from <linux/blkpg.h>.
#[repr(C)]
struct BlkpgPartition {
    start: libc::c_longlong,
    length: libc::c_longlong,
    pno: libc::c_int,
    devname: [libc::c_char; 64],
    volname: [libc::c_char; 64],
}

/// `struct blkpg_ioctl_arg` from <linux/blkpg.h>.
#[repr(C)]
struct BlkpgIoctlArg {
    op: libc::c_int,
    flags: libc::c_int,
    datalen: libc::c_int,
    data: *mut libc::c_void,
}

const BLKPG: libc::c_ulong = 0x1269;
const BLKPG_RESIZE_PARTITION: libc::c_int = 3;

/// Tells the kernel a partition's new size (works while other partitions
/// of the disk are in use, unlike re-reading the whole table).
pub fn resize_in_kernel(disk: &Path, partn: u32, g: &Grown) -> Result<(), PartitionError> {
    use std::os::fd::AsRawFd;
    let err = |source| PartitionError::Reread {
        disk: disk.to_path_buf(),
        partn,
        source,
    };
    let f = std::fs::File::open(disk).map_err(err)?;
    let mut part = BlkpgPartition {
        start: (g.first_lba * g.lba_size) as libc::c_longlong,
        length: ((g.new_last_lba - g.first_lba + 1) * g.lba_size) as libc::c_longlong,
        pno: partn as libc::c_int,
        devname: [0; 64],
        volname: [0; 64],
    };
    let mut arg = BlkpgIoctlArg {
        op: BLKPG_RESIZE_PARTITION,
        flags: 0,
        datalen: std::mem::size_of::<BlkpgPartition>() as libc::c_int,
        data: (&mut part as *mut BlkpgPartition).cast(),
    };
    // SAFETY: BLKPG takes a pointer to a blkpg_ioctl_arg whose data points
    // to a blkpg_partition; both are repr(C) copies of the uapi structs and
    // live across the call.
    let rc = unsafe { libc::ioctl(f.as_raw_fd(), BLKPG as _, &mut arg as *mut BlkpgIoctlArg) };
    if rc != 0 {
        return Err(err(std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Formats `device` ext4 with `label` (exec /sbin/mke2fs, per the image
/// contract).
pub async fn format_ext4(device: &Path, label: &str) -> Result<(), PartitionError> {
    let dev = device.to_string_lossy();
    let out = runtime::exec::run(
        "/sbin/mke2fs",
        &[
            "-q",
            "-F",
            "-t",
            "ext4",
            "-L",
            label,
            "-E",
            "lazy_itable_init=1,lazy_journal_init=1",
            &dev,
        ],
    )
    .await
    .map_err(|e| PartitionError::Format {
        device: device.to_path_buf(),
        message: e.to_string(),
    })?;
    if !out.status.success() {
        return Err(PartitionError::Format {
            device: device.to_path_buf(),
            message: format!("{}: {}", out.status, out.output.trim()),
        });
    }
    Ok(())
}

/// Makes sure `part` carries a filesystem: formats it when blank, growing
/// it first when `grow` (EPHEMERAL on first boot).
async fn ensure_filesystem(
    part: &BlockDevice,
    label: &str,
    grow: bool,
) -> Result<&'static str, PartitionError> {
    let contents = probe::probe(&part.node).map_err(|source| PartitionError::Probe {
        device: part.node.clone(),
        source,
    })?;
    match contents {
        Contents::Filesystem(fs) => Ok(fs.fstype()),
        Contents::Unknown => Err(PartitionError::UnknownContents {
            device: part.node.clone(),
            label: label.to_string(),
        }),
        Contents::Blank => {
            if let (true, Some(disk), Some(partn)) = (grow, &part.parent, part.partn) {
                let disk_node = part.node.with_file_name(disk);
                let lba = std::fs::read_to_string(format!(
                    "/sys/class/block/{disk}/queue/logical_block_size"
                ))
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(512);
                match grow_to_end(&disk_node, partn, lba)? {
                    Some(g) => {
                        resize_in_kernel(&disk_node, partn, &g)?;
                        runtime::console!(
                            "disk: grew {} to the end of {} ({} MiB)",
                            label,
                            disk_node.display(),
                            ((g.new_last_lba - g.first_lba + 1) * g.lba_size) >> 20
                        );
                    }
                    None => tracing::info!(partition = label, "already fills the disk"),
                }
            }
            runtime::console!(
                "disk: formatting {} ({}) as ext4",
                label,
                part.node.display()
            );
            format_ext4(&part.node, label).await?;
            Ok("ext4")
        }
    }
}

/// What `/var` ended up on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VarBacking {
    Ephemeral(PathBuf),
    Tmpfs,
}

/// Mounts STATE and EPHEMERAL (or a tmpfs /var). A failure with STATE is
/// returned after /var is mounted, so the node still boots to maintenance.
pub async fn mount_system(
    sys: &dyn Syscalls,
    devices: &[BlockDevice],
) -> (VarBacking, Result<(), PartitionError>) {
    let found = find(devices);
    let mut state_result = Ok(());
    if let Some(state) = found.as_ref().and_then(|f| f.state.as_ref()) {
        state_result = async {
            let fstype = ensure_filesystem(state, partition::STATE, false).await?;
            let m = MountPoint::new(
                &state.node.to_string_lossy(),
                STATE_MOUNT,
                fstype,
                MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
                None,
            );
            mounts::apply_one(sys, &m)?;
            Ok(())
        }
        .await;
    }
    let var = match found.as_ref().and_then(|f| f.ephemeral.as_ref()) {
        Some(eph) => {
            let r: Result<(), PartitionError> = async {
                let fstype = ensure_filesystem(eph, partition::EPHEMERAL, true).await?;
                let m = MountPoint::new(
                    &eph.node.to_string_lossy(),
                    EPHEMERAL_MOUNT,
                    fstype,
                    MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
                    None,
                );
                mounts::apply_one(sys, &m)?;
                Ok(())
            }
            .await;
            match r {
                Ok(()) => VarBacking::Ephemeral(eph.node.clone()),
                Err(e) => {
                    tracing::error!(error = %e, "cannot use EPHEMERAL, /var is a tmpfs");
                    runtime::console!("disk: cannot use EPHEMERAL ({e}); /var is a tmpfs");
                    VarBacking::Tmpfs
                }
            }
        }
        None => VarBacking::Tmpfs,
    };
    if var == VarBacking::Tmpfs {
        let m = MountPoint::tmpfs(
            EPHEMERAL_MOUNT,
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            "mode=0755",
        );
        if let Err(e) = mounts::apply_one(sys, &m) {
            tracing::error!(error = %e, "cannot mount a tmpfs on /var");
        }
    }
    (var, state_result)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    /// Builds a small GPT image like the raw image's layout (EPHEMERAL
    /// last), then makes the file bigger, as a user's disk would be.
    fn make_image(path: &Path, size: u64) {
        let f = std::fs::File::create(path).unwrap();
        f.set_len(size).unwrap();
        drop(f);
        let mut disk = gpt::GptConfig::new().writable(true).create(path).unwrap();
        // A protective MBR is what real tools write; the gpt crate reads
        // without it, but write it for realism.
        let mbr = gpt::mbr::ProtectiveMBR::with_lb_size(((size / 512) - 1) as u32);
        mbr.overwrite_lba0(disk.device_mut()).unwrap();
        disk.add_partition("EFI", 4 * MIB, gpt::partition_types::EFI, 0, None)
            .unwrap();
        disk.add_partition("STATE", 4 * MIB, gpt::partition_types::LINUX_FS, 0, None)
            .unwrap();
        disk.add_partition(
            "EPHEMERAL",
            4 * MIB,
            gpt::partition_types::LINUX_FS,
            0,
            None,
        )
        .unwrap();
        disk.write().unwrap();
    }

    #[test]
    fn grows_last_partition_and_moves_backup_header() {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("disk.raw");
        make_image(&img, 16 * MIB);
        std::fs::OpenOptions::new()
            .write(true)
            .open(&img)
            .unwrap()
            .set_len(64 * MIB)
            .unwrap();

        let g = grow_to_end(&img, 3, 512).unwrap().expect("should grow");
        let total = 64 * MIB / 512;
        assert_eq!(g.new_last_lba, total - 34);
        assert!(g.old_last_lba < g.new_last_lba);

        // Both headers valid again, backup at the very end.
        let disk = gpt::GptConfig::new()
            .only_valid_headers(true)
            .open(&img)
            .unwrap();
        assert_eq!(disk.primary_header().unwrap().backup_lba, total - 1);
        assert_eq!(disk.backup_header().unwrap().current_lba, total - 1);
        assert_eq!(disk.partitions()[&3].last_lba, total - 34);
        assert_eq!(disk.partitions()[&3].name, "EPHEMERAL");
        assert_eq!(disk.partitions()[&2].name, "STATE");
        assert_eq!(
            disk.partitions()[&2].last_lba,
            disk.partitions()[&2].last_lba
        );

        // Second boot: nothing to do.
        assert_eq!(grow_to_end(&img, 3, 512).unwrap(), None);
        // Not the last partition: never grown.
        assert_eq!(grow_to_end(&img, 2, 512).unwrap(), None);
        assert!(matches!(
            grow_to_end(&img, 9, 512),
            Err(PartitionError::NoSuchPartition { .. })
        ));
    }

    /// sgdisk (gdisk) agrees that the grown table is sound.
    #[tokio::test]
    async fn sgdisk_verifies_grown_table() {
        if !Path::new("/sbin/sgdisk").exists() {
            eprintln!("skipping: sgdisk is not installed");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("disk.raw");
        make_image(&img, 16 * MIB);
        std::fs::OpenOptions::new()
            .write(true)
            .open(&img)
            .unwrap()
            .set_len(48 * MIB)
            .unwrap();
        grow_to_end(&img, 3, 512).unwrap().unwrap();
        let out = runtime::exec::run("/sbin/sgdisk", &["-v", img.to_str().unwrap()])
            .await
            .unwrap();
        assert!(out.status.success(), "{}", out.output);
        assert!(out.output.contains("No problems found"), "{}", out.output);
    }

    #[test]
    fn finds_partitions_by_name() {
        let dev = |name: &str, partname: Option<&str>| BlockDevice {
            name: name.into(),
            node: PathBuf::from("/nonexistent").join(name),
            is_partition: partname.is_some(),
            partn: None,
            partname: partname.map(str::to_string),
            parent: partname.map(|_| "vda".to_string()),
            size_bytes: 1,
            read_only: false,
        };
        let devices = vec![
            dev("vda", None),
            dev("vda5", Some("STATE")),
            dev("vda6", Some("EPHEMERAL")),
        ];
        let found = find(&devices).unwrap();
        assert_eq!(found.disk.as_deref(), Some("vda"));
        assert_eq!(found.state.unwrap().name, "vda5");
        assert_eq!(found.ephemeral.unwrap().name, "vda6");
        assert_eq!(find(&devices[..1]), None);
    }
}
