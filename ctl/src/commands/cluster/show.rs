//! `cairnctl cluster show --name NAME [-o json|yaml]`: a local cluster's
//! nodes from its state file, with whether each QEMU still runs.

use std::process::ExitCode;

use provision::cluster::{ClusterState, Layout};
use provision::launch;
use serde::Serialize;

use crate::output::{print_records, Format, Table};

#[derive(clap::Args, Debug)]
#[command(after_help = "\
Examples:
  cairnctl cluster show --name demo
  cairnctl cluster show --name demo -o json

Each node's private address, the 127.0.0.1 ports forwarded to its apid (and
on control planes to the Kubernetes API and the join port), its QEMU process
and whether it runs. The cluster's files are under $CAIRN_CACHE/clusters/NAME
(default ~/.cache/cairn/clusters/NAME).")]
pub struct Args {
    /// The cluster's name.
    #[arg(long, default_value = "local")]
    pub name: String,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = Format::Table)]
    pub output: Format,
}

/// One node as shown.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct NodeRow {
    pub name: String,
    pub role: String,
    pub ip: String,
    /// `127.0.0.1:<port>` forwarded to apid.
    pub apid: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kubernetes: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub join: Option<String>,
    pub pid: Option<i32>,
    pub running: bool,
    pub console: String,
}

/// The rows of `state`; `pid_of` says which QEMU runs for a node.
pub fn rows(
    state: &ClusterState,
    layout: &Layout,
    pid_of: impl Fn(&str) -> Option<i32>,
) -> Vec<NodeRow> {
    state
        .nodes
        .iter()
        .map(|n| {
            let pid = pid_of(&n.name);
            NodeRow {
                name: n.name.clone(),
                role: n.role.as_str().into(),
                ip: n.ip.to_string(),
                apid: format!("127.0.0.1:{}", n.apid_port),
                kubernetes: n.api_port.map(|p| format!("127.0.0.1:{p}")),
                join: n.join_port.map(|p| format!("127.0.0.1:{p}")),
                pid,
                running: pid.is_some(),
                console: layout.console(&n.name).display().to_string(),
            }
        })
        .collect()
}

pub fn table(rows: &[NodeRow]) -> Table {
    let mut t = Table::new([
        "NODE",
        "ROLE",
        "PRIVATE IP",
        "APID",
        "KUBERNETES",
        "QEMU PID",
        "RUNNING",
    ]);
    for r in rows {
        t.row([
            r.name.clone(),
            r.role.clone(),
            r.ip.clone(),
            r.apid.clone(),
            r.kubernetes.clone().unwrap_or_else(|| "-".into()),
            r.pid.map_or_else(|| "-".into(), |p| p.to_string()),
            if r.running { "yes" } else { "no" }.into(),
        ]);
    }
    t
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let layout = Layout::named(&args.name)?;
    if !layout.state_file().exists() {
        anyhow::bail!(
            "no cluster named {:?} (no {}); cairnctl cluster create --name {} makes one",
            args.name,
            layout.state_file().display(),
            args.name
        );
    }
    let state = layout.load()?;
    let rows = rows(&state, &layout, |n| launch::qemu_pid(&layout, n));
    print_records(args.output, || table(&rows), &rows)?;
    if args.output == Format::Table {
        let hub = match launch::hub_pid(&layout) {
            Some(pid) => format!("running (pid {pid})"),
            None => "not running".into(),
        };
        println!();
        println!("network:     {} (hub {hub})", state.network);
        println!("endpoint:    {}", state.endpoint);
        println!("directory:   {}", layout.dir.display());
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use provision::cluster::{plan, Request};

    #[test]
    fn nodes_are_listed_with_ports_pids_and_whether_they_run() {
        let mut nodes = plan(&Request {
            name: "demo".into(),
            controlplanes: 1,
            workers: 1,
            controlplane_memory_mib: 4096,
            worker_memory_mib: 2048,
            cpus: 2,
        })
        .unwrap();
        nodes[0].apid_port = 50000;
        nodes[0].api_port = Some(6443);
        nodes[0].join_port = Some(40001);
        nodes[1].apid_port = 40002;
        let state = ClusterState {
            name: "demo".into(),
            network: "10.5.0.0/24".into(),
            endpoint: "https://10.5.0.2:6443".into(),
            image_dir: "/o".into(),
            nodes,
            merged_context: None,
        };
        let layout = Layout::new("/c/demo");
        let rows = rows(&state, &layout, |n| (n == "cp-1").then_some(4242));
        let text = table(&rows).render();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0].split_whitespace().collect::<Vec<_>>(),
            [
                "NODE",
                "ROLE",
                "PRIVATE",
                "IP",
                "APID",
                "KUBERNETES",
                "QEMU",
                "PID",
                "RUNNING"
            ]
        );
        assert_eq!(
            lines[1].split_whitespace().collect::<Vec<_>>(),
            [
                "cp-1",
                "controlplane",
                "10.5.0.2",
                "127.0.0.1:50000",
                "127.0.0.1:6443",
                "4242",
                "yes"
            ]
        );
        assert_eq!(
            lines[2].split_whitespace().collect::<Vec<_>>(),
            [
                "worker-1",
                "worker",
                "10.5.0.10",
                "127.0.0.1:40002",
                "-",
                "-",
                "no"
            ]
        );
        let json = serde_json::to_value(&rows).unwrap();
        assert_eq!(json[0]["join"], "127.0.0.1:40001");
        assert_eq!(json[1]["running"], false);
        assert!(json[1].get("kubernetes").is_none());
        assert_eq!(json[1]["console"], "/c/demo/worker-1/console.log");
    }
}
