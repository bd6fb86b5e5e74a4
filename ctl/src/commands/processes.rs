//! `cairnctl processes`: the processes running on each node.

use std::process::ExitCode;

use api::machine::ProcessInfo;
use serde::Serialize;

use crate::global::GlobalArgs;
use crate::output::{self, Format, Table};
use crate::session::{self, Session};

#[derive(clap::Args, Debug)]
#[command(after_help = "\
Examples:
  cairnctl -n 10.5.0.2 processes
  cairnctl -n 10.5.0.2 processes --sort rss
  cairnctl -n 10.5.0.2 processes -o json

CPU-TIME is user plus system time in seconds; VIRTMEM and RESMEM are the
virtual and resident memory.")]
pub struct Args {
    /// Order of the rows.
    #[arg(short = 's', long, value_enum, default_value_t = Sort::Pid)]
    pub sort: Sort,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = Format::Table)]
    pub output: Format,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sort {
    /// By process id.
    Pid,
    /// Most CPU time first.
    Cpu,
    /// Largest resident memory first.
    Rss,
}

#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct ProcessRecord {
    pub node: String,
    pub pid: i32,
    pub ppid: i32,
    pub state: String,
    pub threads: i32,
    pub cpu_seconds: f64,
    pub virtual_memory: u64,
    pub resident_memory: u64,
    pub command: String,
    pub executable: String,
    pub args: String,
}

impl ProcessRecord {
    pub fn new(node: &str, p: &ProcessInfo) -> Self {
        ProcessRecord {
            node: node.to_string(),
            pid: p.pid,
            ppid: p.ppid,
            state: p.state.clone(),
            threads: p.threads,
            cpu_seconds: p.cpu_seconds,
            virtual_memory: p.virtual_memory,
            resident_memory: p.resident_memory,
            command: p.command.clone(),
            executable: p.executable.clone(),
            args: p.args.clone(),
        }
    }
}

/// Orders `records` (within each node, nodes in the order given).
pub fn sort(records: &mut [ProcessRecord], by: Sort) {
    match by {
        Sort::Pid => records.sort_by(|a, b| a.node.cmp(&b.node).then(a.pid.cmp(&b.pid))),
        Sort::Cpu => records.sort_by(|a, b| {
            a.node
                .cmp(&b.node)
                .then(b.cpu_seconds.total_cmp(&a.cpu_seconds))
        }),
        Sort::Rss => records.sort_by(|a, b| {
            a.node
                .cmp(&b.node)
                .then(b.resident_memory.cmp(&a.resident_memory))
        }),
    }
}

pub fn table(records: &[ProcessRecord]) -> Table {
    let mut t = Table::new([
        "NODE", "PID", "STATE", "THREADS", "CPU-TIME", "VIRTMEM", "RESMEM", "COMMAND",
    ]);
    for p in records {
        let command = if p.args.is_empty() {
            p.command.clone()
        } else {
            p.args.clone()
        };
        t.row([
            p.node.clone(),
            p.pid.to_string(),
            p.state.clone(),
            p.threads.to_string(),
            format!("{:.2}", p.cpu_seconds),
            output::bytes(p.virtual_memory),
            output::bytes(p.resident_memory),
            command,
        ]);
    }
    t
}

pub async fn run(args: Args, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let session = Session::open(global).await?;
    let results = session
        .each(|c| async move {
            c.call(
                "Processes",
                (),
                |mut m, r| async move { m.processes(r).await },
            )
            .await
        })
        .await;
    let mut records: Vec<ProcessRecord> = session::successes(&results)
        .flat_map(|(node, r)| r.processes.iter().map(move |p| ProcessRecord::new(node, p)))
        .collect();
    sort(&mut records, args.sort);
    output::print_records(args.output, || table(&records), &records)?;
    Ok(session::report_errors(&results))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pid: i32, cpu: f64, rss: u64, command: &str, args: &str) -> ProcessRecord {
        ProcessRecord::new(
            "n1",
            &ProcessInfo {
                pid,
                ppid: 1,
                state: "S".into(),
                threads: 2,
                cpu_seconds: cpu,
                virtual_memory: 10 << 20,
                resident_memory: rss,
                command: command.into(),
                executable: format!("/sbin/{command}"),
                args: args.into(),
            },
        )
    }

    #[test]
    fn sorting_and_the_table() {
        let mut records = vec![
            p(30, 0.5, 2048, "apid", "/sbin/apid --x"),
            p(1, 2.25, 1024, "machined", ""),
        ];
        sort(&mut records, Sort::Pid);
        assert_eq!(records[0].pid, 1);
        sort(&mut records, Sort::Rss);
        assert_eq!(records[0].pid, 30);
        sort(&mut records, Sort::Cpu);
        assert_eq!(records[0].pid, 1);
        assert_eq!(
            table(&records).render(),
            "NODE   PID   STATE   THREADS   CPU-TIME   VIRTMEM    RESMEM    COMMAND\n\
             n1     1     S       2         2.25       10.0 MiB   1.0 KiB   machined\n\
             n1     30    S       2         0.50       10.0 MiB   2.0 KiB   /sbin/apid --x\n"
        );
    }
}
