//! Boot mounts as a table applied idempotently (a mount point that is
//! already mounted is left alone, so init's /proc, /sys and /dev and a
//! second run are no-ops), and unmounting everything at shutdown. One
//! table type for the whole stack: init's rows ([`init_table`], the root
//! squashfs) and machined's ([`early_table`]) share their pseudo-filesystem
//! rows.

use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};

use crate::syscall::Syscalls;

#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("cannot read /proc/self/mountinfo: {0}")]
    MountInfo(#[source] std::io::Error),
    #[error("cannot create mount point {path}: {source}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot mount {fstype} on {target}: {source}")]
    Mount {
        fstype: String,
        target: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// One row of a mount table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountPoint {
    pub source: String,
    pub target: PathBuf,
    pub fstype: String,
    pub flags: MsFlags,
    pub data: Option<String>,
    /// Mode for the mount point when machined has to create it.
    pub dir_mode: u32,
    /// A failed optional mount is logged and skipped (e.g. a filesystem
    /// the kernel was built without).
    pub required: bool,
}

impl MountPoint {
    pub fn new(
        source: &str,
        target: &str,
        fstype: &str,
        flags: MsFlags,
        data: Option<&str>,
    ) -> Self {
        Self {
            source: source.into(),
            target: target.into(),
            fstype: fstype.into(),
            flags,
            data: data.map(str::to_string),
            dir_mode: 0o755,
            required: true,
        }
    }

    fn optional(mut self) -> Self {
        self.required = false;
        self
    }

    /// A tmpfs with the given options.
    pub fn tmpfs(target: &str, flags: MsFlags, data: &str) -> Self {
        Self::new("tmpfs", target, "tmpfs", flags, Some(data))
    }
}

/// What applying one row did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Mounted,
    AlreadyMounted,
    /// An optional mount failed; the message says why.
    Skipped(String),
}

fn nosuid_nodev() -> MsFlags {
    MsFlags::MS_NOSUID | MsFlags::MS_NODEV
}

fn nosuid_nodev_noexec() -> MsFlags {
    nosuid_nodev() | MsFlags::MS_NOEXEC
}

fn proc_row() -> MountPoint {
    MountPoint::new("proc", "/proc", "proc", nosuid_nodev_noexec(), None)
}

fn sys_row() -> MountPoint {
    MountPoint::new("sysfs", "/sys", "sysfs", nosuid_nodev_noexec(), None)
}

fn dev_row() -> MountPoint {
    MountPoint::new(
        "devtmpfs",
        "/dev",
        "devtmpfs",
        MsFlags::MS_NOSUID,
        Some("mode=0755"),
    )
}

/// The root filesystem image inside the initramfs.
pub const ROOTFS_IMAGE: &str = "/rootfs.sqsh";
/// Where init mounts the root filesystem before switching to it.
pub const NEW_ROOT: &str = "/newroot";

/// What init mounts before it can find the root filesystem: /dev first
/// (devtmpfs: the console, kmsg and loop devices), then /proc for the
/// command line and /sys for machined later. They move into the new root.
pub fn init_table() -> Vec<MountPoint> {
    vec![dev_row(), proc_row(), sys_row()]
}

/// The root filesystem: the squashfs on its loop device, read-only. `nodev`
/// is not set: the rootfs carries no device nodes, and devtmpfs moves in.
pub fn rootfs(loop_device: &str) -> MountPoint {
    MountPoint::new(loop_device, NEW_ROOT, "squashfs", MsFlags::MS_RDONLY, None)
}

/// The mounts every boot needs, in order, before anything else runs.
/// /var is not here: it is the EPHEMERAL partition or a tmpfs, decided once
/// disks are known (see `partitions`).
pub fn early_table() -> Vec<MountPoint> {
    let nse = nosuid_nodev_noexec();
    vec![
        proc_row(),
        sys_row(),
        dev_row(),
        MountPoint::new(
            "devpts",
            "/dev/pts",
            "devpts",
            MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
            Some("gid=5,mode=0620,ptmxmode=0666"),
        )
        .optional(),
        MountPoint::tmpfs("/dev/shm", nse, "mode=1777").optional(),
        MountPoint::tmpfs("/run", nosuid_nodev(), "mode=0755"),
        MountPoint::tmpfs("/system", nosuid_nodev(), "mode=0755"),
        MountPoint::tmpfs(
            config::constants::SYSTEM_RUN_DIR,
            nosuid_nodev(),
            "mode=0755",
        ),
        // Searchable, not listable: a service running as its own user
        // (etcd) reaches its own directory; every directory in it is 0700
        // and its owner's.
        MountPoint::tmpfs(config::constants::SECRETS_DIR, nse, "mode=0711"),
        MountPoint::tmpfs("/system/etc", nse, "mode=0755"),
        MountPoint::tmpfs("/tmp", nosuid_nodev(), "mode=1777"),
        MountPoint::new(
            "cgroup2",
            "/sys/fs/cgroup",
            "cgroup2",
            nse,
            Some("nsdelegate"),
        ),
    ]
}

