//! `cairnctl memory`: memory use of each node.

use std::process::ExitCode;

use api::machine::MemoryResponse;
use serde::Serialize;

use crate::global::GlobalArgs;
use crate::output::{self, Format, Table};
use crate::session::{self, Session};

#[derive(clap::Args, Debug)]
#[command(after_help = "\
Examples:
  cairnctl -n 10.5.0.2 memory
  cairnctl -n 10.5.0.2,10.5.0.3 memory -o json

Columns are in MiB; USED is total minus free, buffers and cache. JSON and YAML
give bytes.")]
pub struct Args {
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = Format::Table)]
    pub output: Format,
}

#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct MemoryRecord {
    pub node: String,
    pub total: u64,
    pub used: u64,
    pub free: u64,
    pub shared: u64,
    pub buffers: u64,
    pub cached: u64,
    pub available: u64,
    pub swap_total: u64,
    pub swap_free: u64,
}

impl MemoryRecord {
    pub fn new(node: &str, m: &MemoryResponse) -> Self {
        MemoryRecord {
            node: node.to_string(),
            total: m.mem_total,
            used: m
                .mem_total
                .saturating_sub(m.mem_free)
                .saturating_sub(m.buffers)
                .saturating_sub(m.cached),
            free: m.mem_free,
            shared: m.shmem,
            buffers: m.buffers,
            cached: m.cached,
            available: m.mem_available,
            swap_total: m.swap_total,
            swap_free: m.swap_free,
        }
    }
}

pub fn table(records: &[MemoryRecord]) -> Table {
    let mut t = Table::new([
        "NODE",
        "TOTAL",
        "USED",
        "FREE",
        "SHARED",
        "BUFFERS",
        "CACHE",
        "AVAILABLE",
    ]);
    for m in records {
        t.row([
            m.node.clone(),
            output::mib(m.total),
            output::mib(m.used),
            output::mib(m.free),
            output::mib(m.shared),
            output::mib(m.buffers),
            output::mib(m.cached),
            output::mib(m.available),
        ]);
    }
    t
}

pub async fn run(args: Args, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let session = Session::open(global).await?;
    let results = session
        .each(|c| async move {
            c.call("Memory", (), |mut m, r| async move { m.memory(r).await })
                .await
        })
        .await;
    let records: Vec<MemoryRecord> = session::successes(&results)
        .map(|(node, m)| MemoryRecord::new(node, m))
        .collect();
    output::print_records(args.output, || table(&records), &records)?;
    Ok(session::report_errors(&results))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn used_excludes_buffers_and_cache() {
        const MIB: u64 = 1 << 20;
        let m = MemoryResponse {
            mem_total: 2048 * MIB,
            mem_free: 1024 * MIB,
            mem_available: 1500 * MIB,
            buffers: 10 * MIB,
            cached: 200 * MIB,
            shmem: 5 * MIB,
            ..Default::default()
        };
        let r = MemoryRecord::new("n1", &m);
        assert_eq!(r.used, 814 * MIB);
        assert_eq!(
            table(&[r]).render(),
            "NODE   TOTAL   USED   FREE   SHARED   BUFFERS   CACHE   AVAILABLE\n\
             n1     2048    814    1024   5        10        200     1500\n"
        );
    }
}
