//! Writing the partition table and GRUB's BIOS stages to a disk: GPT with
//! the `gpt` crate, then what `grub-bios-setup` does (images/disk.sh
//! `install_bios_grub` does the same on the image file): core.img into the
//! BIOS boot partition, boot.img's code into the MBR, both patched with
//! where core.img lives. Plus the block-device ioctls the installer needs.

use std::fs::OpenOptions;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::layout::{self, Kind, LAYOUT, MIB};

/// GRUB's i386-pc boot.img fields (grub-core/boot/i386/pc/boot.S).
const BOOT_MACHINE_KERNEL_SECTOR: usize = 0x5c;
const BOOT_MACHINE_BOOT_DRIVE: usize = 0x64;
const BOOT_MACHINE_DRIVE_CHECK: usize = 0x66;
const MBR_CODE_SIZE: usize = 440;
/// The first blocklist at the end of diskboot.img, core.img's first sector
/// (grub-core/boot/i386/pc/diskboot.S).
const DISKBOOT_BLOCKLIST: usize = 512 - 12;
const DISKBOOT_SEGMENT: u16 = 0x820;

#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    #[error("cannot write the partition table of {disk}: {source}")]
    Gpt {
        disk: PathBuf,
        source: gpt::GptError,
    },
    #[error("cannot write the MBR of {disk}: {source}")]
    Mbr {
        disk: PathBuf,
        source: gpt::mbr::MBRError,
    },
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("GRUB's core.img is {0} bytes; the BIOS boot partition holds 1 MiB")]
    CoreTooLarge(usize),
    #[error("GRUB's boot.img is {0} bytes, expected 512")]
    BadBootImg(usize),
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> DiskError {
    let path = path.to_path_buf();
    move |source| DiskError::Io { what, path, source }
}

/// Writes a new GPT with [`LAYOUT`] (EPHEMERAL to the end of the disk) and a
/// protective MBR. `lba` is the logical block size (512 or 4096).
pub fn write_gpt(disk: &Path, lba: u64) -> Result<(), DiskError> {
    let gerr = |source| DiskError::Gpt {
        disk: disk.to_path_buf(),
        source,
    };
    let lb = if lba == 4096 {
        gpt::disk::LogicalBlockSize::Lb4096
    } else {
        gpt::disk::LogicalBlockSize::Lb512
    };
    let mut g = gpt::GptConfig::new()
        .writable(true)
        .logical_block_size(lb)
        .create(disk)
        .map_err(gerr)?;
    let header = g.header().clone();
    let last_usable = header.last_usable;
    for ((i, part), start) in LAYOUT.iter().enumerate().zip(layout::starts_mib()) {
        let first = start * MIB / lba;
        let length = if part.size_mib == 0 {
            last_usable + 1 - first
        } else {
            part.size_mib * MIB / lba
        };
        let t = match part.kind {
            Kind::Efi => gpt::partition_types::EFI,
            Kind::BiosBoot => gpt::partition_types::BIOS,
            Kind::Linux => gpt::partition_types::LINUX_FS,
        };
        g.add_partition_at(part.name, i as u32 + 1, first, length, t, 0)
            .map_err(gerr)?;
    }
    g.write().map_err(gerr)?;
    Ok(())
}

fn put_le(buf: &mut [u8], at: usize, value: u64, bytes: usize) {
    buf[at..at + bytes].copy_from_slice(&value.to_le_bytes()[..bytes]);
}

/// core.img with its first blocklist pointing at the rest of itself, at
/// `start_lba` (512-byte sectors).
pub fn patch_core(core: &[u8], start_lba: u64) -> Result<Vec<u8>, DiskError> {
    let sectors = core.len().div_ceil(512);
    if sectors > 2048 {
        return Err(DiskError::CoreTooLarge(core.len()));
    }
    let mut c = core.to_vec();
    put_le(&mut c, DISKBOOT_BLOCKLIST, start_lba + 1, 8);
    put_le(&mut c, DISKBOOT_BLOCKLIST + 8, sectors as u64 - 1, 2);
    put_le(
        &mut c,
        DISKBOOT_BLOCKLIST + 10,
        u64::from(DISKBOOT_SEGMENT),
        2,
    );
    Ok(c)
}

/// boot.img's code for the MBR, loading core.img from `core_lba`.
pub fn patch_boot(boot: &[u8], core_lba: u64) -> Result<[u8; MBR_CODE_SIZE], DiskError> {
    if boot.len() != 512 {
        return Err(DiskError::BadBootImg(boot.len()));
    }
    let mut code = [0u8; MBR_CODE_SIZE];
    code.copy_from_slice(&boot[..MBR_CODE_SIZE]);
    put_le(&mut code, BOOT_MACHINE_KERNEL_SECTOR, core_lba, 8);
    // 0xff: load core.img from the drive the BIOS booted (DL).
    code[BOOT_MACHINE_BOOT_DRIVE] = 0xff;
    // Hard disk: NOPs over the floppy-probe jump, as grub-bios-setup does.
    code[BOOT_MACHINE_DRIVE_CHECK] = 0x90;
    code[BOOT_MACHINE_DRIVE_CHECK + 1] = 0x90;
    Ok(code)
}

