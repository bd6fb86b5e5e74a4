//! Filesystem probing: type and label of a block device, and whether it is
//! blank. Hand-written because the only complete probers are C (libblkid)
//! and machined only needs three well-documented superblock layouts.

use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filesystem {
    Ext4 { label: String },
    Vfat { label: String },
    Iso9660 { label: String },
}

impl Filesystem {
    /// The type name `mount(2)` takes.
    pub fn fstype(&self) -> &'static str {
        match self {
            Filesystem::Ext4 { .. } => "ext4",
            Filesystem::Vfat { .. } => "vfat",
            Filesystem::Iso9660 { .. } => "iso9660",
        }
    }

    pub fn label(&self) -> &str {
        match self {
            Filesystem::Ext4 { label }
            | Filesystem::Vfat { label }
            | Filesystem::Iso9660 { label } => label,
        }
    }
}

/// Bytes read from the start of a device; covers the ISO 9660 primary
/// volume descriptor at 32 KiB.
const PROBE_LEN: usize = 34 * 1024;
/// A device whose first bytes are all zero is blank. 128 KiB covers the
/// superblocks of every common filesystem.
const BLANK_LEN: usize = 128 * 1024;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .trim_end_matches(['\0', ' '])
        .to_string()
}

/// Identifies a filesystem from the first [`PROBE_LEN`] bytes of a device.
pub fn identify(head: &[u8]) -> Option<Filesystem> {
    // ext2/3/4: superblock at 1024, magic 0xEF53 at +56, label at +120.
    if head.len() >= 1024 + 136 && head[1080..1082] == [0x53, 0xEF] {
        return Some(Filesystem::Ext4 {
            label: text(&head[1144..1160]),
        });
    }
    // ISO 9660: primary volume descriptor at 32 KiB, "CD001", volume id at +40.
    if head.len() >= 0x8000 + 72 && head[0x8000] == 1 && &head[0x8001..0x8006] == b"CD001" {
        return Some(Filesystem::Iso9660 {
            label: text(&head[0x8028..0x8048]),
        });
    }
    // FAT: boot signature 0x55AA; FAT32 has "FAT32" at 82 and the label at
    // 71, FAT12/16 have "FAT" at 54 and the label at 43.
    if head.len() >= 512 && head[510..512] == [0x55, 0xAA] {
        let label = if &head[82..87] == b"FAT32" {
            Some(text(&head[71..82]))
        } else if &head[54..57] == b"FAT" {
            Some(text(&head[43..54]))
        } else {
            None
        };
        if let Some(label) = label {
            let label = if label == "NO NAME" {
                String::new()
            } else {
                label
            };
            return Some(Filesystem::Vfat { label });
        }
    }
    None
}

/// What is on a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Contents {
    Filesystem(Filesystem),
    /// All zeros at the start: safe to format.
    Blank,
    /// Something machined does not recognize: never formatted.
    Unknown,
}

pub fn probe(path: &Path) -> std::io::Result<Contents> {
    // Non-blocking: on an optical drive a plain open first waits for the
    // drive to report its disc (slow, and pointless for reading a few
    // sectors); a disc that is there reads the same either way.
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    let mut head = vec![0u8; BLANK_LEN];
    let mut read = 0;
    f.seek(SeekFrom::Start(0))?;
    while read < head.len() {
        match f.read(&mut head[read..])? {
            0 => break,
            n => read += n,
        }
    }
    head.truncate(read);
    Ok(classify(&head))
}

fn classify(head: &[u8]) -> Contents {
    if let Some(fs) = identify(&head[..head.len().min(PROBE_LEN)]) {
        return Contents::Filesystem(fs);
    }
    if head.iter().all(|b| *b == 0) {
        Contents::Blank
    } else {
        Contents::Unknown
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognizes_ext4_vfat_iso_and_blank() {
        let mut ext = vec![0u8; BLANK_LEN];
        ext[1080] = 0x53;
        ext[1081] = 0xEF;
        ext[1144..1149].copy_from_slice(b"STATE");
        assert_eq!(
            classify(&ext),
            Contents::Filesystem(Filesystem::Ext4 {
                label: "STATE".into()
            })
        );

        let mut fat = vec![0u8; 4096];
        fat[510] = 0x55;
        fat[511] = 0xAA;
        fat[82..87].copy_from_slice(b"FAT32");
        fat[71..82].copy_from_slice(b"CAIRNCFG   ");
        assert_eq!(
            identify(&fat).unwrap(),
            Filesystem::Vfat {
                label: "CAIRNCFG".into()
            }
        );

        let mut iso = vec![0u8; PROBE_LEN];
        iso[0x8000] = 1;
        iso[0x8001..0x8006].copy_from_slice(b"CD001");
        iso[0x8028..0x8030].copy_from_slice(b"CAIRNCFG");
        for b in &mut iso[0x8030..0x8048] {
            *b = b' ';
        }
        assert_eq!(
            identify(&iso).unwrap(),
            Filesystem::Iso9660 {
                label: "CAIRNCFG".into()
            }
        );
        assert_eq!(identify(&iso).unwrap().fstype(), "iso9660");

        assert_eq!(classify(&vec![0u8; BLANK_LEN]), Contents::Blank);
        let mut junk = vec![0u8; BLANK_LEN];
        junk[70000] = 1;
        assert_eq!(classify(&junk), Contents::Unknown);
    }

    /// Real filesystems made by the real tools, when they are installed.
    #[tokio::test]
    async fn probes_real_mkfs_output() {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("fs.img");
        std::fs::File::create(&img)
            .unwrap()
            .set_len(8 << 20)
            .unwrap();
        assert_eq!(probe(&img).unwrap(), Contents::Blank);
        if !Path::new("/sbin/mke2fs").exists() {
            eprintln!("skipping the mke2fs part: /sbin/mke2fs is not installed");
            return;
        }
        let out = runtime::exec::run(
            "/sbin/mke2fs",
            &[
                "-q",
                "-F",
                "-t",
                "ext4",
                "-L",
                "EPHEMERAL",
                img.to_str().unwrap(),
            ],
        )
        .await
        .unwrap();
        assert!(out.status.success(), "{}", out.output);
        assert_eq!(
            probe(&img).unwrap(),
            Contents::Filesystem(Filesystem::Ext4 {
                label: "EPHEMERAL".into()
            })
        );
        if Path::new("/sbin/mkfs.vfat").exists() {
            let fat = dir.path().join("fat.img");
            std::fs::File::create(&fat)
                .unwrap()
                .set_len(8 << 20)
                .unwrap();
            let out = runtime::exec::run(
                "/sbin/mkfs.vfat",
                &["-n", "CAIRNCFG", fat.to_str().unwrap()],
            )
            .await
            .unwrap();
            assert!(out.status.success(), "{}", out.output);
            assert_eq!(
                probe(&fat).unwrap(),
                Contents::Filesystem(Filesystem::Vfat {
                    label: "CAIRNCFG".into()
                })
            );
        }
    }
}
