//! Disks: whole block devices with their model, serial, transport and what
//! is on them (partition names or a filesystem), from sysfs and the probing
//! in `probe`. The same inventory backs the `disks` resources (refreshed
//! periodically by the controller) and the Disks RPC (read fresh).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use api::machine as pb;
use config::constants::partition;
use futures::future::BoxFuture;

use crate::disks::{list_in, BlockDevice};
use crate::probe::{self, Contents, Filesystem};
use runtime::resources::controller::{Controller, ControllerError, Input};
use runtime::resources::specs::{DiskSpec, PartitionSpec};
use runtime::resources::{kind, Kind, Writer};

const REFRESH: Duration = Duration::from_secs(30);

fn attr(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name))
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn first_attr(dir: &Path, names: &[&str]) -> String {
    names
        .iter()
        .map(|n| attr(dir, n))
        .find(|v| !v.is_empty())
        .unwrap_or_default()
}

/// The bus a disk hangs off, from its device path in sysfs.
pub fn transport(real_path: &Path) -> &'static str {
    let p = real_path.to_string_lossy();
    if p.contains("/usb") {
        "usb"
    } else if p.contains("/virtio") {
        "virtio"
    } else if p.contains("/nvme") {
        "nvme"
    } else if p.contains("/ata") {
        "sata"
    } else if p.contains("/mmc") {
        "mmc"
    } else if p.contains("/host") {
        "scsi"
    } else {
        ""
    }
}

fn describe_fs(fs: &Filesystem) -> String {
    if fs.label().is_empty() {
        fs.fstype().to_string()
    } else {
        format!("{} {:?}", fs.fstype(), fs.label())
    }
}

fn describe(c: &std::io::Result<Contents>) -> String {
    match c {
        Ok(Contents::Filesystem(fs)) => describe_fs(fs),
        Ok(Contents::Blank) => "blank".into(),
        Ok(Contents::Unknown) => "unknown".into(),
        Err(e) => format!("unreadable: {e}"),
    }
}

