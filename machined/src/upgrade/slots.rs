//! The boot slots on the BOOT partition: `/A` and `/B`, each holding
//! `vmlinuz`, `initramfs.img` and (with Kubernetes) `payload.sqsh`, and
//! the GRUB environment that says which one boots.
//!
//! A new slot is written into `.<slot>.new/` (each file fsynced), then
//! swapped in with renames and a directory fsync; the GRUB environment is
//! changed only after that. A power cut at any point leaves the environment
//! pointing at the slot that booted before.
//!
//! GRUB reads BOOT with its own ext4 driver, which does not replay the
//! journal: a rename that is durable for Linux (in the journal) can still
//! be invisible to GRUB after a power cut, and a grubenv replaced by a
//! rename then reads as the old one (the power-cut VM test found this: a
//! slot set to boot once booted the old slot). So the environment block is
//! overwritten in place, as grub-editenv and GRUB's own save_env do, and
//! after each change on the node's BOOT the journal is checkpointed
//! (FIFREEZE, FITHAW) so that GRUB reads what Linux does.

use std::path::{Path, PathBuf};

use super::grubenv::{self, GrubEnv, GrubEnvError};

/// Files of a slot, by the asset names of the Upgrade RPC.
pub const ASSETS: &[(&str, &str)] = &[
    ("kernel", "vmlinuz"),
    ("initramfs", "initramfs.img"),
    ("payload", "payload.sqsh"),
];
/// Files a slot must have to boot.
pub const REQUIRED: &[&str] = &["vmlinuz", "initramfs.img"];

#[derive(Debug, thiserror::Error)]
pub enum SlotError {
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Env { path: PathBuf, source: GrubEnvError },
    #[error(transparent)]
    Write(#[from] config::fsutil::WriteError),
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> SlotError {
    let path = path.to_path_buf();
    move |source| SlotError::Io { what, path, source }
}

/// The other slot.
pub fn other(slot: &str) -> &'static str {
    if slot == "A" {
        "B"
    } else {
        "A"
    }
}

/// A slot name as given by a user or the command line.
pub fn parse(slot: &str) -> Option<&'static str> {
    match slot {
        "A" => Some("A"),
        "B" => Some("B"),
        _ => None,
    }
}

/// The file name for an Upgrade asset name.
pub fn asset_file(asset: &str) -> Option<&'static str> {
    ASSETS.iter().find(|(a, _)| *a == asset).map(|(_, f)| *f)
}

/// BOOT, mounted.
#[derive(Debug, Clone)]
pub struct Slots {
    root: PathBuf,
    /// `root` is the mounted BOOT that GRUB reads at the next boot: each
    /// change ends with the journal checkpointed (never in tests, whose
    /// roots are the host's own filesystems).
    grub_reads: bool,
}

impl Slots {
    pub fn new(root: impl Into<PathBuf>) -> Slots {
        Slots {
            root: root.into(),
            grub_reads: false,
        }
    }

    /// The node's BOOT, mounted at `root`, which GRUB reads at boot.
    pub fn boot(root: impl Into<PathBuf>) -> Slots {
        Slots {
            root: root.into(),
            grub_reads: true,
        }
    }

