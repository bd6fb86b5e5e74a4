//! Writing files that hold secrets: mode 0600, atomically (write a temp
//! file in the same directory, fsync, rename), so a crash never leaves a
//! half-written config or a readable key.

use std::io::Write as _;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("{path} already exists (use --force to overwrite)")]
    Exists { path: String },
    #[error("cannot write {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// Write `contents` to `path` with mode 0600. With `overwrite` false an
/// existing file is left alone and [`WriteError::Exists`] returned.
pub fn write_private(path: &Path, contents: &[u8], overwrite: bool) -> Result<(), WriteError> {
    write_private_as(path, contents, overwrite, None)
}

/// [`write_private`], the file owned by `owner` (uid, gid) from before it
/// gets its name, so its reader never meets it as root's.
pub fn write_private_as(
    path: &Path,
    contents: &[u8],
    overwrite: bool,
    owner: Option<(u32, u32)>,
) -> Result<(), WriteError> {
    write_private_with(path, contents, overwrite, owner, &|| {})
}

/// [`write_private_as`], calling `before_rename` once the temp file is
/// written and synced and before it takes the name (the power-cut tests'
/// point between the two).
pub fn write_private_with(
    path: &Path,
    contents: &[u8],
    overwrite: bool,
    owner: Option<(u32, u32)>,
    before_rename: &dyn Fn(),
) -> Result<(), WriteError> {
    let shown = path.display().to_string();
    let io = |source| WriteError::Io {
        path: shown.clone(),
        source,
    };
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    // NamedTempFile creates the file with mode 0600.
    let mut tmp = tempfile::Builder::new()
        .prefix(".cairn-tmp")
        .tempfile_in(dir)
        .map_err(io)?;
    tmp.write_all(contents).map_err(io)?;
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::fchown(tmp.as_file(), Some(uid), Some(gid)).map_err(io)?;
    }
    tmp.as_file().sync_all().map_err(io)?;
    before_rename();
    if overwrite {
        tmp.persist(path).map_err(|e| io(e.error))?;
    } else {
        tmp.persist_noclobber(path).map_err(|e| {
            if e.error.kind() == std::io::ErrorKind::AlreadyExists {
                WriteError::Exists {
                    path: shown.clone(),
                }
            } else {
                io(e.error)
            }
        })?;
    }
    // Make the rename itself durable.
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn private_atomic_no_clobber() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("secret.yaml");
        write_private(&p, b"one", false).unwrap();
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(matches!(
            write_private(&p, b"two", false),
            Err(WriteError::Exists { .. })
        ));
        assert_eq!(std::fs::read(&p).unwrap(), b"one");
        write_private(&p, b"three", true).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"three");
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temp files left"
        );
    }
}