/// The cgroup controllers kubelet and containerd need delegated from the root.
pub const CGROUP_CONTROLLERS: &[&str] = &["cpu", "cpuset", "memory", "pids", "io", "hugetlb"];

/// Mount points in `/proc/self/mountinfo` text, in order.
pub fn mount_points(mountinfo: &str) -> Vec<MountEntry> {
    mountinfo.lines().filter_map(MountEntry::parse).collect()
}

/// One line of `/proc/self/mountinfo`: what the kernel says is mounted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    pub target: PathBuf,
    pub fstype: String,
    pub source: String,
    /// Per-mount options, e.g. `ro,relatime`.
    pub options: String,
}

impl MountEntry {
    /// Parses `36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw`.
    pub fn parse(line: &str) -> Option<Self> {
        // id parent major:minor root target options [optional...] - fstype source superopts
        let (left, right) = line.split_once(" - ")?;
        let mut left = left.split(' ').skip(4);
        let target = left.next()?;
        let options = left.next().unwrap_or_default().to_string();
        let mut right = right.split(' ');
        let fstype = right.next()?.to_string();
        let source = right.next().unwrap_or_default().to_string();
        Some(Self {
            target: PathBuf::from(unescape(target)),
            fstype,
            source: unescape(&source),
            options,
        })
    }

    pub fn is_read_only(&self) -> bool {
        self.options.split(',').any(|o| o == "ro")
    }
}

