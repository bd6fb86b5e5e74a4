//! The periodic console status line the bench and tests read (there is no
//! shell to ask otherwise):
//! `cairn: status: stage=<stage> rss machined=<KiB>KiB apid=<KiB>KiB init=<KiB>KiB|gone`

use std::sync::Arc;
use std::time::Duration;

use crate::supervisor::Supervisor;

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
pub async fn status_loop(stage: &'static str, supervisor: Arc<Supervisor>) {
    let mut tick = tokio::time::interval(Duration::from_secs(10));
    loop {
        tick.tick().await;
        let apid = supervisor
            .handle("apid")
            .and_then(|h| h.snapshot().pid)
            .and_then(|pid| rss_kib(&pid.to_string()));
        // After switch_root, init exec'd machined; an "init" process still
        // around would be a leak worth seeing.
        let init = find_process("init").and_then(|pid| rss_kib(&pid.to_string()));
        crate::console!("{}", status_line(stage, rss_kib("self"), apid, init));
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
}
