//! `cairnctl time`: each node's clock, whether it is synchronised, the
//! server it follows and the last offset measured.

use std::process::ExitCode;
use std::time::SystemTime;

use api::machine::TimeResponse;
use serde::Serialize;

use crate::global::GlobalArgs;
use crate::output::{self, Format, Table};
use crate::session::{self, Session};

#[derive(clap::Args, Debug)]
#[command(after_help = "\
Examples:
  cairnctl -n 10.5.0.2 time
  cairnctl -n 10.5.0.2,10.5.0.3 time -o json

NODE TIME is the node's clock when it answered; DRIFT is how far that is from
this machine's clock (including the round trip). OFFSET is what the node
measured against its time server at its last synchronisation.")]
pub struct Args {
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = Format::Table)]
    pub output: Format,
}

#[derive(Serialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TimeRecord {
    pub node: String,
    pub node_time: String,
    /// Node clock minus local clock, in seconds.
    pub drift_seconds: f64,
    pub synced: bool,
    pub disabled: bool,
    pub server: String,
    pub offset_seconds: f64,
    pub last_sync: String,
    pub servers: Vec<String>,
    pub message: String,
}

impl TimeRecord {
    pub fn new(node: &str, t: &TimeResponse, local: SystemTime) -> Self {
        let node_time = t
            .node_time
            .and_then(|ts| SystemTime::try_from(ts).ok())
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let drift_seconds = match node_time.duration_since(local) {
            Ok(ahead) => ahead.as_secs_f64(),
            Err(behind) => -behind.duration().as_secs_f64(),
        };
        TimeRecord {
            node: node.to_string(),
            node_time: humantime::format_rfc3339_millis(node_time).to_string(),
            drift_seconds,
            synced: t.synced,
            disabled: t.disabled,
            server: t.server.clone(),
            offset_seconds: t.offset_seconds,
            last_sync: t.last_sync.clone(),
            servers: t.servers.clone(),
            message: t.message.clone(),
        }
    }
}

pub fn table(records: &[TimeRecord]) -> Table {
    let mut t = Table::new([
        "NODE",
        "NODE TIME",
        "DRIFT",
        "SYNCED",
        "SERVER",
        "OFFSET",
        "NOTE",
    ]);
    for r in records {
        t.row([
            r.node.clone(),
            r.node_time.clone(),
            format!("{:+.3}s", r.drift_seconds),
            if r.disabled {
                "disabled".to_string()
            } else {
                r.synced.to_string()
            },
            if r.server.is_empty() {
                "-".to_string()
            } else {
                r.server.clone()
            },
            if r.synced {
                format!("{:+.3}s", r.offset_seconds)
            } else {
                "-".to_string()
            },
            r.message.clone(),
        ]);
    }
    t
}

pub async fn run(args: Args, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let session = Session::open(global).await?;
    let results = session
        .each(|c| async move {
            let sent = SystemTime::now();
            c.call("Time", (), |mut m, r| async move { m.time(r).await })
                .await
                .map(|t| (t, sent))
        })
        .await;
    let records: Vec<TimeRecord> = session::successes(&results)
        .map(|(node, (t, sent))| TimeRecord::new(node, t, *sent))
        .collect();
    output::print_records(args.output, || table(&records), &records)?;
    Ok(session::report_errors(&results))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drift_offset_and_table() {
        let local = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        let t = TimeResponse {
            node_time: Some((local + std::time::Duration::from_millis(1500)).into()),
            synced: true,
            server: "10.0.2.2".into(),
            offset_seconds: -0.25,
            ..Default::default()
        };
        let r = TimeRecord::new("n1", &t, local);
        assert!((r.drift_seconds - 1.5).abs() < 1e-6);
        assert_eq!(r.node_time, "2023-11-14T22:13:21.500Z");
        let text = table(&[r]).render();
        assert!(
            text.contains("+1.500s") && text.contains("true") && text.contains("-0.250s"),
            "{text}"
        );
        let unsynced = TimeRecord::new(
            "n2",
            &TimeResponse {
                message: "no time server answered".into(),
                ..Default::default()
            },
            local,
        );
        let text = table(&[unsynced]).render();
        assert!(
            text.contains("false") && text.contains("no time server answered"),
            "{text}"
        );
    }
}