/// Installs GRUB for BIOS: core.img into the BIOS boot partition and the
/// MBR's code, keeping a protective MBR for the GPT.
pub fn install_bios_grub(
    disk: &Path,
    disk_bytes: u64,
    boot_img: &[u8],
    core_img: &[u8],
) -> Result<(), DiskError> {
    let bios = layout::number(config::constants::partition::BIOS) as usize - 1;
    let core_lba = layout::starts_mib()[bios] * MIB / 512;
    let core = patch_core(core_img, core_lba)?;
    let code = patch_boot(boot_img, core_lba)?;
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(disk)
        .map_err(io("opening", disk))?;
    f.write_all_at(&core, core_lba * 512)
        .map_err(io("writing core.img to", disk))?;
    let sectors = (disk_bytes / 512)
        .saturating_sub(1)
        .min(u64::from(u32::MAX)) as u32;
    let mut mbr = gpt::mbr::ProtectiveMBR::with_lb_size(sectors);
    mbr.set_bootcode(code);
    mbr.overwrite_lba0(&mut f)
        .map_err(|source| DiskError::Mbr {
            disk: disk.to_path_buf(),
            source,
        })?;
    f.sync_all().map_err(io("syncing", disk))?;
    Ok(())
}

const BLKRRPART: libc::c_ulong = 0x125f;
const BLKZEROOUT: libc::c_ulong = 0x127f;

/// Asks the kernel to read the partition table again.
pub fn reread_partitions(disk: &Path) -> Result<(), DiskError> {
    let f = std::fs::File::open(disk).map_err(io("opening", disk))?;
    // SAFETY: BLKRRPART takes no argument; the descriptor is open.
    let rc = unsafe { libc::ioctl(f.as_raw_fd(), BLKRRPART as _) };
    if rc != 0 {
        return Err(io("re-reading the partition table of", disk)(
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// Zeroes `len` bytes from `start` (BLKZEROOUT: the device or the kernel
/// writes the zeros; on a regular file, a plain write).
pub fn zero(path: &Path, start: u64, len: u64) -> Result<(), DiskError> {
    let f = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(io("opening", path))?;
    let is_block = f.metadata().map(|m| {
        use std::os::unix::fs::FileTypeExt;
        m.file_type().is_block_device()
    });
    if is_block.unwrap_or(false) {
        let range: [u64; 2] = [start, len];
        // SAFETY: BLKZEROOUT reads a u64[2] {start, length} that lives
        // across the call.
        let rc = unsafe { libc::ioctl(f.as_raw_fd(), BLKZEROOUT as _, range.as_ptr()) };
        if rc != 0 {
            return Err(io("zeroing", path)(std::io::Error::last_os_error()));
        }
    } else {
        let zeros = vec![0u8; MIB as usize];
        let mut at = start;
        while at < start + len {
            let n = (start + len - at).min(MIB);
            f.write_all_at(&zeros[..n as usize], at)
                .map_err(io("zeroing", path))?;
            at += n;
        }
    }
    f.sync_all().map_err(io("syncing", path))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The partition table as sgdisk sees it: names, types and starts of
    /// the raw image, EPHEMERAL to the end.
    #[tokio::test]
    async fn gpt_and_bios_stages_match_the_image_build() {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("disk.raw");
        let size = 3 * 1024 * MIB;
        std::fs::File::create(&img).unwrap().set_len(size).unwrap();
        write_gpt(&img, 512).unwrap();
        let mut boot = vec![0u8; 512];
        boot[0] = 0xeb;
        let core = vec![7u8; 50_000];
        install_bios_grub(&img, size, &boot, &core).unwrap();

        let g = gpt::GptConfig::new()
            .only_valid_headers(true)
            .open(&img)
            .unwrap();
        let parts = g.partitions();
        let names: Vec<&str> = parts.values().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["EFI", "BIOS", "BOOT", "META", "STATE", "EPHEMERAL"]);
        assert_eq!(parts[&2].part_type_guid, gpt::partition_types::BIOS);
        assert_eq!(parts[&3].first_lba, 102 * 2048);
        assert_eq!(parts[&6].last_lba, g.header().last_usable);

        let bytes = std::fs::read(&img).unwrap();
        assert_eq!(&bytes[510..512], &[0x55, 0xaa]);
        assert_eq!(bytes[0], 0xeb);
        assert_eq!(bytes[446 + 4], 0xee, "protective MBR partition");
        let core_lba = 101 * 2048u64;
        assert_eq!(&bytes[0x5c..0x64], &core_lba.to_le_bytes());
        assert_eq!(bytes[0x64], 0xff);
        let at = (core_lba * 512) as usize;
        assert_eq!(&bytes[at + 500..at + 508], &(core_lba + 1).to_le_bytes());
        assert_eq!(u16::from_le_bytes([bytes[at + 508], bytes[at + 509]]), 97);

        if Path::new("/sbin/sgdisk").exists() {
            let out = runtime::exec::run("/sbin/sgdisk", &["-v", img.to_str().unwrap()])
                .await
                .unwrap();
            assert!(out.output.contains("No problems found"), "{}", out.output);
        }
        zero(&img, 0, MIB).unwrap();
        assert!(std::fs::read(&img).unwrap()[..MIB as usize]
            .iter()
            .all(|b| *b == 0));
    }
}
