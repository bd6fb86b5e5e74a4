//! `cairnctl netstat`: TCP and UDP sockets on nodes, with their processes.

use std::process::ExitCode;

use api::machine::{NetstatRequest, NetstatResponse, Socket};
use serde::Serialize;

use crate::global::GlobalArgs;
use crate::output::{self, Format, Table};
use crate::session::{self, Session};

#[derive(clap::Args, Debug)]
#[command(after_help = "\
Examples:
  cairnctl -n 10.5.0.2 netstat
  cairnctl -n 10.5.0.2 netstat -l
  cairnctl -n 10.5.0.2 netstat -o json")]
pub struct Args {
    /// Only listening sockets.
    #[arg(short = 'l', long)]
    pub listening: bool,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = Format::Table)]
    pub output: Format,
}

#[derive(Serialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SocketRecord {
    pub node: String,
    pub protocol: String,
    pub local: String,
    pub remote: String,
    pub state: String,
    pub pid: i32,
    pub process: String,
    pub tx_queue: u64,
    pub rx_queue: u64,
}

fn endpoint(addr: &str, port: u32) -> String {
    if addr.contains(':') {
        format!("[{addr}]:{port}")
    } else {
        format!("{addr}:{port}")
    }
}

impl SocketRecord {
    pub fn new(node: &str, s: &Socket) -> Self {
        SocketRecord {
            node: node.to_string(),
            protocol: s.protocol.clone(),
            local: endpoint(&s.local_address, s.local_port),
            remote: endpoint(&s.remote_address, s.remote_port),
            state: s.state.clone(),
            pid: s.pid,
            process: s.process.clone(),
            tx_queue: s.tx_queue,
            rx_queue: s.rx_queue,
        }
    }
}

pub fn table(records: &[SocketRecord]) -> Table {
    let mut t = Table::new(["NODE", "PROTO", "LOCAL", "REMOTE", "STATE", "PID/PROCESS"]);
    for r in records {
        t.row([
            r.node.clone(),
            r.protocol.clone(),
            r.local.clone(),
            r.remote.clone(),
            r.state.clone(),
            if r.pid > 0 {
                format!("{}/{}", r.pid, r.process)
            } else {
                "-".to_string()
            },
        ]);
    }
    t
}

pub fn records(node: &str, r: &NetstatResponse) -> Vec<SocketRecord> {
    r.sockets
        .iter()
        .map(|s| SocketRecord::new(node, s))
        .collect()
}

pub async fn run(args: Args, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let session = Session::open(global).await?;
    let listening = args.listening;
    let results = session
        .each(|c| async move {
            c.call(
                "Netstat",
                NetstatRequest { listening },
                |mut m, r| async move { m.netstat(r).await },
            )
            .await
        })
        .await;
    let all: Vec<SocketRecord> = session::successes(&results)
        .flat_map(|(node, r)| records(node, r))
        .collect();
    output::print_records(args.output, || table(&all), &all)?;
    Ok(session::report_errors(&results))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_and_processes() {
        let r = NetstatResponse {
            sockets: vec![
                Socket {
                    protocol: "tcp".into(),
                    local_address: "0.0.0.0".into(),
                    local_port: 50000,
                    remote_address: "0.0.0.0".into(),
                    state: "LISTEN".into(),
                    pid: 42,
                    process: "apid".into(),
                    ..Default::default()
                },
                Socket {
                    protocol: "udp6".into(),
                    local_address: "::1".into(),
                    local_port: 123,
                    remote_address: "::".into(),
                    ..Default::default()
                },
            ],
        };
        let recs = records("n1", &r);
        assert_eq!(recs[1].local, "[::1]:123");
        let text = table(&recs).render();
        assert!(
            text.contains("0.0.0.0:50000") && text.contains("42/apid") && text.contains("LISTEN"),
            "{text}"
        );
    }
}
