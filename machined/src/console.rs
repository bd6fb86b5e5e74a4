//! What the console shows, since nobody can log in: a short status block
//! (hostname, stage, config source, apid's mode, addresses, services)
//! whenever one of them changes, and the periodic status line the bench and
//! tests read:
//! `cairn: status: stage=<stage> rss machined=<KiB>KiB apid=<KiB>KiB init=<KiB>KiB|gone`

use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;

use crate::state::Node;
use runtime::resources::specs::{AddressSpec, HostnameSpec, MachineStatusSpec, ServiceSpec};
use runtime::resources::{kind, Filter, Store, Watch};

/// VmRSS of a process in KiB, from `/proc/<pid>/status`.
pub fn rss_kib(pid: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_vmrss(&status)
}

fn parse_vmrss(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// The pid of a process whose command name is `comm`, if any.
pub fn find_process(comm: &str) -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let c = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
        (c.trim() == comm).then_some(pid)
    })
}

pub fn status_line(
    stage: &str,
    machined: Option<u64>,
    apid: Option<u64>,
    init: Option<u64>,
) -> String {
    let kib = |v: Option<u64>, none: &str| v.map_or(none.to_string(), |k| format!("{k}KiB"));
    format!(
        "status: stage={stage} rss machined={} apid={} init={}",
        kib(machined, "unknown"),
        kib(apid, "down"),
        kib(init, "gone")
    )
}

/// Prints the status line now and every 10 s.
pub async fn status_loop(node: Arc<Node>) {
    let mut tick = tokio::time::interval(Duration::from_secs(10));
    loop {
        tick.tick().await;
        let stage = node.status().stage.as_str();
        let apid = node
            .supervisor
            .handle("apid")
            .and_then(|h| h.snapshot().pid)
            .and_then(|pid| rss_kib(&pid.to_string()));
        // After switch_root, init exec'd machined; an "init" process still
        // around would be a leak worth seeing.
        let init = find_process("init").and_then(|pid| rss_kib(&pid.to_string()));
        runtime::console!("{}", status_line(stage, rss_kib("self"), apid, init));
    }
}

/// The status block: one line each for the node, its addresses and its
/// services, from the resource store.
pub fn status_block(store: &Store) -> Vec<String> {
    let host = store
        .spec::<HostnameSpec>(HostnameSpec::ID)
        .map(|h| h.hostname)
        .unwrap_or_else(|| "(no hostname yet)".into());
    let status = store
        .spec::<MachineStatusSpec>(MachineStatusSpec::ID)
        .unwrap_or_default();
    let config = if status.config_source.is_empty() {
        "none"
    } else {
        &status.config_source
    };
    let addresses: Vec<String> = store
        .specs::<AddressSpec>()
        .into_iter()
        .filter(|(_, a)| a.scope == "global")
        .map(|(_, a)| format!("{} on {}", a.address, a.link))
        .collect();
    let services: Vec<String> = store
        .specs::<ServiceSpec>()
        .into_iter()
        .map(|(id, s)| match s.health.as_str() {
            "unknown" => format!("{id} {}", s.state),
            h => format!("{id} {} ({h})", s.state),
        })
        .collect();
    let or_none = |v: Vec<String>| {
        if v.is_empty() {
            "none yet".to_string()
        } else {
            v.join(", ")
        }
    };
    vec![
        format!(
            "[{host}] stage {}; config {config}; apid {}",
            status.stage.as_str(),
            status.apid.describe()
        ),
        format!("[{host}] addresses: {}", or_none(addresses)),
        format!("[{host}] services: {}", or_none(services)),
    ]
}

/// At most one block per this long.
const BLOCK_INTERVAL: Duration = Duration::from_secs(2);
/// Changes come in bursts (a service passing through several states, an
/// address and its routes): let one settle before printing.
const BLOCK_SETTLE: Duration = Duration::from_millis(250);

/// Prints the status block whenever what it shows changes, at most once
/// per [`BLOCK_INTERVAL`], and never the same block twice in a row.
pub async fn block_loop(store: Arc<Store>) {
    let filter = Filter {
        kinds: vec![
            kind::HOSTNAME,
            kind::MACHINE_STATUS,
            kind::ADDRESSES,
            kind::SERVICES,
        ],
        id: None,
    };
    let mut watch = Watch::new(&store, filter, false);
    let mut last: Vec<String> = Vec::new();
    let mut printed_at: Option<tokio::time::Instant> = None;
    loop {
        watch.next().await;
        tokio::time::sleep(BLOCK_SETTLE).await;
        if let Some(t) = printed_at {
            tokio::time::sleep_until(t + BLOCK_INTERVAL).await;
        }
        while watch.next().now_or_never().is_some() {}
        let block = status_block(&store);
        if block != last {
            for line in &block {
                runtime::console!("{line}");
            }
            printed_at = Some(tokio::time::Instant::now());
            last = block;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_format_matches_the_contract() {
        assert_eq!(
            status_line("maintenance", Some(5120), Some(4096), None),
            "status: stage=maintenance rss machined=5120KiB apid=4096KiB init=gone"
        );
        assert_eq!(
            status_line("maintenance", Some(1), None, Some(2)),
            "status: stage=maintenance rss machined=1KiB apid=down init=2KiB"
        );
    }

    #[test]
    fn reads_own_rss() {
        assert_eq!(parse_vmrss("Name:\tx\nVmRSS:\t    1234 kB\n"), Some(1234));
        assert!(rss_kib("self").unwrap() > 0);
    }

    #[test]
    fn block_shows_node_addresses_and_services() {
        use runtime::resources::specs::{ApidMode, Stage};
        let store = Store::new();
        let empty = status_block(&store);
        assert_eq!(empty[1], "[(no hostname yet)] addresses: none yet");
        let w = store
            .writer(
                "test",
                &[
                    kind::HOSTNAME,
                    kind::MACHINE_STATUS,
                    kind::ADDRESSES,
                    kind::SERVICES,
                ],
            )
            .unwrap();
        w.put("hostname", HostnameSpec::new("cairn-123456"))
            .unwrap();
        w.put(
            MachineStatusSpec::ID,
            MachineStatusSpec {
                stage: Stage::Maintenance,
                apid: ApidMode::Maintenance,
                config_source: String::new(),
                join: String::new(),
            },
        )
        .unwrap();
        let addr = |a: &str, scope: &str| AddressSpec {
            address: a.into(),
            link: "eth0".into(),
            link_index: 2,
            family: "inet4".into(),
            scope: scope.into(),
            dynamic: true,
        };
        w.put("eth0/10.0.2.15/24", addr("10.0.2.15/24", "global"))
            .unwrap();
        w.put("eth0/fe80::1/64", addr("fe80::1/64", "link"))
            .unwrap();
        w.put(
            "apid",
            ServiceSpec {
                state: "Running".into(),
                message: String::new(),
                running: true,
                health: "ok".into(),
                health_message: String::new(),
                pid: Some(7),
                restarts: 0,
                depends_on: vec![],
            },
        )
        .unwrap();
        assert_eq!(
            status_block(&store),
            vec![
                "[cairn-123456] stage maintenance; config none; apid maintenance mode (TLS, no client certificates)",
                "[cairn-123456] addresses: 10.0.2.15/24 on eth0",
                "[cairn-123456] services: apid Running (ok)",
            ]
        );
    }
}
