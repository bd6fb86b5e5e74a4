//! `cairnctl events [-f] [--tail N]`: what happened on each node.

use std::io::Write;
use std::process::ExitCode;

use api::machine::{Event, EventsRequest};
use serde::Serialize;

use crate::global::GlobalArgs;
use crate::output::{self, Format, Table};
use crate::session::{self, Session};

#[derive(clap::Args, Debug)]
#[command(after_help = "\
Examples:
  cairnctl -n 10.5.0.2 events
  cairnctl -n 10.5.0.2 events -f --tail 5
  cairnctl -n 10.5.0.2 events -o json

Events are config changes, service state changes and boot phases, oldest
first; type bringup is the Kubernetes bring-up timeline (each phase with its
seconds since boot). With -f rows print as they come (JSON: one object per
line).")]
pub struct Args {
    /// Keep printing new events.
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Only the last N events (default: all the node keeps).
    #[arg(long, value_name = "N")]
    pub tail: Option<u32>,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = Format::Table)]
    pub output: Format,
}

#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct EventRecord {
    pub node: String,
    pub id: String,
    pub time: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub message: String,
}

impl EventRecord {
    pub fn new(node: &str, e: &Event) -> Self {
        EventRecord {
            // Events forwarded from another node name it themselves.
            node: if e.node.is_empty() {
                node.to_string()
            } else {
                e.node.clone()
            },
            id: e.id.clone(),
            time: output::timestamp(e.time.as_ref()),
            event_type: e.r#type.clone(),
            message: e.message.clone(),
        }
    }

    fn cells(&self) -> [String; 4] {
        [
            self.node.clone(),
            self.time.clone(),
            self.event_type.clone(),
            self.message.clone(),
        ]
    }
}

const HEADER: [&str; 4] = ["NODE", "TIME", "TYPE", "MESSAGE"];

pub fn table(records: &[EventRecord]) -> Table {
    let mut t = Table::new(HEADER);
    for r in records {
        t.row(r.cells());
    }
    t
}

/// A row printed as it arrives: fixed widths (a time is 20 characters).
pub fn follow_row(cells: &[String; 4], node_width: usize) -> String {
    format!(
        "{:<node_width$}   {:<20}   {:<8}   {}",
        cells[0], cells[1], cells[2], cells[3]
    )
    .trim_end()
    .to_string()
}

pub async fn run(args: Args, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let session = Session::open(global).await?;
    let request = EventsRequest {
        tail_events: args
            .tail
            .map(|n| i32::try_from(n).unwrap_or(i32::MAX))
            .unwrap_or(-1),
        follow: args.follow,
    };
    let node_width = session
        .clients
        .iter()
        .map(|c| c.as_ref().map(|c| c.node.to_string().len()).unwrap_or(4))
        .max()
        .unwrap_or(4);
    let (follow, format) = (args.follow, args.output);
    if follow && format == Format::Table {
        let header = HEADER.map(String::from);
        println!("{}", follow_row(&header, node_width));
    }
    let results = session
        .each(|c| async move {
            let mut stream = c
                .call(
                    "Events",
                    request,
                    |mut m, r| async move { m.events(r).await },
                )
                .await?;
            let node = c.node.to_string();
            let mut collected = Vec::new();
            loop {
                let event = match stream.message().await {
                    Ok(Some(e)) => e,
                    Ok(None) => return Ok(collected),
                    Err(s) => return Err(c.explain(&s, "Events")),
                };
                let record = EventRecord::new(&node, &event);
                if !follow {
                    collected.push(record);
                    continue;
                }
                let line = match format {
                    Format::Table => follow_row(&record.cells(), node_width),
                    Format::Json => serde_json::to_string(&record).map_err(|e| e.to_string())?,
                    Format::Yaml => format!(
                        "---\n{}",
                        serde_yaml::to_string(&record).map_err(|e| e.to_string())?
                    )
                    .trim_end()
                    .to_string(),
                };
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{line}");
                let _ = out.flush();
            }
        })
        .await;
    if !follow {
        let records: Vec<EventRecord> = session::successes(&results)
            .flat_map(|(_, r)| r.iter().cloned())
            .collect();
        output::print_records(format, || table(&records), &records)?;
    }
    Ok(session::report_errors(&results))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(node: &str) -> Event {
        Event {
            id: "17".into(),
            time: Some(prost_types::Timestamp {
                seconds: 1_700_000_000,
                nanos: 5,
            }),
            r#type: "config".into(),
            message: "machine config applied (no-reboot)".into(),
            node: node.into(),
        }
    }

    #[test]
    fn tables_and_following_rows_line_up() {
        let records = vec![EventRecord::new("127.0.0.1:50000", &event(""))];
        assert_eq!(
            table(&records).render(),
            "NODE              TIME                   TYPE     MESSAGE\n\
             127.0.0.1:50000   2023-11-14T22:13:20Z   config   machine config applied (no-reboot)\n"
        );
        let header = HEADER.map(String::from);
        assert_eq!(
            follow_row(&header, 15),
            "NODE              TIME                   TYPE       MESSAGE"
        );
        assert_eq!(
            follow_row(&records[0].cells(), 15),
            "127.0.0.1:50000   2023-11-14T22:13:20Z   config     machine config applied (no-reboot)"
        );
    }

    #[test]
    fn forwarded_events_keep_their_node() {
        assert_eq!(EventRecord::new("gw", &event("10.5.0.3")).node, "10.5.0.3");
        let json = serde_json::to_value(EventRecord::new("gw", &event(""))).unwrap();
        assert_eq!(json["type"], "config");
        assert_eq!(json["node"], "gw");
    }
}
