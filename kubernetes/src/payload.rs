//! The Kubernetes payload: a read-only squashfs on the boot medium
//! (`/<slot>/payload.sqsh` on the BOOT partition or on the ISO), loop-mounted
//! at `/system/payload` once apid is up. It is kept out of the initramfs so
//! boot-to-API stays fast: nothing before the API waits for it.
//!
//! Where the file is found, in order:
//! 1. BOOT as the slot logic mounted it ([`config::constants::BOOT_MOUNT`],
//!    read-write: ext4 refuses a second mount with another read-only state);
//! 2. the BOOT partition by name, mounted read-only at
//!    [`payload::MEDIUM_DIR`] when nothing mounted it;
//! 3. an iso9660 volume (live boot from the ISO), mounted read-only there.
//!
//! The result is the `payload` resource (namespace `runtime`, id `payload`);
//! [`wait_mounted`] waits for it.

use std::path::{Path, PathBuf};

use config::constants::payload;
use nix::mount::MsFlags;
use serde::Serialize;

use host::disks::BlockDevice;
use host::probe::{self, Contents, Filesystem};
use runtime::resources::{kind, yaml_of, Filter, Kind, Secrets, Spec, Watch};
use runtime::Runtime;
use system::mounts;
use system::syscall::Syscalls;

#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    #[error(
        "no {file} on the boot medium (slot {slot}): neither BOOT nor an ISO volume holds one; \
         was the image built without the payload (CAIRN_NO_PAYLOAD)?"
    )]
    NotFound { file: String, slot: String },
    #[error("cannot read the mount table: {0}")]
    MountTable(#[from] mounts::MountError),
    #[error("cannot mount {what} at {at}: {source}")]
    Mount {
        what: String,
        at: String,
        source: std::io::Error,
    },
    #[error("cannot attach {file} to a loop device: {source}")]
    Loop {
        file: String,
        source: std::io::Error,
    },
    #[error("the payload task failed: {0}")]
    Task(String),
}

/// Where things are; [`MountPoints::NODE`] on a node, temporary directories in tests.
#[derive(Debug, Clone)]
pub struct MountPoints {
    pub payload_dir: PathBuf,
    pub image_cache_dir: PathBuf,
    pub medium_dir: PathBuf,
    pub boot_mount: PathBuf,
}

impl MountPoints {
    pub fn node() -> Self {
        Self {
            payload_dir: payload::PAYLOAD_DIR.into(),
            image_cache_dir: payload::IMAGE_CACHE_DIR.into(),
            medium_dir: payload::MEDIUM_DIR.into(),
            boot_mount: config::constants::BOOT_MOUNT.into(),
        }
    }
}

/// The mounted payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayloadPaths {
    /// The mount point, `/system/payload`.
    pub root: PathBuf,
    /// The squashfs file on the boot medium.
    pub file: PathBuf,
    /// What holds the file, for people: `BOOT (/dev/vda3)`, `ISO CAIRN (/dev/sr0)`.
    pub medium: String,
    /// The loop device the squashfs is attached to.
    pub loop_device: PathBuf,
}

/// The `payload` resource (id [`PayloadSpec::ID`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct PayloadSpec {
    /// `mounting`, `mounted` or `failed`.
    pub state: String,
    pub path: String,
    pub slot: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub file: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub medium: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub loop_device: String,
    /// KUBERNETES_VERSION from the payload's versions.env.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub kubernetes_version: String,
    /// The payload's build key (hash of its inputs).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub id: String,
    /// The image references of the archives in images/.
    pub images: Vec<String>,
    /// The boot medium's image cache file, when it has one.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub image_cache: String,
    /// The image references in the image cache.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cached_images: Vec<String>,
    /// Why it is not mounted.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub message: String,
}

impl PayloadSpec {
    pub const ID: &'static str = "payload";
    pub const MOUNTING: &'static str = "mounting";
    pub const MOUNTED: &'static str = "mounted";
    pub const FAILED: &'static str = "failed";
}

