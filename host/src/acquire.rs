//! Machine config acquisition, in order: the STATE partition, the kernel
//! command line's `cairn.config=<url>`, a volume labelled CAIRNCFG; none
//! of them means maintenance mode.
//!
//! This returns the raw bytes and where they came from; the boot sequence
//! validates them with `config::MachineConfig::parse`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use config::constants::{CONFIG_VOLUME_LABEL, STATE_CONFIG_PATH, SYSTEM_RUN_DIR};
use nix::mount::{MntFlags, MsFlags};

use crate::cmdline::Cmdline;
use crate::disks::BlockDevice;
use crate::probe::{self, Contents};
use runtime::supervisor::backoff::Backoff;
use system::syscall::Syscalls;

/// Where a config came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    State(PathBuf),
    Url(String),
    Volume(PathBuf),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::State(p) => write!(f, "STATE ({})", p.display()),
            Source::Url(u) => write!(f, "{u}"),
            Source::Volume(d) => write!(f, "the {CONFIG_VOLUME_LABEL} volume on {}", d.display()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acquired {
    pub source: Source,
    pub bytes: Vec<u8>,
}

/// How many times `cairn.config=<url>` is tried before moving on.
const URL_ATTEMPTS: u32 = 4;

/// Tries each source in order; `None` means maintenance mode.
pub async fn acquire(
    sys: &dyn Syscalls,
    cmdline: &Cmdline,
    devices: &[BlockDevice],
) -> Option<Acquired> {
    if let Some(a) = from_state(Path::new(STATE_CONFIG_PATH)) {
        return Some(a);
    }
    if let Some(url) = cmdline.config_url() {
        match cmdline.config_pins() {
            Ok(pins) => {
                let backoff = Backoff::new(Duration::from_secs(2), Duration::from_secs(8));
                if let Some(a) = from_url(url, &pins, URL_ATTEMPTS, backoff).await {
                    return Some(a);
                }
            }
            Err(e) => runtime::console!("config: {url} not fetched: {e}"),
        }
    }
    from_volume(sys, devices, &Path::new(SYSTEM_RUN_DIR).join("cairncfg"))
}

pub fn from_state(path: &Path) -> Option<Acquired> {
    match std::fs::read(path) {
        Ok(bytes) => Some(Acquired {
            source: Source::State(path.to_path_buf()),
            bytes,
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            runtime::console!("config: cannot read {}: {e}", path.display());
            None
        }
    }
}

pub async fn from_url(
    url: &str,
    pins: &crate::http::Pins,
    attempts: u32,
    mut backoff: Backoff,
) -> Option<Acquired> {
    for attempt in 1..=attempts {
        match crate::http::fetch_config(url, pins, Duration::from_secs(20)).await {
            Ok(bytes) => {
                return Some(Acquired {
                    source: Source::Url(url.to_string()),
                    bytes,
                })
            }
            Err(e) if e.is_permanent() => {
                runtime::console!("config: {e}");
                return None;
            }
            Err(e) => {
                runtime::console!("config: attempt {attempt}/{attempts}: {e}");
                if attempt < attempts {
                    tokio::time::sleep(backoff.next_delay()).await;
                }
            }
        }
    }
    None
}

/// Finds a filesystem labelled CAIRNCFG, mounts it read-only at
/// `mount_point`, reads `config.yaml` from its root, and unmounts it.
pub fn from_volume(
    sys: &dyn Syscalls,
    devices: &[BlockDevice],
    mount_point: &Path,
) -> Option<Acquired> {
    let (device, fstype) = devices.iter().find_map(|d| match probe::probe(&d.node) {
        Ok(Contents::Filesystem(fs)) if fs.label() == CONFIG_VOLUME_LABEL => {
            Some((d.node.clone(), fs.fstype()))
        }
        _ => None,
    })?;
    if let Err(e) = sys.create_dir_all(mount_point, 0o700) {
        runtime::console!("config: cannot create {}: {e}", mount_point.display());
        return None;
    }
    let flags = MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    if let Err(e) = sys.mount(
        Some(&device.to_string_lossy()),
        mount_point,
        Some(fstype),
        flags,
        None,
    ) {
        runtime::console!("config: cannot mount {} ({fstype}): {e}", device.display());
        return None;
    }
    let path = mount_point.join("config.yaml");
    let result = std::fs::read(&path);
    if let Err(e) = sys.umount(mount_point, MntFlags::empty()) {
        tracing::warn!(error = %e, "cannot unmount the config volume");
    }
    match result {
        Ok(bytes) => Some(Acquired {
            source: Source::Volume(device),
            bytes,
        }),
        Err(e) => {
            runtime::console!(
                "config: {} has no readable config.yaml: {e}",
                device.display()
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use system::syscall::{Call, Recording};

    #[test]
    fn state_file_is_read_when_present() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("config.yaml");
        assert_eq!(from_state(&p), None);
        std::fs::write(&p, "version: v1alpha1\n").unwrap();
        let a = from_state(&p).unwrap();
        assert_eq!(a.bytes, b"version: v1alpha1\n");
        assert_eq!(a.source, Source::State(p));
    }

    #[tokio::test]
    async fn url_is_retried_then_given_up() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("http://127.0.0.1:{port}/c.yaml");
        let t = std::time::Instant::now();
        let pins = crate::http::Pins::new(Some(&"0".repeat(64)), None).unwrap();
        let got = from_url(
            &url,
            &pins,
            3,
            Backoff::new(Duration::from_millis(50), Duration::from_millis(100)),
        )
        .await;
        assert_eq!(got, None);
        assert!(t.elapsed() >= Duration::from_millis(150));
    }

    #[test]
    fn volume_is_found_by_label_and_mounted_read_only() {
        let dir = tempfile::tempdir().unwrap();
        // A FAT32 boot sector labelled CAIRNCFG.
        let img = dir.path().join("cfg.img");
        let mut fat = vec![0u8; 128 * 1024];
        fat[510] = 0x55;
        fat[511] = 0xAA;
        fat[82..87].copy_from_slice(b"FAT32");
        fat[71..82].copy_from_slice(b"CAIRNCFG   ");
        std::fs::write(&img, &fat).unwrap();
        let dev = BlockDevice {
            name: "vdb".into(),
            node: img.clone(),
            is_partition: false,
            partn: None,
            partname: None,
            parent: None,
            size_bytes: fat.len() as u64,
            read_only: false,
        };
        // The recording "mount" does nothing, so config.yaml is read from
        // the mount point directory itself: put it there.
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt).unwrap();
        std::fs::write(mnt.join("config.yaml"), "cfg").unwrap();
        let sys = Recording::default();
        let a = from_volume(&sys, &[dev], &mnt).unwrap();
        assert_eq!(a.bytes, b"cfg");
        assert_eq!(a.source, Source::Volume(img.clone()));
        let calls = sys.calls();
        assert!(calls.iter().any(|c| matches!(c,
            Call::Mount { fstype: Some(t), flags, .. } if t == "vfat" && flags.contains(MsFlags::MS_RDONLY))));
        assert!(calls.contains(&Call::Umount(mnt.clone())));
        assert_eq!(from_volume(&sys, &[], &mnt), None);
    }
}
