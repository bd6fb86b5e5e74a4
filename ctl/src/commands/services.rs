//! `cairnctl services`: the services machined supervises on each node.

use std::process::ExitCode;

use api::machine::ServiceInfo;
use serde::Serialize;

use crate::global::GlobalArgs;
use crate::output::{self, Format, Table};
use crate::session::{self, Session};

#[derive(clap::Args, Debug)]
#[command(after_help = "\
Examples:
  cairnctl -n 10.5.0.2 services
  cairnctl -n 10.5.0.2 services -o wide
  cairnctl -n 10.5.0.2,10.5.0.3 services -o json

Columns: the service, its state (Waiting, Preparing, Running, Finished, Failed,
Stopped, Skipped), its health check (ok, failing, unknown), how long ago its
state last changed, and its last event. `-o wide` adds the user id the running
process has and its effective capabilities (none, all, or their names).
`cairnctl service <id>` shows all of a service's events.")]
pub struct Args {
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = ServicesFormat::Table)]
    pub output: ServicesFormat,
}

/// `-o`: the common formats, and `wide`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServicesFormat {
    /// Aligned columns with a header.
    Table,
    /// The table, with each process's user id and capabilities.
    Wide,
    /// JSON (an array).
    Json,
    /// YAML (one document per record).
    Yaml,
}

impl ServicesFormat {
    fn common(self) -> Format {
        match self {
            ServicesFormat::Table | ServicesFormat::Wide => Format::Table,
            ServicesFormat::Json => Format::Json,
            ServicesFormat::Yaml => Format::Yaml,
        }
    }
}

/// One service on one node, for `-o json|yaml`.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct ServiceRecord {
    pub node: String,
    pub id: String,
    pub state: String,
    pub health: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub health_message: String,
    pub restarts: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<i32>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
    /// The running process's user id and effective capabilities.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub capabilities: String,
    pub events: Vec<EventRecord>,
    /// When the state last changed (seconds since the epoch), for the table.
    #[serde(skip)]
    pub last_change: Option<i64>,
}

#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct EventRecord {
    pub time: String,
    pub state: String,
    pub message: String,
}

impl ServiceRecord {
    pub fn new(node: &str, s: &ServiceInfo) -> Self {
        ServiceRecord {
            node: node.to_string(),
            id: s.id.clone(),
            state: s.state.clone(),
            health: if s.health.is_empty() {
                "unknown".into()
            } else {
                s.health.clone()
            },
            health_message: s.health_message.clone(),
            restarts: s.restarts,
            pid: (s.pid > 0).then_some(s.pid),
            depends_on: s.depends_on.clone(),
            uid: s.uid,
            capabilities: s.capabilities.clone(),
            events: s
                .events
                .iter()
                .map(|e| EventRecord {
                    time: output::timestamp(e.time.as_ref()),
                    state: e.state.clone(),
                    message: e.message.clone(),
                })
                .collect(),
            last_change: s
                .events
                .last()
                .and_then(|e| e.time.as_ref())
                .map(|t| t.seconds),
        }
    }
}

/// The table: one row per service per node; `wide` adds the process's
/// user id and capabilities before the last event.
pub fn table(records: &[ServiceRecord], now: i64, wide: bool) -> Table {
    let mut header = vec!["NODE", "SERVICE", "STATE", "HEALTH", "LAST CHANGE"];
    if wide {
        header.extend(["UID", "CAPABILITIES"]);
    }
    header.push("LAST EVENT");
    let mut t = Table::new(header);
    for r in records {
        let last = r.events.last();
        let mut row = vec![
            r.node.clone(),
            r.id.clone(),
            r.state.clone(),
            r.health.clone(),
            r.last_change
                .map(|w| format!("{} ago", output::age(w, now)))
                .unwrap_or_default(),
        ];
        if wide {
            let dash = || "-".to_string();
            row.push(r.uid.map_or_else(dash, |u| u.to_string()));
            row.push(if r.capabilities.is_empty() {
                dash()
            } else {
                r.capabilities.clone()
            });
        }
        row.push(last.map(|e| e.message.clone()).unwrap_or_default());
        t.row(row);
    }
    t
}