impl Spec for PayloadSpec {
    const KIND: &'static Kind = kind::PAYLOAD;
    fn to_yaml(&self, _: Secrets) -> String {
        yaml_of(self)
    }
}

/// Mounts the payload of `slot` from the boot medium at `layout.payload_dir`
/// (read-only). Already mounted: returns what is there.
pub fn mount(
    sys: &dyn Syscalls,
    devices: &[BlockDevice],
    slot: &str,
    layout: &MountPoints,
) -> Result<PayloadPaths, PayloadError> {
    let rel = Path::new(slot).join(payload::FILE_NAME);
    let (file, medium) =
        find_file(sys, devices, &rel, layout)?.ok_or_else(|| PayloadError::NotFound {
            file: rel.display().to_string(),
            slot: slot.into(),
        })?;
    attach_and_mount(sys, file, &layout.payload_dir, medium)
}

/// Mounts the image cache (`image-cache.sqsh` at the root of the medium the
/// payload came from, see [`payload::IMAGE_CACHE_FILE`]) read-only at
/// `layout.image_cache_dir`; `None` when the medium carries none.
pub fn mount_image_cache(
    sys: &dyn Syscalls,
    payload: &PayloadPaths,
    layout: &MountPoints,
) -> Result<Option<PayloadPaths>, PayloadError> {
    // The payload is <medium>/<slot>/payload.sqsh.
    let file = payload
        .file
        .parent()
        .and_then(Path::parent)
        .map(|root| root.join(payload::IMAGE_CACHE_FILE))
        .filter(|f| f.is_file());
    match file {
        Some(file) => {
            attach_and_mount(sys, file, &layout.image_cache_dir, payload.medium.clone()).map(Some)
        }
        None => Ok(None),
    }
}

/// Attaches the squashfs `file` to a loop device and mounts it read-only at
/// `root`. Already mounted: returns what is there.
fn attach_and_mount(
    sys: &dyn Syscalls,
    file: PathBuf,
    root: &Path,
    medium: String,
) -> Result<PayloadPaths, PayloadError> {
    let root = root.to_path_buf();
    if mounts::is_mounted(sys, &root)? {
        return Ok(PayloadPaths {
            root,
            file,
            medium,
            loop_device: PathBuf::new(),
        });
    }
    let device = sys
        .attach_loop(&file)
        .map_err(|source| PayloadError::Loop {
            file: file.display().to_string(),
            source,
        })?;
    let m = mounts::MountPoint::new(
        &device.to_string_lossy(),
        &root.to_string_lossy(),
        "squashfs",
        MsFlags::MS_RDONLY | MsFlags::MS_NODEV | MsFlags::MS_NOSUID,
        None,
    );
    mounts::apply_one(sys, &m).map_err(|e| PayloadError::Mount {
        what: file.display().to_string(),
        at: root.display().to_string(),
        source: std::io::Error::other(e.to_string()),
    })?;
    Ok(PayloadPaths {
        root,
        file,
        medium,
        loop_device: device.clone(),
    })
}

/// The payload file and a description of its medium, mounting the medium
/// read-only if it is not mounted yet.
fn find_file(
    sys: &dyn Syscalls,
    devices: &[BlockDevice],
    rel: &Path,
    layout: &MountPoints,
) -> Result<Option<(PathBuf, String)>, PayloadError> {
    // 1. BOOT, mounted by the slot logic.
    if mounts::is_mounted(sys, &layout.boot_mount)? && layout.boot_mount.join(rel).is_file() {
        return Ok(Some((layout.boot_mount.join(rel), "BOOT".into())));
    }
    // The medium directory may hold a medium from an earlier call.
    let medium = &layout.medium_dir;
    if mounts::is_mounted(sys, medium)? {
        let f = medium.join(rel);
        return Ok(f.is_file().then(|| (f, "boot medium".into())));
    }
    // 2. BOOT by partition name, 3. ISO volumes.
    let boot = devices
        .iter()
        .filter(|d| {
            d.is_partition && d.partname.as_deref() == Some(config::constants::partition::BOOT)
        })
        .map(|d| (d, "ext4", format!("BOOT ({})", d.node.display())));
    let isos = devices.iter().filter_map(|d| match probe::probe(&d.node) {
        Ok(Contents::Filesystem(Filesystem::Iso9660 { label })) => {
            Some((d, "iso9660", format!("ISO {label} ({})", d.node.display())))
        }
        _ => None,
    });
    for (dev, fstype, what) in boot.chain(isos) {
        let m = mounts::MountPoint::new(
            &dev.node.to_string_lossy(),
            &medium.to_string_lossy(),
            fstype,
            MsFlags::MS_RDONLY | MsFlags::MS_NODEV | MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
            None,
        );
        if let Err(e) = mounts::apply_one(sys, &m) {
            tracing::debug!(device = %dev.node.display(), error = %e, "payload: not a boot medium");
            continue;
        }
        let f = medium.join(rel);
        if f.is_file() {
            return Ok(Some((f, what)));
        }
        let _ = sys.umount(medium, nix::mount::MntFlags::MNT_DETACH);
    }
    Ok(None)
}

