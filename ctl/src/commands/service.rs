//! `cairnctl service <id> [start|stop|restart|kill|status]`: one service.

use std::process::ExitCode;

use anyhow::bail;
use api::machine::{ServiceKillRequest, ServiceRequest};

use super::services::{now, ServiceRecord};
use crate::global::GlobalArgs;
use crate::output::{self, Format, Table};
use crate::session::{self, Session};

#[derive(clap::Args, Debug)]
#[command(after_help = "\
Examples:
  cairnctl -n 10.5.0.2 service apid
  cairnctl -n 10.5.0.2 service kubelet restart
  cairnctl -n 10.5.0.2 service etcd status -o yaml
  cairnctl -n 10.5.0.2 service etcd kill
  cairnctl -n 10.5.0.2 service kubelet kill --signal term

`status` (the default) shows the state, health, process, dependencies and
every event of the service. `kill` signals the service's process (SIGKILL by
default) and lets machined restart it as after a crash, with its backoff; a
way to check that a node recovers. start, stop, restart and kill need an
operator or admin certificate.")]
pub struct Args {
    /// The service, as `cairnctl services` lists it.
    pub id: String,
    /// What to do.
    #[arg(value_enum, default_value_t = Action::Status)]
    pub action: Action,
    /// The signal `kill` sends [default: kill].
    #[arg(long, value_enum)]
    pub signal: Option<Signal>,
    /// Output format for `status`.
    #[arg(short = 'o', long, value_enum, default_value_t = Format::Table)]
    pub output: Format,
}

/// The signals `kill` may send: those that stop or poke a daemon.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    Kill,
    Term,
    Int,
    Quit,
    Hup,
    Usr1,
    Usr2,
}

impl Signal {
    /// The name machined takes (`KILL`).
    fn name(self) -> String {
        format!("{self:?}").to_uppercase()
    }
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Status,
    Start,
    Stop,
    Restart,
    Kill,
}

pub async fn run(args: Args, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    if args.signal.is_some() && args.action != Action::Kill {
        bail!(
            "--signal goes with `kill`, not `{}`",
            format!("{:?}", args.action).to_lowercase()
        );
    }
    let session = Session::open(global).await?;
    if args.action == Action::Status {
        return status(&session, &args).await;
    }
    let (action, id) = (args.action, args.id.clone());
    let signal = args.signal.unwrap_or(Signal::Kill).name();
    let results = session
        .each(|c| {
            let request = ServiceRequest { id: id.clone() };
            let signal = signal.clone();
            async move {
                match action {
                    Action::Kill => {
                        let request = ServiceKillRequest {
                            id: request.id,
                            signal,
                        };
                        c.call("ServiceKill", request, |mut m, r| async move {
                            m.service_kill(r).await
                        })
                        .await
                    }
                    Action::Start => {
                        c.call("ServiceStart", request, |mut m, r| async move {
                            m.service_start(r).await
                        })
                        .await
                    }
                    Action::Stop => {
                        c.call("ServiceStop", request, |mut m, r| async move {
                            m.service_stop(r).await
                        })
                        .await
                    }
                    Action::Restart | Action::Status => {
                        c.call("ServiceRestart", request, |mut m, r| async move {
                            m.service_restart(r).await
                        })
                        .await
                    }
                }
            }
        })
        .await;
    let several = results.len() > 1;
    for (node, response) in session::successes(&results) {
        let message = if response.message.is_empty() {
            format!("{:?} of {} requested", args.action, args.id).to_lowercase()
        } else {
            response.message.clone()
        };
        if several {
            println!("{node}: {message}");
        } else {
            println!("{message}");
        }
    }
    Ok(session::report_errors(&results))
}