/// Seconds since the epoch, now.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

pub async fn run(args: Args, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let session = Session::open(global).await?;
    let results = session
        .each(|c| async move {
            c.call("ServiceList", (), |mut m, r| async move {
                m.service_list(r).await
            })
            .await
        })
        .await;
    let records: Vec<ServiceRecord> = session::successes(&results)
        .flat_map(|(node, list)| {
            list.services
                .iter()
                .map(move |s| ServiceRecord::new(node, s))
        })
        .collect();
    let wide = args.output == ServicesFormat::Wide;
    output::print_records(
        args.output.common(),
        || table(&records, now(), wide),
        &records,
    )?;
    Ok(session::report_errors(&results))
}

#[cfg(test)]
mod tests {
    use super::*;
    use api::machine::ServiceEvent;

    fn info() -> ServiceInfo {
        ServiceInfo {
            id: "apid".into(),
            state: "Running".into(),
            health: "ok".into(),
            health_message: String::new(),
            events: vec![
                ServiceEvent {
                    state: "Preparing".into(),
                    message: "starting".into(),
                    time: Some(prost_types::Timestamp {
                        seconds: 1000,
                        nanos: 0,
                    }),
                },
                ServiceEvent {
                    state: "Running".into(),
                    message: "process started (pid 42)".into(),
                    time: Some(prost_types::Timestamp {
                        seconds: 1010,
                        nanos: 0,
                    }),
                },
            ],
            restarts: 0,
            pid: 42,
            depends_on: vec![],
            uid: Some(50),
            capabilities: "none".into(),
        }
    }

    #[test]
    fn the_table_shows_state_health_and_the_last_event() {
        let records = vec![
            ServiceRecord::new("127.0.0.1:50000", &info()),
            ServiceRecord::new(
                "127.0.0.1:50000",
                &ServiceInfo {
                    id: "machined-api".into(),
                    state: "Waiting".into(),
                    ..Default::default()
                },
            ),
        ];
        let text = table(&records, 1010 + 180, false).render();
        assert_eq!(
            text,
            "NODE              SERVICE        STATE     HEALTH    LAST CHANGE   LAST EVENT\n\
             127.0.0.1:50000   apid           Running   ok        3m ago        process started (pid 42)\n\
             127.0.0.1:50000   machined-api   Waiting   unknown\n"
        );
    }

    #[test]
    fn the_wide_table_adds_the_user_and_the_capabilities() {
        let records = vec![
            ServiceRecord::new("n1", &info()),
            ServiceRecord::new(
                "n1",
                &ServiceInfo {
                    id: "etcd".into(),
                    state: "Waiting".into(),
                    ..Default::default()
                },
            ),
        ];
        let text = table(&records, 1010 + 180, true).render();
        assert_eq!(
            text,
            "NODE   SERVICE   STATE     HEALTH    LAST CHANGE   UID   CAPABILITIES   LAST EVENT\n\
             n1     apid      Running   ok        3m ago        50    none           process started (pid 42)\n\
             n1     etcd      Waiting   unknown                 -     -\n"
        );
        let json = serde_json::to_value(&records[0]).unwrap();
        assert_eq!(
            (json["uid"].clone(), json["capabilities"].clone()),
            (50.into(), "none".into())
        );
    }

    #[test]
    fn json_records_carry_events_and_skip_empty_fields() {
        let r = ServiceRecord::new("n1", &info());
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["pid"], 42);
        assert_eq!(json["events"][1]["time"], "1970-01-01T00:16:50Z");
        assert!(json.get("health_message").is_none());
        assert!(json.get("depends_on").is_none());
        let none = ServiceRecord::new("n1", &ServiceInfo::default());
        assert!(serde_json::to_value(&none).unwrap().get("pid").is_none());
    }
}