/// The `payload` resource for a mounted payload: versions.env, id and
/// images/refs.txt read from it.
pub fn describe(paths: &PayloadPaths, slot: &str) -> PayloadSpec {
    let read = |f: &str| std::fs::read_to_string(paths.root.join(f)).unwrap_or_default();
    let versions = read("versions.env");
    let kubernetes_version = versions
        .lines()
        .find_map(|l| l.strip_prefix("KUBERNETES_VERSION="))
        .unwrap_or_default()
        .trim()
        .to_string();
    let images = image_refs(&read("images/refs.txt"));
    PayloadSpec {
        state: PayloadSpec::MOUNTED.into(),
        path: paths.root.display().to_string(),
        slot: slot.into(),
        file: paths.file.display().to_string(),
        medium: paths.medium.clone(),
        loop_device: paths.loop_device.display().to_string(),
        kubernetes_version,
        id: read("id").trim().to_string(),
        images,
        image_cache: String::new(),
        cached_images: Vec::new(),
        message: String::new(),
    }
}

/// The references a `refs.txt` lists (`<file> <reference>` lines).
fn image_refs(refs_txt: &str) -> Vec<String> {
    refs_txt
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1).map(str::to_string))
        .collect()
}

/// The payload's resource with the image cache mounted beside it, if the
/// medium has one; a cache that cannot be mounted is reported and left out
/// (Kubernetes runs without it).
fn with_image_cache(mut spec: PayloadSpec, payload: &PayloadPaths) -> PayloadSpec {
    let layout = MountPoints::node();
    match mount_image_cache(&system::syscall::Real, payload, &layout) {
        Ok(Some(cache)) => {
            let refs = std::fs::read_to_string(cache.root.join("refs.txt")).unwrap_or_default();
            spec.image_cache = cache.file.display().to_string();
            spec.cached_images = image_refs(&refs);
        }
        Ok(None) => {}
        Err(e) => runtime::console!("payload: image cache: {e}"),
    }
    spec
}

/// How long the payload waits for apid to answer before mounting anyway.
const APID_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// Between attempts to find the payload: 5 s doubling to 30 s. A medium
/// that appears later (a disc put in the drive, a disk attached) is found
/// within half a minute, and a node without one probes its devices twice a
/// minute, which costs nothing that matters.
const LOOK_AGAIN_FIRST: std::time::Duration = std::time::Duration::from_secs(5);
const LOOK_AGAIN_MAX: std::time::Duration = std::time::Duration::from_secs(30);