/// The last mount on `target` (the one visible there) in a mountinfo text.
pub fn find_mount(mountinfo: &str, target: &Path) -> Option<MountEntry> {
    mountinfo
        .lines()
        .rev()
        .filter_map(MountEntry::parse)
        .find(|m| m.target == target)
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
pub fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether `target` is currently a mount point. Before /proc is mounted
/// (init's first rows) there is no mountinfo, and nothing but the
/// initramfs root is mounted.
pub fn is_mounted(sys: &dyn Syscalls, target: &Path) -> Result<bool, MountError> {
    let info = match sys.mountinfo() {
        Ok(info) => info,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(MountError::MountInfo(e)),
    };
    Ok(mount_points(&info).iter().any(|m| m.target == target))
}

/// Mounts one row unless its target is already a mount point.
pub fn apply_one(sys: &dyn Syscalls, m: &MountPoint) -> Result<Outcome, MountError> {
    if is_mounted(sys, &m.target)? {
        return Ok(Outcome::AlreadyMounted);
    }
    let result = sys
        .create_dir_all(&m.target, m.dir_mode)
        .map_err(|source| MountError::CreateDir {
            path: m.target.clone(),
            source,
        })
        .and_then(|()| {
            sys.mount(
                Some(&m.source),
                &m.target,
                Some(&m.fstype),
                m.flags,
                m.data.as_deref(),
            )
            .map_err(|source| MountError::Mount {
                fstype: m.fstype.clone(),
                target: m.target.clone(),
                source,
            })
        });
    match result {
        Ok(()) => Ok(Outcome::Mounted),
        Err(e) if !m.required => Ok(Outcome::Skipped(e.to_string())),
        Err(e) => Err(e),
    }
}

/// Applies a table in order; stops at the first failed required mount.
pub fn apply(sys: &dyn Syscalls, table: &[MountPoint]) -> Result<Vec<Outcome>, MountError> {
    table.iter().map(|m| apply_one(sys, m)).collect()
}

/// Makes the whole tree shared, as container runtimes need
/// (`mount --make-rshared /`).
pub fn make_root_rshared(sys: &dyn Syscalls) -> std::io::Result<()> {
    sys.mount(
        None,
        Path::new("/"),
        None,
        MsFlags::MS_REC | MsFlags::MS_SHARED,
        None,
    )
}

/// Enables each controller in the root `cgroup.subtree_control`, one at a
/// time so a controller the kernel lacks does not block the others.
/// Returns the controllers that could not be enabled, with the reason.
pub fn enable_cgroup_controllers(cgroup_root: &Path) -> Vec<(String, std::io::Error)> {
    let path = cgroup_root.join("cgroup.subtree_control");
    CGROUP_CONTROLLERS
        .iter()
        .filter_map(|c| {
            std::fs::write(&path, format!("+{c}"))
                .err()
                .map(|e| (c.to_string(), e))
        })
        .collect()
}

/// Mount points that are never unmounted at shutdown: the root and the
/// kernel's pseudo filesystems (nothing to flush there).
fn keep_at_shutdown(target: &Path) -> bool {
    target == Path::new("/")
        || ["/proc", "/sys", "/dev"]
            .iter()
            .any(|p| target.starts_with(p))
}

/// Unmounts everything but the root and pseudo filesystems, children
/// before parents. A busy filesystem is remounted read-only (so its data is
/// safe) and then detached. Returns the targets that could not be
/// unmounted cleanly, with the reason.
pub fn unmount_all(sys: &dyn Syscalls) -> Vec<(PathBuf, String)> {
    let entries = match sys.mountinfo() {
        Ok(info) => mount_points(&info),
        Err(e) => return vec![(PathBuf::from("/"), format!("cannot read mountinfo: {e}"))],
    };
    let mut problems = Vec::new();
    for m in entries
        .iter()
        .rev()
        .filter(|m| !keep_at_shutdown(&m.target))
    {
        if let Err(e) = sys.umount(&m.target, MntFlags::empty()) {
            let ro = sys.mount(
                None,
                &m.target,
                None,
                MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
                None,
            );
            let _ = sys.umount(&m.target, MntFlags::MNT_DETACH);
            let how = match ro {
                Ok(()) => "remounted read-only and detached",
                Err(_) => "detached",
            };
            // A busy tmpfs has nothing to flush; only report real filesystems.
            if m.fstype != "tmpfs" {
                problems.push((m.target.clone(), format!("{e}; {how}")));
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syscall::{Call, Recording};

    const INIT_MOUNTS: &str = "\
20 1 0:18 / / ro,relatime - squashfs /dev/loop0 ro
21 20 0:5 / /dev rw,nosuid - devtmpfs devtmpfs rw,mode=755
22 20 0:19 / /proc rw,nosuid,nodev,noexec - proc proc rw
23 20 0:20 / /sys rw,nosuid,nodev,noexec - sysfs sysfs rw
";

    #[test]
    fn init_mounts_dev_first_and_every_pseudo_filesystem_nosuid() {
        let t = init_table();
        assert_eq!(t[0].target, PathBuf::from("/dev"));
        assert!(t.iter().all(|m| m.flags.contains(MsFlags::MS_NOSUID)));
        for m in t.iter().filter(|m| m.target != Path::new("/dev")) {
            assert!(m.flags.contains(MsFlags::MS_NOEXEC | MsFlags::MS_NODEV));
        }
        // init's rows are machined's rows: one table type, one definition.
        let early = early_table();
        assert!(t.iter().all(|m| early.contains(m)));
        let root = rootfs("/dev/loop0");
        assert!(root.flags.contains(MsFlags::MS_RDONLY));
        assert_eq!(root.target, PathBuf::from(NEW_ROOT));
    }

    #[test]
    fn finds_the_visible_mount_and_its_options() {
        let text = "25 1 7:0 / / ro,relatime - squashfs /dev/loop0 ro\n\
                    26 1 0:22 / /with\\040space rw - tmpfs tmpfs rw\n";
        let root = find_mount(text, Path::new("/")).unwrap();
        assert_eq!(root.source, "/dev/loop0");
        assert!(root.is_read_only());
        assert!(!find_mount(text, Path::new("/with space"))
            .unwrap()
            .is_read_only());
        assert_eq!(find_mount(text, Path::new("/sys")), None);
        assert_eq!(MountEntry::parse("garbage"), None);
    }

    #[test]
    fn nothing_is_mounted_before_proc() {
        struct NoProc;
        impl Syscalls for NoProc {
            fn mount(
                &self,
                _: Option<&str>,
                _: &Path,
                _: Option<&str>,
                _: MsFlags,
                _: Option<&str>,
            ) -> std::io::Result<()> {
                Ok(())
            }
            fn umount(&self, _: &Path, _: MntFlags) -> std::io::Result<()> {
                Ok(())
            }
            fn mountinfo(&self) -> std::io::Result<String> {
                Err(std::io::ErrorKind::NotFound.into())
            }
            fn create_dir_all(&self, _: &Path, _: u32) -> std::io::Result<()> {
                Ok(())
            }
            fn sync(&self) {}
            fn kill_all(&self, _: nix::sys::signal::Signal) -> std::io::Result<()> {
                Ok(())
            }
            fn reboot(&self, _: nix::sys::reboot::RebootMode) -> std::io::Error {
                std::io::Error::other("no")
            }
            fn attach_loop(&self, _: &Path) -> std::io::Result<PathBuf> {
                Ok(PathBuf::new())
            }
            fn switch_root(&self, _: &Path) -> std::io::Result<()> {
                Ok(())
            }
            fn exec(&self, _: &Path) -> std::io::Error {
                std::io::Error::other("no")
            }
        }
        assert!(!is_mounted(&NoProc, Path::new("/dev")).unwrap());
    }

    #[test]
    fn parses_mountinfo_with_escapes() {
        let e = mount_points(
            "36 35 98:0 /mnt1 /mnt\\040with\\040space rw,noatime master:1 - ext4 /dev/vda6 rw\n",
        );
        assert_eq!(e[0].target, PathBuf::from("/mnt with space"));
        assert_eq!(e[0].fstype, "ext4");
        assert_eq!(e[0].source, "/dev/vda6");
    }

    #[test]
    fn apply_skips_what_init_mounted_and_is_idempotent() {
        let sys = Recording::with_mountinfo(INIT_MOUNTS);
        let table = early_table();
        let first = apply(&sys, &table).unwrap();
        assert_eq!(first[0], Outcome::AlreadyMounted); // /proc
        assert_eq!(first[1], Outcome::AlreadyMounted); // /sys
        assert_eq!(first[2], Outcome::AlreadyMounted); // /dev
        assert!(first[3..].iter().all(|o| *o == Outcome::Mounted));
        let mounts_after_first = sys.calls().len();
        let second = apply(&sys, &table).unwrap();
        assert!(second.iter().all(|o| *o == Outcome::AlreadyMounted));
        assert_eq!(
            sys.calls().len(),
            mounts_after_first,
            "second apply made calls"
        );
        // Mounted in table order, /system before its children.
        let targets: Vec<PathBuf> = sys
            .calls()
            .into_iter()
            .filter_map(|c| match c {
                Call::Mount { target, .. } => Some(target),
                _ => None,
            })
            .collect();
        let pos = |p: &str| targets.iter().position(|t| t == Path::new(p)).unwrap();
        assert!(pos("/system") < pos("/system/secrets"));
        assert!(pos("/system") < pos("/system/run"));
    }

    #[test]
    fn secrets_tmpfs_is_private() {
        let t = early_table();
        let s = t
            .iter()
            .find(|m| m.target == Path::new(config::constants::SECRETS_DIR))
            .unwrap();
        // Not listable by anyone but root; each service's directory below
        // is 0700 and its own.
        assert_eq!(s.data.as_deref(), Some("mode=0711"));
    }

    #[test]
    fn optional_failure_is_skipped_required_failure_stops() {
        let mut sys = Recording::with_mountinfo(INIT_MOUNTS);
        sys.failing = vec![(PathBuf::from("/dev/pts"), libc::ENODEV)];
        let out = apply(&sys, &early_table()).unwrap();
        assert!(matches!(out[3], Outcome::Skipped(_)));

        let mut sys = Recording::with_mountinfo(INIT_MOUNTS);
        sys.failing = vec![(PathBuf::from("/run"), libc::ENODEV)];
        let err = apply(&sys, &early_table()).unwrap_err();
        assert!(err.to_string().contains("/run"), "{err}");
    }

    #[test]
    fn unmount_all_goes_children_first_and_keeps_pseudo_filesystems() {
        let sys = Recording::with_mountinfo(INIT_MOUNTS);
        apply(&sys, &early_table()).unwrap();
        sys.mount(
            Some("/dev/vda5"),
            Path::new("/system/state"),
            Some("ext4"),
            MsFlags::empty(),
            None,
        )
        .unwrap();
        let problems = unmount_all(&sys);
        assert!(problems.is_empty());
        let unmounted: Vec<PathBuf> = sys
            .calls()
            .into_iter()
            .filter_map(|c| match c {
                Call::Umount(t) => Some(t),
                _ => None,
            })
            .collect();
        assert_eq!(unmounted[0], PathBuf::from("/system/state"));
        let pos = |p: &str| unmounted.iter().position(|t| t == Path::new(p)).unwrap();
        assert!(pos("/system/secrets") < pos("/system"));
        assert!(
            !unmounted.iter().any(|t| keep_at_shutdown(t)),
            "{unmounted:?}"
        );
    }
}
