//! `cairnctl reboot [--wait]`: reboot nodes, optionally waiting until they
//! answer again.

use std::process::ExitCode;
use std::time::Duration;

use api::machine::reboot_request::Mode;
use api::machine::RebootRequest;
use tonic::Code;

use super::apply_config::parse_duration;
use crate::global::GlobalArgs;
use crate::session::{self, Session};
use crate::wait;

#[derive(clap::Args, Debug)]
#[command(after_help = "\
Examples:
  cairnctl -n 10.5.0.2 reboot
  cairnctl -n 10.5.0.2,10.5.0.3 reboot --wait
  cairnctl -n 10.5.0.2 reboot --mode powercycle --wait --timeout 15m

Needs an operator or admin certificate. With --wait a spinner shows each node
going down and coming back; the command ends when every node answers again.")]
pub struct Args {
    /// How to reboot.
    #[arg(short = 'm', long, value_enum, default_value_t = RebootMode::Default)]
    pub mode: RebootMode,
    /// Wait until the nodes are back.
    #[arg(long)]
    pub wait: bool,
    /// With --wait: how long a node may take to come back.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "10m")]
    pub timeout: Duration,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum RebootMode {
    /// Stop services, unmount, then reboot.
    Default,
    /// Like default, then power-cycle rather than a warm reboot.
    Powercycle,
}

pub async fn run(args: Args, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let session = Session::open(global).await?;
    let request = RebootRequest {
        mode: match args.mode {
            RebootMode::Default => Mode::Default,
            RebootMode::Powercycle => Mode::Powercycle,
        } as i32,
    };
    let results = session
        .each(|c| async move {
            match c.machine().reboot(c.request(request)).await {
                Ok(_) => Ok(()),
                // The node may close the connection before the answer
                // arrives: it is going down, which is what was asked.
                Err(s) if went_down(&s) => Ok(()),
                Err(s) => Err(c.explain(&s, "Reboot")),
            }
        })
        .await;
    let mut code = session::report_errors(&results);
    let accepted = session.accepted(&results);
    if !args.wait {
        for c in &accepted {
            eprintln!("{}: rebooting", c.node);
        }
        return Ok(code);
    }
    let waited = wait::until_rebooted(&accepted, args.timeout).await;
    if session::report_errors(&waited) != ExitCode::SUCCESS {
        code = ExitCode::FAILURE;
    }
    Ok(code)
}

/// Whether a failed power call means the node dropped the connection on its
/// way down (the transport failed) rather than refusing.
pub fn went_down(status: &tonic::Status) -> bool {
    use std::error::Error as _;
    match status.code() {
        Code::Unavailable => true,
        Code::Unknown | Code::Cancelled => status.source().is_some(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_transport_failures_count_as_going_down() {
        assert!(went_down(&tonic::Status::unavailable("connection reset")));
        assert!(!went_down(&tonic::Status::unknown("machined said no")));
        assert!(!went_down(&tonic::Status::permission_denied("no")));
        let io = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert!(went_down(&tonic::Status::from_error(Box::new(io))));
    }
}
