//! `cairnctl disks`: the block devices of each node (also in maintenance
//! mode, to pick an install disk).

use std::process::ExitCode;

use api::machine::DiskInfo;
use serde::Serialize;

use crate::global::GlobalArgs;
use crate::output::{self, Format, Table};
use crate::session::{self, Session};

#[derive(clap::Args, Debug)]
#[command(after_help = "\
Examples:
  cairnctl -n 10.5.0.2 --insecure disks
  cairnctl -n 10.5.0.2 disks -o json

Works in maintenance mode (with --insecure), so the install disk can be chosen
before the first config is applied. SYSTEM marks the disk Cairn booted from.")]
pub struct Args {
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = Format::Table)]
    pub output: Format,
}

#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct DiskRecord {
    pub node: String,
    pub device: String,
    pub size: u64,
    pub model: String,
    pub serial: String,
    pub wwid: String,
    pub transport: String,
    pub readonly: bool,
    pub rotational: bool,
    pub contents: String,
    pub system_disk: bool,
}

impl DiskRecord {
    pub fn new(node: &str, d: &DiskInfo) -> Self {
        DiskRecord {
            node: node.to_string(),
            device: d.device.clone(),
            size: d.size,
            model: d.model.clone(),
            serial: d.serial.clone(),
            wwid: d.wwid.clone(),
            transport: d.transport.clone(),
            readonly: d.readonly,
            rotational: d.rotational,
            contents: d.contents.clone(),
            system_disk: d.system_disk,
        }
    }
}

pub fn table(records: &[DiskRecord]) -> Table {
    let mut t = Table::new([
        "NODE", "DEVICE", "SIZE", "TYPE", "MODEL", "SERIAL", "SYSTEM", "CONTENTS",
    ]);
    for d in records {
        let kind = match (d.transport.as_str(), d.rotational) {
            ("", true) => "hdd".to_string(),
            ("", false) => "ssd".to_string(),
            (t, _) => t.to_string(),
        };
        let mut contents = if d.contents.is_empty() {
            "empty".to_string()
        } else {
            d.contents.clone()
        };
        if d.readonly {
            contents.push_str(" (read-only)");
        }
        t.row([
            d.node.clone(),
            d.device.clone(),
            output::bytes(d.size),
            kind,
            d.model.clone(),
            d.serial.clone(),
            if d.system_disk { "*" } else { "" }.to_string(),
            contents,
        ]);
    }
    t
}

pub async fn run(args: Args, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let session = Session::open(global).await?;
    let results = session
        .each(|c| async move {
            c.call("Disks", (), |mut m, r| async move { m.disks(r).await })
                .await
        })
        .await;
    let records: Vec<DiskRecord> = session::successes(&results)
        .flat_map(|(node, r)| r.disks.iter().map(move |d| DiskRecord::new(node, d)))
        .collect();
    output::print_records(args.output, || table(&records), &records)?;
    Ok(session::report_errors(&results))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_system_disk_is_marked_and_blank_disks_say_empty() {
        let records = vec![
            DiskRecord::new(
                "n1",
                &DiskInfo {
                    device: "/dev/vda".into(),
                    size: 2 << 30,
                    transport: "virtio".into(),
                    contents: "gpt: EFI, BIOS, BOOT, META, STATE, EPHEMERAL".into(),
                    system_disk: true,
                    ..Default::default()
                },
            ),
            DiskRecord::new(
                "n1",
                &DiskInfo {
                    device: "/dev/sr0".into(),
                    size: 1536,
                    readonly: true,
                    model: "QEMU DVD-ROM".into(),
                    ..Default::default()
                },
            ),
        ];
        assert_eq!(
            table(&records).render(),
            "NODE   DEVICE     SIZE      TYPE     MODEL          SERIAL   SYSTEM   CONTENTS\n\
             n1     /dev/vda   2.0 GiB   virtio                           *        gpt: EFI, BIOS, BOOT, META, STATE, EPHEMERAL\n\
             n1     /dev/sr0   1.5 KiB   ssd      QEMU DVD-ROM                     empty (read-only)\n"
        );
    }
}
