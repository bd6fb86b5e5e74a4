//! Installing Cairn from the live ISO to the disk the machine config names
//! (`machine.install.disk`), when that config is applied in maintenance
//! mode: partition the disk as the raw image is laid out (`layout`), GRUB
//! for BIOS and UEFI from the files the image carries in
//! `/usr/share/cairn/boot` (grub-install is not in the image), slot A from
//! the boot medium, META, and the config on STATE; then reboot into the
//! installed system. EPHEMERAL is left blank: the first boot formats it.
//!
//! A disk that holds partitions or filesystems is refused unless the config
//! says `wipe: true`, which zeroes the whole disk first.

pub mod disk;
pub mod layout;

use std::path::{Path, PathBuf};
use std::time::Duration;

use config::constants::partition;
use nix::mount::MsFlags;

use crate::upgrade::slots::Slots;
use disk::DiskError;
use host::disks::BlockDevice;
use host::meta::{keys, MetaStore, Values};
use host::probe::{self, Contents, Filesystem};
use layout::MIB;
use system::mounts::{self, MountPoint};
use system::syscall::Real;

/// GRUB's images and menus, put into the rootfs by images/grub.sh
/// `grub_boot_assets`.
pub const ASSETS_DIR: &str = "/usr/share/cairn/boot";
/// Scratch mount points (on the /system tmpfs).
const WORK_DIR: &str = "/system/run/install";

