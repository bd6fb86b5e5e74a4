//! The machine config on STATE: `config.yaml` (what boots), and next to it
//! `config.staged.yaml` (applied at the next boot) and `config.try.yaml` (a
//! config on trial; promoted when confirmed, dropped otherwise).
//!
//! Every write goes through `config::fsutil::write_private`: a temp file
//! in the same directory, fsync, rename over the target, fsync of the
//! directory. A power cut before the rename leaves the old file (and a
//! temp file that boot removes), after it the new one; never a mix.
//! Promoting a file is a single rename plus a directory fsync.

use std::path::PathBuf;

use config::fsutil::{self, WriteError};

pub const CONFIG: &str = "config.yaml";
pub const STAGED: &str = "config.staged.yaml";
pub const TRY: &str = "config.try.yaml";
/// A staged config that failed validation at boot is kept under this name
/// for inspection.
pub const REJECTED: &str = "config.staged.rejected.yaml";
/// Prefix of `write_private`'s temp files.
const TEMP_PREFIX: &str = ".cairn-tmp";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Write(#[from] WriteError),
    #[error("cannot rename {from} to {to}: {source}")]
    Rename {
        from: PathBuf,
        to: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot remove {path}: {source}")]
    Remove {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot sync {path}: {source}")]
    Sync {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The config files in STATE's mount point.
#[derive(Debug, Clone)]
pub struct StateFiles {
    dir: PathBuf,
}

/// What boot found and did with the files next to `config.yaml`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct BootCleanup {
    /// A staged config was promoted to `config.yaml`.
    pub staged_applied: bool,
    /// A staged config did not validate; kept as [`REJECTED`].
    pub staged_rejected: Vec<String>,
    /// An unconfirmed try config was dropped.
    pub try_discarded: bool,
    /// Temp files from an interrupted write were removed.
    pub temp_removed: usize,
}

impl StateFiles {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        StateFiles { dir: dir.into() }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn sync_dir(&self) -> Result<(), StoreError> {
        std::fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|source| StoreError::Sync {
                path: self.dir.clone(),
                source,
            })
    }

    /// Writes `name` atomically (0600).
    pub fn write(&self, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
        fsutil::write_private_with(&self.path(name), bytes, true, None, &|| {
            crate::debug::power_cut("state:temp-written")
        })?;
        crate::debug::power_cut("state:written");
        Ok(())
    }

    /// Renames `from` over `to` atomically and makes it durable.
    pub fn promote(&self, from: &str, to: &str) -> Result<(), StoreError> {
        let (from, to) = (self.path(from), self.path(to));
        std::fs::rename(&from, &to).map_err(|source| StoreError::Rename { from, to, source })?;
        self.sync_dir()
    }

    /// Removes `name` if it exists.
    pub fn remove(&self, name: &str) -> Result<(), StoreError> {
        let path = self.path(name);
        match std::fs::remove_file(&path) {
            Ok(()) => self.sync_dir(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(StoreError::Remove { path, source }),
        }
    }

    pub fn exists(&self, name: &str) -> bool {
        self.path(name).exists()
    }

    /// Before the config is read at boot: drops temp files of interrupted
    /// writes and an unconfirmed try config (a reboot during a try reverts
    /// it), and promotes a staged config that `validate` accepts.
    pub fn prepare_boot(&self, validate: impl Fn(&[u8]) -> Result<(), Vec<String>>) -> BootCleanup {
        let mut done = BootCleanup::default();
        if let Ok(entries) = std::fs::read_dir(&self.dir) {
            for e in entries.flatten() {
                if e.file_name().to_string_lossy().starts_with(TEMP_PREFIX)
                    && std::fs::remove_file(e.path()).is_ok()
                {
                    done.temp_removed += 1;
                }
            }
        }
        if self.exists(TRY) {
            done.try_discarded = self.remove(TRY).is_ok();
        }
        if let Ok(bytes) = std::fs::read(self.path(STAGED)) {
            match validate(&bytes) {
                Ok(()) => done.staged_applied = self.promote(STAGED, CONFIG).is_ok(),
                Err(problems) => {
                    let _ = self.promote(STAGED, REJECTED);
                    done.staged_rejected = problems;
                }
            }
        }
        done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_are_atomic_and_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let s = StateFiles::new(dir.path());
        s.write(CONFIG, b"old").unwrap();
        s.write(CONFIG, b"new").unwrap();
        assert_eq!(std::fs::read(s.path(CONFIG)).unwrap(), b"new");
        assert_eq!(
            std::fs::metadata(s.path(CONFIG))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o600
        );
        // Only the target is left: no temp file survives a write.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);

        // A write that fails before its rename (here: the target is a
        // directory, so the rename fails) leaves the old file as it was.
        std::fs::create_dir(s.path("blocked")).unwrap();
        std::fs::write(s.path("blocked/keep"), b"x").unwrap();
        assert!(s.write("blocked", b"new").is_err());
        assert_eq!(std::fs::read(s.path("blocked/keep")).unwrap(), b"x");

        s.write(TRY, b"tried").unwrap();
        s.promote(TRY, CONFIG).unwrap();
        assert_eq!(std::fs::read(s.path(CONFIG)).unwrap(), b"tried");
        assert!(!s.exists(TRY));
        s.remove(TRY).unwrap();
    }

    #[test]
    fn boot_promotes_staged_drops_try_and_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let s = StateFiles::new(dir.path());
        s.write(CONFIG, b"running").unwrap();
        s.write(STAGED, b"staged").unwrap();
        s.write(TRY, b"tried").unwrap();
        // What a power cut between write and rename leaves behind.
        std::fs::write(dir.path().join(".cairn-tmpAbC123"), b"half").unwrap();
        let done = s.prepare_boot(|_| Ok(()));
        assert_eq!(
            done,
            BootCleanup {
                staged_applied: true,
                staged_rejected: vec![],
                try_discarded: true,
                temp_removed: 1
            }
        );
        assert_eq!(std::fs::read(s.path(CONFIG)).unwrap(), b"staged");
        assert!(!s.exists(STAGED) && !s.exists(TRY));

        s.write(STAGED, b"bad").unwrap();
        let done = s.prepare_boot(|_| Err(vec!["machine.type: wrong".into()]));
        assert_eq!(done.staged_rejected, vec!["machine.type: wrong"]);
        assert_eq!(std::fs::read(s.path(CONFIG)).unwrap(), b"staged");
        assert_eq!(std::fs::read(s.path(REJECTED)).unwrap(), b"bad");
    }
}