/// Whether the device carries a GPT ("EFI PART" in LBA 1, for 512-byte
/// or 4 KiB sectors).
fn has_gpt(node: &Path) -> bool {
    let mut head = vec![0u8; 4096 + 8];
    let Ok(mut f) = std::fs::File::open(node) else {
        return false;
    };
    let mut read = 0;
    while read < head.len() {
        match f.read(&mut head[read..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => read += n,
        }
    }
    head.get(512..520) == Some(b"EFI PART") || head.get(4096..4104) == Some(b"EFI PART")
}

/// Every disk (not partition) under `sys_class_block`, with device nodes
/// under `dev_root`.
pub fn inventory(sys_class_block: &Path, dev_root: &Path) -> Vec<(String, DiskSpec)> {
    let devices = list_in(sys_class_block, dev_root);
    let mut parts: BTreeMap<String, Vec<&BlockDevice>> = BTreeMap::new();
    for d in devices.iter().filter(|d| d.is_partition) {
        if let Some(p) = &d.parent {
            parts.entry(p.clone()).or_default().push(d);
        }
    }
    devices
        .iter()
        .filter(|d| !d.is_partition)
        .map(|d| {
            let dir = sys_class_block.join(&d.name);
            let real = std::fs::canonicalize(&dir).unwrap_or_else(|_| dir.clone());
            let mut own_parts = parts.remove(&d.name).unwrap_or_default();
            own_parts.sort_by_key(|p| p.partn.unwrap_or(0));
            let partitions: Vec<PartitionSpec> = own_parts
                .iter()
                .map(|p| PartitionSpec {
                    device: p.node.to_string_lossy().into_owned(),
                    number: p.partn,
                    name: p.partname.clone().unwrap_or_default(),
                    size: p.size_bytes,
                    contents: describe(&probe::probe(&p.node)),
                })
                .collect();
            let contents = if !partitions.is_empty() {
                let names: Vec<&str> = own_parts
                    .iter()
                    .map(|p| {
                        p.partname
                            .as_deref()
                            .filter(|n| !n.is_empty())
                            .unwrap_or(&p.name)
                    })
                    .collect();
                let table = if has_gpt(&d.node) {
                    "gpt"
                } else {
                    "partitions"
                };
                format!("{table}: {}", names.join(", "))
            } else {
                match probe::probe(&d.node) {
                    Ok(Contents::Blank) => String::new(),
                    other => describe(&other),
                }
            };
            let system_disk = own_parts.iter().any(|p| {
                matches!(
                    p.partname.as_deref(),
                    Some(partition::STATE) | Some(partition::EPHEMERAL)
                )
            });
            let spec = DiskSpec {
                device: d.node.to_string_lossy().into_owned(),
                size: d.size_bytes,
                model: first_attr(&dir, &["device/model", "device/name"]),
                serial: first_attr(&dir, &["serial", "device/serial"]),
                wwid: first_attr(&dir, &["wwid", "device/wwid"]),
                transport: transport(&real).to_string(),
                read_only: d.read_only,
                rotational: attr(&dir, "queue/rotational") == "1",
                system_disk,
                contents,
                partitions,
            };
            (d.name.clone(), spec)
        })
        .collect()
}

pub fn to_proto(d: &DiskSpec) -> pb::DiskInfo {
    pb::DiskInfo {
        device: d.device.clone(),
        size: d.size,
        model: d.model.clone(),
        serial: d.serial.clone(),
        wwid: d.wwid.clone(),
        readonly: d.read_only,
        rotational: d.rotational,
        contents: d.contents.clone(),
        system_disk: d.system_disk,
        transport: d.transport.clone(),
    }
}

#[derive(Clone)]
pub struct DisksController {
    pub sys_class_block: PathBuf,
    pub dev_root: PathBuf,
}

impl Default for DisksController {
    fn default() -> Self {
        Self {
            sys_class_block: PathBuf::from("/sys/class/block"),
            dev_root: PathBuf::from("/dev"),
        }
    }
}

impl Controller for DisksController {
    fn name(&self) -> &'static str {
        "disks"
    }

    fn inputs(&self) -> Vec<Input> {
        vec![
            Input::External("/sys/class/block"),
            Input::External("block device contents"),
        ]
    }

    fn outputs(&self) -> Vec<&'static Kind> {
        vec![kind::DISKS]
    }

    fn run(self, writer: Writer) -> BoxFuture<'static, Result<(), ControllerError>> {
        Box::pin(async move {
            loop {
                let (sys, dev) = (self.sys_class_block.clone(), self.dev_root.clone());
                // Probing reads from the devices: off the runtime thread.
                match tokio::task::spawn_blocking(move || inventory(&sys, &dev)).await {
                    Ok(disks) => {
                        if let Err(e) = writer.reconcile(disks) {
                            tracing::warn!(controller = "disks", error = %e, "cannot write");
                        }
                    }
                    Err(e) => tracing::warn!(controller = "disks", error = %e, "probing failed"),
                }
                tokio::time::sleep(REFRESH).await;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_dev(root: &Path, path: &str, uevent: &str, size_sectors: u64) -> PathBuf {
        let d = root.join(path);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("uevent"), uevent).unwrap();
        std::fs::write(d.join("size"), format!("{size_sectors}\n")).unwrap();
        std::fs::write(d.join("ro"), "0\n").unwrap();
        d
    }

    #[test]
    fn disks_with_partitions_serial_transport_and_contents() {
        let root = tempfile::tempdir().unwrap();
        let dev = root.path().join("dev");
        std::fs::create_dir(&dev).unwrap();
        let devices = root
            .path()
            .join("devices/pci0000:00/0000:00:04.0/virtio1/block");
        let vda = fake_dev(&devices, "vda", "DEVNAME=vda\nDEVTYPE=disk\n", 8192);
        std::fs::write(vda.join("serial"), "CAIRN-1\n").unwrap();
        std::fs::create_dir_all(vda.join("queue")).unwrap();
        std::fs::write(vda.join("queue/rotational"), "0\n").unwrap();
        fake_dev(
            &devices,
            "vda/vda5",
            "DEVNAME=vda5\nDEVTYPE=partition\nPARTN=5\nPARTNAME=STATE\n",
            100,
        );
        fake_dev(
            &devices,
            "vda/vda1",
            "DEVNAME=vda1\nDEVTYPE=partition\nPARTN=1\nPARTNAME=EFI\n",
            100,
        );
        fake_dev(&devices, "vdb", "DEVNAME=vdb\nDEVTYPE=disk\n", 4096);
        let class = root.path().join("class/block");
        std::fs::create_dir_all(&class).unwrap();
        for (n, p) in [
            ("vda", "vda"),
            ("vda1", "vda/vda1"),
            ("vda5", "vda/vda5"),
            ("vdb", "vdb"),
        ] {
            std::os::unix::fs::symlink(devices.join(p), class.join(n)).unwrap();
        }
        // Device nodes are plain files here: a GPT disk, an ext4 STATE, a
        // blank vdb.
        let mut disk = vec![0u8; 8192];
        disk[512..520].copy_from_slice(b"EFI PART");
        std::fs::write(dev.join("vda"), &disk).unwrap();
        let mut ext = vec![0u8; 4096];
        ext[1080] = 0x53;
        ext[1081] = 0xEF;
        ext[1144..1149].copy_from_slice(b"STATE");
        std::fs::write(dev.join("vda5"), &ext).unwrap();
        std::fs::write(dev.join("vda1"), [1u8; 600]).unwrap();
        std::fs::write(dev.join("vdb"), vec![0u8; 4096]).unwrap();

        let disks = inventory(&class, &dev);
        assert_eq!(disks.len(), 2);
        let (id, a) = &disks[0];
        assert_eq!(id, "vda");
        assert_eq!(a.serial, "CAIRN-1");
        assert_eq!(a.transport, "virtio");
        assert_eq!(a.size, 8192 * 512);
        assert!(!a.rotational);
        assert!(a.system_disk);
        assert_eq!(a.contents, "gpt: EFI, STATE");
        assert_eq!(a.partitions[1].contents, "ext4 \"STATE\"");
        assert_eq!(a.partitions[0].contents, "unknown");
        let (_, b) = &disks[1];
        assert_eq!(b.contents, "");
        assert!(!b.system_disk);
        let p = to_proto(a);
        assert_eq!(
            (p.device.as_str(), p.system_disk),
            (dev.join("vda").to_str().unwrap(), true)
        );
    }

    #[test]
    fn live_host_inventory_does_not_fail() {
        // Whatever the host has; each disk has a device node and a size.
        for (_, d) in inventory(Path::new("/sys/class/block"), Path::new("/dev")) {
            assert!(d.device.starts_with("/dev/") && d.size > 0, "{d:?}");
        }
    }
}