/// Mounts the payload in the background, once apid is healthy, and keeps the
/// `payload` resource current. Called by the boot sequence after apid has
/// started; nothing in it delays the API. A payload that cannot be mounted
/// is looked for again, on a fresh device list, until it is: the resource
/// says `failed` with the reason meanwhile, and Kubernetes' bring-up (which
/// retries too) starts once it is mounted, without a reboot.
pub fn spawn(node: &Runtime, slot: Option<&str>, devices: Vec<BlockDevice>) {
    let writer = match node.store.writer("payload", &[kind::PAYLOAD]) {
        Ok(w) => w,
        Err(e) => {
            tracing::error!(error = %e, "payload: cannot register the payload resource");
            return;
        }
    };
    let slot = slot.unwrap_or(payload::DEFAULT_SLOT).to_string();
    let pending = PayloadSpec {
        state: PayloadSpec::MOUNTING.into(),
        path: payload::PAYLOAD_DIR.into(),
        slot: slot.clone(),
        ..Default::default()
    };
    let _ = writer.put(PayloadSpec::ID, pending.clone());
    let apid = node.supervisor.handle("apid");
    tokio::spawn(async move {
        // Only once apid answers: under emulation the loop mount and the
        // squashfs superblock cost a few hundred milliseconds of CPU that
        // boot-to-API should not share. A stuck apid does not hold
        // Kubernetes back for long.
        if let Some(apid) = apid {
            let mut rx = apid.status.subscribe();
            let healthy = rx.wait_for(|s| s.health == runtime::supervisor::Health::Ok);
            let _ = tokio::time::timeout(APID_WAIT, healthy).await;
        }
        let mut backoff =
            runtime::supervisor::backoff::Backoff::new(LOOK_AGAIN_FIRST, LOOK_AGAIN_MAX);
        let mut devices = Some(devices);
        let mut reported = String::new();
        loop {
            let started = std::time::Instant::now();
            let s = slot.clone();
            // The boot's device list first; a fresh one on every retry.
            let listed = devices.take();
            let result = tokio::task::spawn_blocking(move || {
                let devices = listed.unwrap_or_else(host::disks::list);
                let paths = mount(&system::syscall::Real, &devices, &s, &MountPoints::node())?;
                Ok::<_, PayloadError>(with_image_cache(describe(&paths, &s), &paths))
            })
            .await
            .unwrap_or_else(|e| Err(PayloadError::Task(e.to_string())));
            match result {
                Ok(spec) => {
                    report_mounted(&spec, started.elapsed());
                    let _ = writer.put(PayloadSpec::ID, spec);
                    return;
                }
                Err(e) => {
                    let delay = backoff.next_delay();
                    let reason = e.to_string();
                    // Said once per reason, not every half minute.
                    if reason != reported {
                        runtime::console!(
                            "payload: {reason}; looking again every {} s at most",
                            LOOK_AGAIN_MAX.as_secs()
                        );
                        reported = reason.clone();
                    }
                    let _ = writer.put(
                        PayloadSpec::ID,
                        PayloadSpec {
                            state: PayloadSpec::FAILED.into(),
                            message: format!("{reason}; looking again in {} s", delay.as_secs()),
                            ..pending.clone()
                        },
                    );
                    tokio::time::sleep(delay).await;
                }
            }
        }
    });
}

fn report_mounted(spec: &PayloadSpec, took: std::time::Duration) {
    runtime::console!(
        "payload: Kubernetes {} mounted at {} from {} ({} images, {} ms)",
        spec.kubernetes_version,
        spec.path,
        spec.medium,
        spec.images.len(),
        took.as_millis()
    );
    if !spec.image_cache.is_empty() {
        runtime::console!(
            "payload: image cache mounted at {} from {} ({} images)",
            payload::IMAGE_CACHE_DIR,
            spec.image_cache,
            spec.cached_images.len()
        );
    }
}

