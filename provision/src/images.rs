//! The built artefacts in `_out/` (or `$CAIRN_OUT`) that the tests boot.

use std::path::{Path, PathBuf};

use crate::cpio;

/// Kernel command line of the images (see images/build-image.sh), used for
/// direct kernel boots so they boot like the ISO and the disk do. A file
/// `cmdline` next to the images overrides it.
pub const DEFAULT_CMDLINE: &str =
    "console=tty0 console=ttyS0,115200 init_on_alloc=1 slab_nomerge pti=on printk.devkmsg=on";

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("{path} is missing: run `make image` first (or point CAIRN_OUT at a directory with the images)")]
    Missing { path: PathBuf },
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// The directory holding the images.
#[derive(Debug, Clone)]
pub struct Images {
    pub dir: PathBuf,
}

impl Images {
    /// `$CAIRN_OUT`, else `_out/` at the workspace root.
    pub fn locate() -> Images {
        let dir = std::env::var_os("CAIRN_OUT")
            .map(PathBuf::from)
            .unwrap_or_else(|| workspace_root().join("_out"));
        Images { dir }
    }

    /// The images for `cairnctl cluster create`: `explicit` (`--image-dir`),
    /// else `$CAIRN_OUT`, else the directory of the running program when it
    /// holds the raw image (`make cairnctl` installs cairnctl beside the
    /// images), else `_out/` of the workspace the program was built in.
    pub fn for_cli(explicit: Option<PathBuf>) -> Images {
        if let Some(dir) = explicit {
            return Images { dir };
        }
        if std::env::var_os("CAIRN_OUT").is_some() {
            return Images::locate();
        }
        let beside = std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf))
            .filter(|d| d.join("metal-amd64.raw").is_file());
        match beside {
            Some(dir) => Images { dir },
            None => Images::locate(),
        }
    }

    fn file(&self, name: &str) -> Result<PathBuf, ImageError> {
        let path = self.dir.join(name);
        if path.is_file() {
            Ok(path)
        } else {
            Err(ImageError::Missing { path })
        }
    }

    pub fn kernel(&self) -> Result<PathBuf, ImageError> {
        self.file("vmlinuz")
    }

    pub fn initramfs(&self) -> Result<PathBuf, ImageError> {
        self.file("initramfs.img")
    }

    pub fn iso(&self) -> Result<PathBuf, ImageError> {
        self.file("metal-amd64.iso")
    }

    pub fn raw(&self) -> Result<PathBuf, ImageError> {
        self.file("metal-amd64.raw")
    }

    /// The kernel command line the images use.
    pub fn cmdline(&self) -> String {
        std::fs::read_to_string(self.dir.join("cmdline"))
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| DEFAULT_CMDLINE.to_string())
    }

    /// The initramfs as a cpio archive, decompressed if it is compressed.
    pub fn read_initramfs(&self) -> Result<Vec<u8>, ImageError> {
        read_decompressed(&self.initramfs()?)
    }

    /// Extracts `/rootfs.sqsh` from the initramfs into `dir` and returns its
    /// path: the root filesystem exactly as it boots.
    pub fn extract_rootfs(&self, dir: &Path) -> Result<PathBuf, ImageError> {
        let initramfs = self.initramfs()?;
        let archive = self.read_initramfs()?;
        let entry = cpio::find(&archive, "rootfs.sqsh")
            .map_err(|e| ImageError::Invalid {
                path: initramfs.clone(),
                message: e.to_string(),
            })?
            .ok_or_else(|| ImageError::Invalid {
                path: initramfs.clone(),
                message: "no rootfs.sqsh in the initramfs".into(),
            })?;
        let out = dir.join("rootfs.sqsh");
        std::fs::write(&out, entry).map_err(|source| ImageError::Read {
            path: out.clone(),
            source,
        })?;
        Ok(out)
    }
}

/// Reads an initramfs, decompressing zstd or lz4 with the command-line
/// tools (the build uses them, so they are installed).
fn read_decompressed(path: &Path) -> Result<Vec<u8>, ImageError> {
    let read_err = |source| ImageError::Read {
        path: path.to_path_buf(),
        source,
    };
    let bytes = std::fs::read(path).map_err(read_err)?;
    let tool = match bytes.get(..4) {
        Some([0x28, 0xb5, 0x2f, 0xfd]) => "zstd",
        Some([0x02, 0x21, 0x4c, 0x18]) => "lz4",
        _ => return Ok(bytes),
    };
    let out = std::process::Command::new(tool)
        .arg("-dc")
        .arg(path)
        .output()
        .map_err(read_err)?;
    if !out.status.success() {
        return Err(ImageError::Invalid {
            path: path.to_path_buf(),
            message: format!(
                "{tool} -dc failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ),
        });
    }
    Ok(out.stdout)
}

/// The Cargo workspace root (this crate lives in `<root>/provision`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("provision/ has a parent")
        .to_path_buf()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_image_says_to_run_make_image() {
        let images = Images {
            dir: PathBuf::from("/nonexistent/cairn-out"),
        };
        let err = images.iso().unwrap_err().to_string();
        assert!(
            err.contains("/nonexistent/cairn-out/metal-amd64.iso"),
            "{err}"
        );
        assert!(err.contains("run `make image`"), "{err}");
    }

    #[test]
    fn rootfs_comes_out_of_an_uncompressed_initramfs() {
        let dir = tempfile::tempdir().unwrap();
        let archive = cpio::Writer::new()
            .file("init", 0o755, b"#init")
            .file("rootfs.sqsh", 0o644, b"hsqs-bytes")
            .finish();
        std::fs::write(dir.path().join("initramfs.img"), archive).unwrap();
        let images = Images {
            dir: dir.path().to_path_buf(),
        };
        let out = images.extract_rootfs(dir.path()).unwrap();
        assert_eq!(std::fs::read(out).unwrap(), b"hsqs-bytes");
    }
}