    /// Makes what Linux wrote to BOOT what GRUB reads too: freezing a
    /// filesystem flushes its journal into place, thawing it goes on.
    fn checkpoint_for_grub(&self) -> Result<(), SlotError> {
        if !self.grub_reads {
            return Ok(());
        }
        use std::os::fd::AsRawFd as _;
        const FIFREEZE: libc::c_ulong = 0xc004_5877;
        const FITHAW: libc::c_ulong = 0xc004_5878;
        let dir = std::fs::File::open(&self.root).map_err(io("opening", &self.root))?;
        // SAFETY: FIFREEZE and FITHAW take an int argument the kernel
        // ignores; the descriptor is open for both calls.
        let frozen = unsafe { libc::ioctl(dir.as_raw_fd(), FIFREEZE as _, 0) };
        let error = std::io::Error::last_os_error();
        if frozen == 0 {
            // SAFETY: as above; thawed whatever happens after the freeze.
            unsafe { libc::ioctl(dir.as_raw_fd(), FITHAW as _, 0) };
            return Ok(());
        }
        Err(io("checkpointing the journal of", &self.root)(error))
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn dir(&self, slot: &str) -> PathBuf {
        self.root.join(slot)
    }

    pub fn staging(&self, slot: &str) -> PathBuf {
        self.root.join(format!(".{slot}.new"))
    }

    fn env_path(&self) -> PathBuf {
        self.root.join("grub/grubenv")
    }

    /// Whether `slot` has the files it needs to boot.
    pub fn bootable(&self, slot: &str) -> bool {
        REQUIRED.iter().all(|f| self.dir(slot).join(f).is_file())
    }

    /// The GRUB environment; a missing or unreadable one reads as empty
    /// (GRUB then boots A).
    pub fn env(&self) -> GrubEnv {
        std::fs::read(self.env_path())
            .ok()
            .and_then(|b| GrubEnv::parse(&b).ok())
            .unwrap_or_default()
    }

    /// Changes the GRUB environment atomically.
    pub fn update_env(&self, edit: impl FnOnce(&mut GrubEnv)) -> Result<GrubEnv, SlotError> {
        let mut env = self.env();
        edit(&mut env);
        let path = self.env_path();
        let bytes = env.render().map_err(|source| SlotError::Env {
            path: path.clone(),
            source,
        })?;
        std::fs::create_dir_all(self.root.join("grub")).map_err(io("creating", &path))?;
        // In place when the block is there (GRUB's way: the same data
        // blocks, so GRUB reads the new one whatever the journal holds);
        // created whole otherwise.
        let in_place = std::fs::metadata(&path).is_ok_and(|m| m.len() == bytes.len() as u64);
        if in_place {
            use std::io::Write as _;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(io("opening", &path))?;
            f.write_all(&bytes).map_err(io("writing", &path))?;
            f.sync_all().map_err(io("syncing", &path))?;
        } else {
            config::fsutil::write_private(&path, &bytes, true)?;
        }
        self.checkpoint_for_grub()?;
        Ok(env)
    }

    /// Boot `slot` once at the next boot; the default stays.
    pub fn try_once(&self, slot: &str) -> Result<GrubEnv, SlotError> {
        self.update_env(|e| e.set(grubenv::NEXT, slot))
    }

    /// Make `slot` the one that boots, with nothing to try.
    pub fn make_default(&self, slot: &str) -> Result<GrubEnv, SlotError> {
        self.update_env(|e| {
            e.set(grubenv::DEFAULT, slot);
            e.set(grubenv::NEXT, "");
        })
    }

    /// An empty staging directory for `slot`.
    pub fn start_staging(&self, slot: &str) -> Result<PathBuf, SlotError> {
        let dir = self.staging(slot);
        self.drop_staging(slot)?;
        std::fs::create_dir_all(&dir).map_err(io("creating", &dir))?;
        Ok(dir)
    }

    /// Removes what an interrupted write left; whether there was anything.
    pub fn drop_staging(&self, slot: &str) -> Result<bool, SlotError> {
        let dir = self.staging(slot);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io("removing", &dir)(e)),
        }
    }

    /// Replaces `slot` with its staging directory.
    pub fn commit_staging(&self, slot: &str) -> Result<(), SlotError> {
        let staging = self.staging(slot);
        let target = self.dir(slot);
        let old = self.root.join(format!(".{slot}.old"));
        let _ = std::fs::remove_dir_all(&old);
        sync_dir(&staging)?;
        if target.exists() {
            std::fs::rename(&target, &old).map_err(io("renaming", &target))?;
        }
        std::fs::rename(&staging, &target).map_err(io("renaming", &staging))?;
        sync_dir(&self.root)?;
        let _ = std::fs::remove_dir_all(&old);
        self.checkpoint_for_grub()
    }
}

pub fn sync_dir(dir: &Path) -> Result<(), SlotError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("syncing", dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staging_commits_by_rename_and_env_flips() {
        let dir = tempfile::tempdir().unwrap();
        let s = Slots::new(dir.path());
        std::fs::create_dir_all(s.dir("A")).unwrap();
        for f in REQUIRED {
            std::fs::write(s.dir("A").join(f), b"a").unwrap();
        }
        assert!(s.bootable("A") && !s.bootable("B"));
        assert_eq!(s.env().default_slot(), "A");

        let st = s.start_staging("B").unwrap();
        std::fs::write(st.join("vmlinuz"), b"b").unwrap();
        // Interrupted: staging is dropped, B never appears.
        assert!(s.drop_staging("B").unwrap());
        assert!(!s.dir("B").exists());

        let st = s.start_staging("B").unwrap();
        for f in REQUIRED {
            std::fs::write(st.join(f), b"b").unwrap();
        }
        s.commit_staging("B").unwrap();
        assert!(s.bootable("B"));
        assert!(!s.staging("B").exists());
        // Again over an existing B.
        let st = s.start_staging("B").unwrap();
        for f in REQUIRED {
            std::fs::write(st.join(f), b"b2").unwrap();
        }
        s.commit_staging("B").unwrap();
        assert_eq!(std::fs::read(s.dir("B").join("vmlinuz")).unwrap(), b"b2");

        let e = s.try_once("B").unwrap();
        assert_eq!((e.default_slot(), e.next_slot()), ("A", Some("B")));
        let e = s.make_default("B").unwrap();
        assert_eq!((e.default_slot(), e.next_slot()), ("B", None));
        assert_eq!(s.env(), e);
        assert_eq!(other("A"), "B");
        assert_eq!(asset_file("initramfs"), Some("initramfs.img"));
        assert_eq!(asset_file("rootfs"), None);
    }
}