/// Waits until the payload is mounted: its resource, or the reason it is
/// not yet (no payload on any medium, a mount error; [`spawn`] keeps
/// looking). Never waits long: mounting takes well under a second once the
/// boot sequence started it.
pub async fn wait_mounted(node: &Runtime) -> Result<PayloadSpec, String> {
    let store = &node.store;
    let mut watch = Watch::new(store, Filter::kind(kind::PAYLOAD), false);
    loop {
        match store.spec::<PayloadSpec>(PayloadSpec::ID) {
            Some(s) if s.state == PayloadSpec::MOUNTED => return Ok(s),
            Some(s) if s.state == PayloadSpec::FAILED => return Err(s.message),
            _ => {}
        }
        watch.next().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use system::syscall::{Call, Recording};

    fn layout(dir: &Path) -> MountPoints {
        MountPoints {
            payload_dir: dir.join("payload"),
            image_cache_dir: dir.join("image-cache"),
            medium_dir: dir.join("medium"),
            boot_mount: dir.join("boot"),
        }
    }

    fn device(name: &str, partname: Option<&str>) -> BlockDevice {
        BlockDevice {
            name: name.into(),
            node: PathBuf::from("/nonexistent/dev").join(name),
            is_partition: partname.is_some(),
            partn: partname.map(|_| 3),
            partname: partname.map(str::to_string),
            parent: partname.map(|_| "vda".into()),
            size_bytes: 1 << 30,
            read_only: false,
        }
    }

    fn put_file(dir: &Path, rel: &str) {
        let f = dir.join(rel);
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::write(f, b"hsqs").unwrap();
    }

    fn mounts(sys: &Recording) -> Vec<(PathBuf, String, MsFlags)> {
        sys.calls()
            .into_iter()
            .filter_map(|c| match c {
                Call::Mount {
                    target,
                    fstype,
                    flags,
                    ..
                } => Some((target, fstype.unwrap_or_default(), flags)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn uses_boot_as_the_slot_logic_mounted_it() {
        let tmp = tempfile::tempdir().unwrap();
        let l = layout(tmp.path());
        put_file(&l.boot_mount, "B/payload.sqsh");
        let sys = Recording::with_mountinfo(&format!(
            "30 1 8:3 / {} rw - ext4 /dev/vda3 rw\n",
            l.boot_mount.display()
        ));
        let found = find_file(
            &sys,
            &[device("vda3", Some("BOOT"))],
            Path::new("B/payload.sqsh"),
            &l,
        )
        .unwrap();
        assert_eq!(
            found,
            Some((l.boot_mount.join("B/payload.sqsh"), "BOOT".to_string()))
        );
        assert!(
            mounts(&sys).is_empty(),
            "nothing is mounted again: {:?}",
            sys.calls()
        );
    }

    #[test]
    fn mounts_the_boot_partition_read_only_when_nothing_did() {
        let tmp = tempfile::tempdir().unwrap();
        let l = layout(tmp.path());
        // What the mount would show: the file inside the medium directory.
        put_file(&l.medium_dir, "A/payload.sqsh");
        let sys = Recording::default();
        let devices = [device("vda", None), device("vda3", Some("BOOT"))];
        let (file, what) = find_file(&sys, &devices, Path::new("A/payload.sqsh"), &l)
            .unwrap()
            .unwrap();
        assert_eq!(file, l.medium_dir.join("A/payload.sqsh"));
        assert_eq!(what, "BOOT (/nonexistent/dev/vda3)");
        let m = mounts(&sys);
        assert_eq!(m.len(), 1);
        assert_eq!(
            (m[0].0.as_path(), m[0].1.as_str()),
            (l.medium_dir.as_path(), "ext4")
        );
        assert!(m[0].2.contains(MsFlags::MS_RDONLY));
    }

    #[test]
    fn a_medium_without_the_file_is_unmounted_and_nothing_found() {
        let tmp = tempfile::tempdir().unwrap();
        let l = layout(tmp.path());
        let sys = Recording::default();
        let found = find_file(
            &sys,
            &[device("vda3", Some("BOOT"))],
            Path::new("A/payload.sqsh"),
            &l,
        )
        .unwrap();
        assert_eq!(found, None);
        assert!(
            sys.calls().contains(&Call::Umount(l.medium_dir.clone())),
            "{:?}",
            sys.calls()
        );
        let err = mount(&sys, &[], "A", &l).unwrap_err();
        assert!(err.to_string().contains("A/payload.sqsh"), "{err}");
    }

    #[test]
    fn an_already_mounted_payload_is_not_mounted_again() {
        let tmp = tempfile::tempdir().unwrap();
        let l = layout(tmp.path());
        put_file(&l.boot_mount, "A/payload.sqsh");
        let sys = Recording::with_mountinfo(&format!(
            "30 1 8:3 / {} rw - ext4 /dev/vda3 rw\n31 1 7:0 / {} ro - squashfs /dev/loop0 ro\n",
            l.boot_mount.display(),
            l.payload_dir.display()
        ));
        let p = mount(&sys, &[], "A", &l).unwrap();
        assert_eq!(p.root, l.payload_dir);
        assert!(mounts(&sys).is_empty());
    }

    #[test]
    fn the_image_cache_is_mounted_from_the_payloads_medium_when_it_has_one() {
        let tmp = tempfile::tempdir().unwrap();
        let l = layout(tmp.path());
        put_file(&l.boot_mount, "A/payload.sqsh");
        let payload = PayloadPaths {
            root: l.payload_dir.clone(),
            file: l.boot_mount.join("A/payload.sqsh"),
            medium: "BOOT".into(),
            loop_device: "/dev/loop0".into(),
        };
        let sys = Recording::default();
        assert_eq!(mount_image_cache(&sys, &payload, &l).unwrap(), None);
        assert!(mounts(&sys).is_empty(), "{:?}", sys.calls());

        put_file(&l.boot_mount, "image-cache.sqsh");
        let cache = mount_image_cache(&sys, &payload, &l).unwrap().unwrap();
        assert_eq!(cache.file, l.boot_mount.join("image-cache.sqsh"));
        assert_eq!(cache.root, l.image_cache_dir);
        assert_eq!(cache.medium, "BOOT");
        let m = mounts(&sys);
        assert_eq!(m.len(), 1);
        assert_eq!(
            (m[0].0.as_path(), m[0].1.as_str()),
            (l.image_cache_dir.as_path(), "squashfs")
        );
        assert!(m[0].2.contains(MsFlags::MS_RDONLY));
    }

    #[test]
    fn describes_versions_id_and_images() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        std::fs::write(
            root.join("versions.env"),
            "# comment\nKUBERNETES_VERSION=v1.20.2\nRUNC_VERSION=1\n",
        )
        .unwrap();
        std::fs::write(root.join("id"), "abc123\n").unwrap();
        std::fs::create_dir(root.join("images")).unwrap();
        std::fs::write(
            root.join("images/refs.txt"),
            "pause.tar cairn.local/pause:v1.20.2\nkube-proxy.tar cairn.local/kube-proxy:v1.20.2\n",
        )
        .unwrap();
        let paths = PayloadPaths {
            root: root.clone(),
            file: "/boot/A/payload.sqsh".into(),
            medium: "BOOT".into(),
            loop_device: "/dev/loop1".into(),
        };
        let spec = describe(&paths, "A");
        assert_eq!(spec.state, PayloadSpec::MOUNTED);
        assert_eq!(spec.kubernetes_version, "v1.20.2");
        assert_eq!(spec.id, "abc123");
        assert_eq!(
            spec.images,
            [
                "cairn.local/pause:v1.20.2",
                "cairn.local/kube-proxy:v1.20.2"
            ]
        );
        let yaml = spec.to_yaml(Secrets::Redact);
        assert!(yaml.contains("kubernetesVersion: v1.20.2"), "{yaml}");
    }

    #[tokio::test]
    async fn wait_mounted_returns_the_mounted_or_failed_state() {
        let node = Runtime::new(runtime::supervisor::Supervisor::new());
        let w = node.store.writer("payload", &[kind::PAYLOAD]).unwrap();
        w.put(
            PayloadSpec::ID,
            PayloadSpec {
                state: PayloadSpec::MOUNTING.into(),
                ..Default::default()
            },
        )
        .unwrap();
        let waiting = wait_mounted(&node);
        let put = async {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            let spec = PayloadSpec {
                state: PayloadSpec::MOUNTED.into(),
                id: "x".into(),
                ..Default::default()
            };
            w.put(PayloadSpec::ID, spec).unwrap();
        };
        let (got, ()) = tokio::join!(waiting, put);
        assert_eq!(got.unwrap().id, "x");
        let failed = PayloadSpec {
            state: PayloadSpec::FAILED.into(),
            message: "no payload".into(),
            ..Default::default()
        };
        w.put(PayloadSpec::ID, failed).unwrap();
        assert_eq!(wait_mounted(&node).await.unwrap_err(), "no payload");
    }
}