#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("install disk {disk} does not exist; the disks are: {available}")]
    NoSuchDisk { disk: String, available: String },
    #[error("install disk {disk} is a partition; name the whole disk (e.g. /dev/vda)")]
    Partition { disk: String },
    #[error("install disk {disk} is read-only")]
    ReadOnly { disk: String },
    #[error("install disk {disk} is {have} MiB; Cairn needs at least {need} MiB")]
    TooSmall { disk: String, have: u64, need: u64 },
    #[error(
        "install disk {disk} is not empty: it holds {contents}; set machine.install.wipe: true to erase it, or name another disk"
    )]
    NotEmpty { disk: String, contents: String },
    #[error("install disk {disk} holds the system this node runs from (the boot medium)")]
    BootMedium { disk: String },
    #[error("no boot medium with /boot/vmlinuz and /boot/initramfs.img was found (is this a live ISO boot?)")]
    NoMedium,
    #[error(
        "the image carries no {0} (in {ASSETS_DIR}); it was not built by images/build-image.sh"
    )]
    NoAsset(String),
    #[error("partition {0} did not appear after the partition table was written")]
    NoPartition(String),
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Disk(#[from] DiskError),
    #[error(transparent)]
    Format(#[from] host::partitions::PartitionError),
    #[error(transparent)]
    Mount(#[from] mounts::MountError),
    #[error("mkfs.fat on {device} failed: {message}")]
    Fat { device: PathBuf, message: String },
    #[error(transparent)]
    Slots(#[from] crate::upgrade::slots::SlotError),
    #[error(transparent)]
    Meta(#[from] host::meta::MetaError),
    #[error("writing the config to STATE: {0}")]
    State(#[from] crate::apply::store::StoreError),
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> InstallError {
    let path = path.to_path_buf();
    move |source| InstallError::Io { what, path, source }
}

/// A disk that may be installed to.
#[derive(Debug, Clone)]
pub struct Target {
    pub node: PathBuf,
    pub name: String,
    pub size: u64,
    pub lba: u64,
    pub wipe: bool,
    /// What was on it (empty for a blank disk).
    pub contents: String,
}

/// Checks `disk` (a /dev path) before anything is written.
pub fn check_target(disk: &str, wipe: bool) -> Result<Target, InstallError> {
    let sys_block = Path::new("/sys/class/block");
    let devices = host::disks::list();
    let name = Path::new(disk)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let resolved = std::fs::canonicalize(disk)
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or(name);
    let Some(dev) = devices.iter().find(|d| d.name == resolved) else {
        let available: Vec<String> = devices
            .iter()
            .filter(|d| !d.is_partition)
            .map(|d| d.node.display().to_string())
            .collect();
        return Err(InstallError::NoSuchDisk {
            disk: disk.into(),
            available: if available.is_empty() {
                "none".into()
            } else {
                available.join(", ")
            },
        });
    };
    if dev.is_partition {
        return Err(InstallError::Partition { disk: disk.into() });
    }
    if dev.read_only {
        return Err(InstallError::ReadOnly { disk: disk.into() });
    }
    let need = layout::min_disk_bytes();
    if dev.size_bytes < need {
        return Err(InstallError::TooSmall {
            disk: disk.into(),
            have: dev.size_bytes / MIB,
            need: need / MIB,
        });
    }
    if holds_medium(dev, &devices) {
        return Err(InstallError::BootMedium { disk: disk.into() });
    }
    let inventory = host::resources::disks::inventory(sys_block, Path::new("/dev"));
    let contents = inventory
        .iter()
        .find(|(n, _)| *n == dev.name)
        .map(|(_, spec)| spec.contents.clone())
        .unwrap_or_default();
    if !contents.is_empty() && !wipe {
        return Err(InstallError::NotEmpty {
            disk: disk.into(),
            contents,
        });
    }
    let lba = std::fs::read_to_string(sys_block.join(&dev.name).join("queue/logical_block_size"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(512);
    Ok(Target {
        node: dev.node.clone(),
        name: dev.name.clone(),
        size: dev.size_bytes,
        lba,
        wipe,
        contents,
    })
}

/// Whether `disk` (or one of its partitions) is an ISO 9660 volume: the
/// live medium this node booted from.
fn holds_medium(disk: &BlockDevice, devices: &[BlockDevice]) -> bool {
    devices
        .iter()
        .filter(|d| d.name == disk.name || d.parent.as_deref() == Some(&disk.name))
        .any(|d| {
            matches!(
                probe::probe(&d.node),
                Ok(Contents::Filesystem(Filesystem::Iso9660 { .. }))
            )
        })
}

/// Starts installing to `target` in the background and reboots when done;
/// failures go to the console (the node stays in maintenance mode).
pub fn start(target: Target, config: Vec<u8>, guard: crate::lifecycle::Guard) -> String {
    let what = if target.contents.is_empty() {
        String::new()
    } else {
        format!(" (wiping what it held: {})", target.contents)
    };
    let summary = format!(
        "installing to {}{what}; the node reboots into the installed system when done (its console shows the progress)",
        target.node.display()
    );
    off_runtime(async move {
        let started = std::time::Instant::now();
        match install(&target, &config, &guard).await {
            Ok(()) => {
                runtime::console!(
                    "install: done in {} s; rebooting into the installed system",
                    started.elapsed().as_secs()
                );
                guard.power(crate::shutdown::PowerAction::Reboot, "installed");
            }
            // Dropping the guard ends the install: another apply may try.
            Err(e) => runtime::console!("install: failed: {e}; the node stays in maintenance mode"),
        }
    });
    summary
}

/// Runs `work` on a blocking thread of its own, driving its awaits there.
/// Zeroing and copying block for minutes: on PID 1's runtime threads they
/// would stall the API, health checks and DHCP for the whole install.
pub fn off_runtime<F>(work: F) -> tokio::task::JoinHandle<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let runtime = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || runtime.block_on(work))
}

fn mount(source: &Path, target: &Path, fstype: &str, flags: MsFlags) -> Result<(), InstallError> {
    let m = MountPoint::new(
        &source.to_string_lossy(),
        &target.to_string_lossy(),
        fstype,
        flags,
        None,
    );
    mounts::apply_one(&Real, &m)?;
    Ok(())
}

fn unmount(target: &Path) {
    if let Err(e) = nix::mount::umount(target) {
        tracing::warn!(target = %target.display(), error = %e, "cannot unmount");
    }
}

fn asset(name: &str) -> Result<Vec<u8>, InstallError> {
    std::fs::read(Path::new(ASSETS_DIR).join(name)).map_err(|_| InstallError::NoAsset(name.into()))
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), InstallError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io("creating", dir))?;
    }
    std::fs::write(path, bytes).map_err(io("writing", path))?;
    std::fs::File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(io("syncing", path))
}

fn copy_file(from: &Path, to: &Path) -> Result<u64, InstallError> {
    let n = std::fs::copy(from, to).map_err(io("copying to", to))?;
    std::fs::File::open(to)
        .and_then(|f| f.sync_all())
        .map_err(io("syncing", to))?;
    Ok(n)
}

/// Finds and mounts the live medium (read-only) at `at`.
fn mount_medium(at: &Path) -> Result<(), InstallError> {
    for d in host::disks::list() {
        if !matches!(
            probe::probe(&d.node),
            Ok(Contents::Filesystem(Filesystem::Iso9660 { .. }))
        ) {
            continue;
        }
        if mount(
            &d.node,
            at,
            "iso9660",
            MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        )
        .is_err()
        {
            continue;
        }
        if at.join("boot/vmlinuz").is_file() && at.join("boot/initramfs.img").is_file() {
            runtime::console!("install: boot medium {}", d.node.display());
            return Ok(());
        }
        unmount(at);
    }
    Err(InstallError::NoMedium)
}

/// The partitions of `disk` once the kernel shows all of them.
async fn wait_partitions(disk: &str) -> Result<Vec<BlockDevice>, InstallError> {
    for _ in 0..100 {
        let parts: Vec<BlockDevice> = host::disks::list()
            .into_iter()
            .filter(|d| d.is_partition && d.parent.as_deref() == Some(disk))
            .collect();
        let all = layout::LAYOUT.iter().all(|p| {
            parts
                .iter()
                .any(|d| d.partname.as_deref() == Some(p.name) && d.node.exists())
        });
        if all {
            return Ok(parts);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(InstallError::NoPartition(format!("on {disk}")))
}

fn part<'a>(parts: &'a [BlockDevice], name: &str) -> Result<&'a BlockDevice, InstallError> {
    parts
        .iter()
        .find(|d| d.partname.as_deref() == Some(name))
        .ok_or_else(|| InstallError::NoPartition(name.into()))
}

async fn mkfs_fat(device: &Path, label: &str) -> Result<(), InstallError> {
    let dev = device.to_string_lossy();
    let out = runtime::exec::run("/sbin/mkfs.fat", &["-F", "32", "-n", label, &dev])
        .await
        .map_err(|e| InstallError::Fat {
            device: device.into(),
            message: e.to_string(),
        })?;
    if !out.status.success() {
        return Err(InstallError::Fat {
            device: device.into(),
            message: format!("{}: {}", out.status, out.output.trim()),
        });
    }
    Ok(())
}

/// The whole install, step by step, with a console line each.
pub async fn install(
    t: &Target,
    config: &[u8],
    guard: &crate::lifecycle::Guard,
) -> Result<(), InstallError> {
    let work = Path::new(WORK_DIR);
    let (medium, efi, boot, state) = (
        work.join("medium"),
        work.join("efi"),
        work.join("boot"),
        work.join("state"),
    );
    let (boot_img, core_img, efi_img) = (
        asset("boot.img")?,
        asset("core.img")?,
        asset("BOOTX64.EFI")?,
    );
    let (esp_cfg, menu) = (asset("esp-grub.cfg")?, asset("grub.cfg")?);
    mount_medium(&medium)?;
    let result = async {
        if t.wipe {
            guard.phase("wiping");
            runtime::console!(
                "install: wiping {} ({} MiB)",
                t.node.display(),
                t.size / MIB
            );
            disk::zero(&t.node, 0, t.size)?;
        }
        guard.phase("partitioning");
        runtime::console!(
            "install: partitioning {} (GPT: EFI, BIOS, BOOT, META, STATE, EPHEMERAL)",
            t.node.display()
        );
        disk::write_gpt(&t.node, t.lba)?;
        disk::install_bios_grub(&t.node, t.size, &boot_img, &core_img)?;
        disk::reread_partitions(&t.node)?;
        let parts = wait_partitions(&t.name).await?;
        crate::debug::power_cut("install:partitioned");
        // No stale signatures where machined probes (META, EPHEMERAL).
        for name in [
            partition::META,
            partition::EPHEMERAL,
            partition::STATE,
            partition::BOOT,
            partition::EFI,
        ] {
            disk::zero(&part(&parts, name)?.node, 0, MIB)?;
        }

        guard.phase("EFI system partition");
        runtime::console!("install: EFI system partition (GRUB for UEFI)");
        let p = &part(&parts, partition::EFI)?.node;
        mkfs_fat(p, partition::EFI).await?;
        mount(p, &efi, "vfat", MsFlags::MS_NOSUID | MsFlags::MS_NODEV)?;
        let r = write_file(&efi.join("EFI/BOOT/BOOTX64.EFI"), &efi_img)
            .and_then(|()| write_file(&efi.join("EFI/BOOT/grub.cfg"), &esp_cfg));
        unmount(&efi);
        r?;

        guard.phase("BOOT, slot A");
        runtime::console!("install: BOOT, slot A");
        let p = &part(&parts, partition::BOOT)?.node;
        host::partitions::format_ext4(p, partition::BOOT).await?;
        mount(p, &boot, "ext4", MsFlags::MS_NOSUID | MsFlags::MS_NODEV)?;
        let r = fill_boot(&boot, &medium, &menu);
        unmount(&boot);
        r?;
        crate::debug::power_cut("install:boot-written");

        guard.phase("META");
        let p = &part(&parts, partition::META)?.node;
        let mut meta = MetaStore::open(p)?;
        let mut v = Values::new();
        v.insert(keys::INSTALL_TIME.into(), host::meta::now());
        v.insert(
            keys::INSTALL_VERSION.into(),
            config::version::running().version.clone(),
        );
        meta.write(&v)?;

        guard.phase("STATE, with the machine config");
        runtime::console!("install: STATE, with the machine config");
        let p = &part(&parts, partition::STATE)?.node;
        host::partitions::format_ext4(p, partition::STATE).await?;
        mount(
            p,
            &state,
            "ext4",
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        )?;
        let r =
            crate::apply::store::StateFiles::new(&state).write(crate::apply::store::CONFIG, config);
        unmount(&state);
        r?;
        nix::unistd::sync();
        crate::debug::power_cut("install:done");
        Ok(())
    }
    .await;
    unmount(&medium);
    result
}

/// BOOT: slot A from the medium, the A/B menu, GRUB's environment.
fn fill_boot(boot: &Path, medium: &Path, menu: &[u8]) -> Result<(), InstallError> {
    let a = boot.join("A");
    std::fs::create_dir_all(&a).map_err(io("creating", &a))?;
    let mut copied = 0;
    copied += copy_file(&medium.join("boot/vmlinuz"), &a.join("vmlinuz"))?;
    copied += copy_file(&medium.join("boot/initramfs.img"), &a.join("initramfs.img"))?;
    // The Kubernetes payload, where the ISO carries one.
    if let Some(p) = ["A/payload.sqsh", "boot/payload.sqsh"]
        .iter()
        .map(|p| medium.join(p))
        .find(|p| p.is_file())
    {
        copied += copy_file(&p, &a.join("payload.sqsh"))?;
    }
    runtime::console!("install: slot A holds {} MiB", copied / MIB);
    // The image cache lives beside the slots: upgrades keep it.
    let cache_name = config::constants::payload::IMAGE_CACHE_FILE;
    let cache = medium.join(cache_name);
    if cache.is_file() {
        let n = copy_file(&cache, &boot.join(cache_name))?;
        runtime::console!("install: image cache, {} MiB", n / MIB);
    }
    write_file(&boot.join("grub/grub.cfg"), menu)?;
    Slots::new(boot).make_default("A")?;
    crate::upgrade::slots::sync_dir(boot)?;
    Ok(())
}

#[cfg(test)]
mod runtime_tests {
    use std::time::{Duration, Instant};

    /// Race 5: blocking install work must not stall the runtime. On a
    /// one-thread runtime, a tick task keeps ticking while `off_runtime`
    /// blocks for half a second.
    #[tokio::test(flavor = "current_thread")]
    async fn blocking_work_off_the_runtime_leaves_it_responsive() {
        let work = super::off_runtime(async {
            std::thread::sleep(Duration::from_millis(500));
            tokio::time::sleep(Duration::from_millis(10)).await;
            7
        });
        let started = Instant::now();
        let mut ticks = 0;
        while started.elapsed() < Duration::from_millis(400) {
            tokio::time::sleep(Duration::from_millis(20)).await;
            ticks += 1;
        }
        assert!(ticks >= 10, "the runtime stalled: {ticks} ticks in 400 ms");
        assert_eq!(work.await.unwrap(), 7);
    }
}
