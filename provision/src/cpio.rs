//! The `newc` cpio format the kernel unpacks as an initramfs: a reader to
//! pull files out of the image's initramfs, and a writer for the bench's
//! one-file initramfs. Hand-written because both are a few lines over a
//! fixed header (see the kernel's Documentation/driver-api/early-userspace/
//! buffer-format.rst), smaller than any crate for it.

const MAGIC: &[u8; 6] = b"070701";
const HEADER_LEN: usize = 110;
const TRAILER: &str = "TRAILER!!!";

#[derive(Debug, thiserror::Error)]
pub enum CpioError {
    #[error("not a newc cpio archive at offset {0}")]
    BadMagic(usize),
    #[error("archive truncated at offset {0}")]
    Truncated(usize),
    #[error("bad header field at offset {0}")]
    BadField(usize),
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

fn field(header: &[u8], index: usize, at: usize) -> Result<usize, CpioError> {
    let start = 6 + index * 8;
    let text =
        std::str::from_utf8(&header[start..start + 8]).map_err(|_| CpioError::BadField(at))?;
    usize::from_str_radix(text, 16).map_err(|_| CpioError::BadField(at))
}

/// Returns the data of the regular file `name` (without a leading `/` or
/// `./`), or `None` if the archive does not hold it.
pub fn find<'a>(archive: &'a [u8], name: &str) -> Result<Option<&'a [u8]>, CpioError> {
    let mut at = 0;
    // Several archives may be concatenated, with zero padding between.
    while at < archive.len() {
        if archive[at] == 0 {
            at += 1;
            continue;
        }
        let header = archive
            .get(at..at + HEADER_LEN)
            .ok_or(CpioError::Truncated(at))?;
        if &header[..6] != MAGIC {
            return Err(CpioError::BadMagic(at));
        }
        let file_size = field(header, 6, at)?;
        let name_size = field(header, 11, at)?;
        let name_start = at + HEADER_LEN;
        let raw_name = archive
            .get(name_start..name_start + name_size.saturating_sub(1))
            .ok_or(CpioError::Truncated(at))?;
        let data_start = align4(name_start + name_size);
        let data = archive
            .get(data_start..data_start + file_size)
            .ok_or(CpioError::Truncated(at))?;
        let entry = String::from_utf8_lossy(raw_name);
        let entry = entry.trim_start_matches("./").trim_start_matches('/');
        if entry == name.trim_start_matches('/') {
            return Ok(Some(data));
        }
        at = align4(data_start + file_size);
    }
    Ok(None)
}

/// Builds a newc archive of regular files (and the directories they need
/// are not required: the kernel creates files at the root directly).
#[derive(Default)]
pub struct Writer {
    out: Vec<u8>,
    ino: u32,
}

impl Writer {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn file(mut self, name: &str, mode: u32, data: &[u8]) -> Self {
        self.entry(name, 0o100000 | mode, data);
        self
    }

    pub fn finish(mut self) -> Vec<u8> {
        self.entry(TRAILER, 0, b"");
        self.out
    }

    fn entry(&mut self, name: &str, mode: u32, data: &[u8]) {
        self.ino += 1;
        let nlink = if mode == 0 { 0 } else { 1 };
        let fields = [
            self.ino,
            mode,
            0, // uid
            0, // gid
            nlink,
            0, // mtime
            data.len() as u32,
            0, // dev major
            0, // dev minor
            0, // rdev major
            0, // rdev minor
            name.len() as u32 + 1,
            0, // check
        ];
        self.out.extend_from_slice(MAGIC);
        for f in fields {
            self.out.extend_from_slice(format!("{f:08x}").as_bytes());
        }
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(0);
        self.out.resize(align4(self.out.len()), 0);
        self.out.extend_from_slice(data);
        self.out.resize(align4(self.out.len()), 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_files_can_be_found_again() {
        let archive = Writer::new()
            .file("init", 0o755, b"\x7fELF...")
            .file("rootfs.sqsh", 0o644, b"hsqs")
            .finish();
        assert_eq!(find(&archive, "init").unwrap(), Some(&b"\x7fELF..."[..]));
        assert_eq!(find(&archive, "/rootfs.sqsh").unwrap(), Some(&b"hsqs"[..]));
        assert_eq!(find(&archive, "missing").unwrap(), None);
    }

    #[test]
    fn garbage_is_not_an_archive() {
        assert!(matches!(find(b"hello world, not cpio at all, long enough to hold a header........................................................", "x"), Err(CpioError::BadMagic(0))));
    }

    #[test]
    fn reads_what_the_cpio_tool_writes() {
        if std::process::Command::new("cpio")
            .arg("--version")
            .output()
            .is_err()
        {
            eprintln!("skipping: cpio is not installed");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("rootfs.sqsh"), b"squash").unwrap();
        std::fs::write(dir.path().join("init"), b"init!").unwrap();
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg("printf 'init\\nrootfs.sqsh\\n' | cpio --quiet -o -H newc")
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(out.status.success());
        assert_eq!(
            find(&out.stdout, "rootfs.sqsh").unwrap(),
            Some(&b"squash"[..])
        );
        assert_eq!(find(&out.stdout, "init").unwrap(), Some(&b"init!"[..]));
    }
}
