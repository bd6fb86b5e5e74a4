//! `cairnctl mounts`: the filesystems mounted on each node.

use std::process::ExitCode;

use api::machine::MountInfo;
use serde::Serialize;

use crate::global::GlobalArgs;
use crate::output::{self, Format, Table};
use crate::session::{self, Session};

#[derive(clap::Args, Debug)]
#[command(after_help = "\
Examples:
  cairnctl -n 10.5.0.2 mounts
  cairnctl -n 10.5.0.2 mounts -o yaml")]
pub struct Args {
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = Format::Table)]
    pub output: Format,
}

#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct MountRecord {
    pub node: String,
    pub source: String,
    pub target: String,
    pub filesystem: String,
    pub options: String,
    pub size: u64,
    pub available: u64,
}

impl MountRecord {
    pub fn new(node: &str, m: &MountInfo) -> Self {
        MountRecord {
            node: node.to_string(),
            source: m.source.clone(),
            target: m.target.clone(),
            filesystem: m.filesystem.clone(),
            options: m.options.clone(),
            size: m.size,
            available: m.available,
        }
    }
}

pub fn table(records: &[MountRecord]) -> Table {
    let mut t = Table::new([
        "NODE",
        "SOURCE",
        "TYPE",
        "SIZE",
        "USED",
        "USE%",
        "MOUNTED ON",
    ]);
    for m in records {
        let (size, used, percent) = if m.size == 0 {
            (String::new(), String::new(), String::new())
        } else {
            let used = m.size.saturating_sub(m.available);
            (
                output::bytes(m.size),
                output::bytes(used),
                format!("{:.0}%", used as f64 * 100.0 / m.size as f64),
            )
        };
        t.row([
            m.node.clone(),
            m.source.clone(),
            m.filesystem.clone(),
            size,
            used,
            percent,
            m.target.clone(),
        ]);
    }
    t
}

pub async fn run(args: Args, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let session = Session::open(global).await?;
    let results = session
        .each(|c| async move {
            c.call("Mounts", (), |mut m, r| async move { m.mounts(r).await })
                .await
        })
        .await;
    let records: Vec<MountRecord> = session::successes(&results)
        .flat_map(|(node, r)| r.mounts.iter().map(move |m| MountRecord::new(node, m)))
        .collect();
    output::print_records(args.output, || table(&records), &records)?;
    Ok(session::report_errors(&results))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pseudo_filesystems_have_no_sizes() {
        let records = vec![
            MountRecord::new(
                "n1",
                &MountInfo {
                    source: "/dev/vda5".into(),
                    target: "/system/state".into(),
                    filesystem: "ext4".into(),
                    size: 100 << 20,
                    available: 75 << 20,
                    ..Default::default()
                },
            ),
            MountRecord::new(
                "n1",
                &MountInfo {
                    source: "proc".into(),
                    target: "/proc".into(),
                    filesystem: "proc".into(),
                    ..Default::default()
                },
            ),
        ];
        assert_eq!(
            table(&records).render(),
            "NODE   SOURCE      TYPE   SIZE        USED       USE%   MOUNTED ON\n\
             n1     /dev/vda5   ext4   100.0 MiB   25.0 MiB   25%    /system/state\n\
             n1     proc        proc                                 /proc\n"
        );
    }
}