async fn status(session: &Session, args: &Args) -> anyhow::Result<ExitCode> {
    let id = args.id.clone();
    let results = session
        .each(|c| {
            let id = id.clone();
            async move {
                let list = c
                    .call("ServiceList", (), |mut m, r| async move {
                        m.service_list(r).await
                    })
                    .await?;
                match list.services.iter().find(|s| s.id == id) {
                    Some(s) => Ok(ServiceRecord::new(&c.node.to_string(), s)),
                    None => {
                        let known: Vec<&str> =
                            list.services.iter().map(|s| s.id.as_str()).collect();
                        Err(format!(
                            "no service {id:?} on this node (it has: {})",
                            known.join(", ")
                        ))
                    }
                }
            }
        })
        .await;
    let records: Vec<ServiceRecord> = session::successes(&results)
        .map(|(_, r)| r.clone())
        .collect();
    match args.output {
        Format::Table => {
            let text: Vec<String> = records.iter().map(|r| details(r, now())).collect();
            print!("{}", text.join("\n"));
        }
        format => output::print_records(format, Table::default, &records)?,
    }
    Ok(session::report_errors(&results))
}

/// A service's details: label and value columns, then its events.
pub fn details(r: &ServiceRecord, now: i64) -> String {
    let mut t = Table::new(["NODE", r.node.as_str()]);
    t.row(["ID", r.id.as_str()]);
    t.row(["STATE", r.state.as_str()]);
    let health = if r.health_message.is_empty() {
        r.health.clone()
    } else {
        format!("{} ({})", r.health, r.health_message)
    };
    t.row(["HEALTH".to_string(), health]);
    if let Some(pid) = r.pid {
        t.row(["PID".to_string(), pid.to_string()]);
    }
    t.row(["RESTARTS".to_string(), r.restarts.to_string()]);
    if !r.depends_on.is_empty() {
        t.row(["DEPENDS ON".to_string(), r.depends_on.join(", ")]);
    }
    for (i, e) in r.events.iter().enumerate() {
        let label = if i == 0 { "EVENTS" } else { "" };
        let when = time_ago(&e.time, now);
        t.row([
            label.to_string(),
            format!("[{}]: {} ({when})", e.state, e.message),
        ]);
    }
    t.render()
}

/// `2023-11-14T22:13:20Z` as `3m ago`; the text itself when unparsable.
fn time_ago(rfc3339: &str, now: i64) -> String {
    match time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339) {
        Ok(t) => format!("{} ago", output::age(t.unix_timestamp(), now)),
        Err(_) => rfc3339.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use api::machine::{ServiceEvent, ServiceInfo};
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    #[test]
    fn status_is_the_default_action() {
        let a = Cli::parse_from(["service", "apid"]).args;
        assert_eq!((a.id.as_str(), a.action), ("apid", Action::Status));
        let a = Cli::parse_from(["service", "kubelet", "restart"]).args;
        assert_eq!(a.action, Action::Restart);
        assert!(Cli::try_parse_from(["service", "kubelet", "reload"]).is_err());
        let a = Cli::parse_from(["service", "etcd", "kill", "--signal", "term"]).args;
        assert_eq!(
            (a.action, a.signal.map(Signal::name)),
            (Action::Kill, Some("TERM".into()))
        );
        assert!(Cli::try_parse_from(["service", "etcd", "kill", "--signal", "stop"]).is_err());
    }

    #[test]
    fn details_list_every_event() {
        let info = ServiceInfo {
            id: "apid".into(),
            state: "Running".into(),
            health: "ok".into(),
            pid: 7,
            restarts: 1,
            depends_on: vec!["machined-api".into()],
            events: vec![
                ServiceEvent {
                    state: "Preparing".into(),
                    message: "starting".into(),
                    time: Some(prost_types::Timestamp {
                        seconds: 0,
                        nanos: 0,
                    }),
                },
                ServiceEvent {
                    state: "Running".into(),
                    message: "started".into(),
                    time: Some(prost_types::Timestamp {
                        seconds: 60,
                        nanos: 0,
                    }),
                },
            ],
            ..Default::default()
        };
        let text = details(&ServiceRecord::new("n1:50000", &info), 120);
        assert_eq!(
            text,
            "NODE         n1:50000\n\
             ID           apid\n\
             STATE        Running\n\
             HEALTH       ok\n\
             PID          7\n\
             RESTARTS     1\n\
             DEPENDS ON   machined-api\n\
             EVENTS       [Preparing]: starting (2m ago)\n\
             \x20            [Running]: started (60s ago)\n"
        );
    }
}
