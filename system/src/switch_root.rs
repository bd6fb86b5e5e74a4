//! Switching from the initramfs to the real root, the way busybox's
//! `switch_root` does: the initramfs root cannot be unmounted or
//! pivot_root'ed away, so free its contents, move the new root over `/`
//! and chroot into it.

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Magic numbers of the filesystems an initramfs can be (`statfs.f_type`).
const RAMFS_MAGIC: u64 = 0x8584_58f6;
const TMPFS_MAGIC: u64 = 0x0102_1994;

/// Replaces the initramfs root with the filesystem mounted at `new_root`.
/// Afterwards the process's root and working directory are the new root.
pub fn switch_root(new_root: &Path) -> io::Result<()> {
    rustix::process::chdir(new_root)?;
    let old_root = fs::metadata("/")?;
    let new = fs::metadata(".")?;
    if old_root.dev() == new.dev() {
        return Err(io::Error::other(format!(
            "{} is not a mount point",
            new_root.display()
        )));
    }
    // Only ever delete from a RAM filesystem: a mistake here on a disk root
    // would erase it.
    let magic = rustix::fs::statfs("/")?.f_type as u64;
    if magic != RAMFS_MAGIC && magic != TMPFS_MAGIC {
        return Err(io::Error::other("the current root is not an initramfs"));
    }
    delete_contents(Path::new("/"), old_root.dev())?;
    rustix::mount::mount_move(".", "/")?;
    rustix::process::chroot(".")?;
    rustix::process::chdir("/")?;
    Ok(())
}

/// Deletes everything under `dir` that lives on device `dev`, without
/// following symlinks and without descending into other mounts (the new
/// root and the moved /dev, /proc, /sys). `dir` itself stays.
pub fn delete_contents(dir: &Path, dev: u64) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        let meta = fs::symlink_metadata(&path)?;
        if meta.dev() != dev {
            continue;
        }
        if meta.is_dir() {
            delete_contents(&path, dev)?;
            // A directory that still holds another mount (e.g. /newroot)
            // cannot be removed; that is expected.
            match fs::remove_dir(&path) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(rustix::io::Errno::BUSY.raw_os_error()) => {}
                Err(e) => return Err(e),
            }
        } else {
            fs::remove_file(&path)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn deletes_files_dirs_and_links_but_not_the_directory_itself() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        fs::create_dir_all(r.join("a/b/c")).unwrap();
        fs::write(r.join("a/b/c/file"), "x").unwrap();
        fs::write(r.join("init"), "x").unwrap();
        symlink("/etc", r.join("etc-link")).unwrap();
        let dev = fs::metadata(r).unwrap().dev();

        delete_contents(r, dev).unwrap();

        assert!(r.exists());
        assert_eq!(fs::read_dir(r).unwrap().count(), 0);
        assert!(Path::new("/etc").exists(), "symlink target left alone");
    }

    #[test]
    fn leaves_entries_on_other_devices() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        fs::create_dir(r.join("mnt")).unwrap();
        fs::write(r.join("mnt/keep"), "x").unwrap();
        // Pretend the tree lives on another device: nothing may be deleted.
        let other_dev = fs::metadata(r).unwrap().dev() + 1;

        delete_contents(r, other_dev).unwrap();

        assert!(r.join("mnt/keep").exists());
    }
}
