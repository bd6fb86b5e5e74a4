//! `cairnctl reset`: wipe nodes back to maintenance mode.

use std::process::ExitCode;

use api::machine::reset_request::WipeMode;
use api::machine::ResetRequest;

use super::reboot::went_down;
use crate::global::GlobalArgs;
use crate::session::{self, Session};

#[derive(clap::Args, Debug)]
#[command(after_help = "\
Examples:
  cairnctl -n 10.5.0.2 reset --reboot
  cairnctl -n 10.5.0.2 reset --graceful --reboot --wipe-mode user

Wipes the node's STATE partition (machine config, secrets) and META with
--wipe-mode system, EPHEMERAL (/var: containers, etcd data) with user, both
with all (the default). Then the node powers off, or reboots with --reboot
into maintenance mode (apply a config with --insecure again). --graceful
first leaves etcd; it is refused on a node running etcd until machined can
leave etcd itself. Needs an admin certificate.")]
pub struct Args {
    /// Leave etcd and drain the node first.
    #[arg(long)]
    pub graceful: bool,
    /// Reboot afterwards (into maintenance mode) instead of powering off.
    #[arg(long)]
    pub reboot: bool,
    /// What to wipe.
    #[arg(long, value_enum, default_value_t = Wipe::All)]
    pub wipe_mode: Wipe,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wipe {
    /// STATE, META and EPHEMERAL.
    All,
    /// STATE and META: the config, secrets, upgrade state.
    System,
    /// EPHEMERAL: /var.
    User,
}

pub fn request(args: &Args) -> ResetRequest {
    ResetRequest {
        graceful: args.graceful,
        reboot: args.reboot,
        mode: match args.wipe_mode {
            Wipe::All => WipeMode::All,
            Wipe::System => WipeMode::SystemDisk,
            Wipe::User => WipeMode::UserDisks,
        } as i32,
    }
}

pub async fn run(args: Args, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let session = Session::open(global).await?;
    let req = request(&args);
    let results = session
        .each(|c| async move {
            match c.machine().reset(c.request(req)).await {
                Ok(_) => Ok(()),
                Err(s) if went_down(&s) => Ok(()),
                Err(s) => Err(c.explain(&s, "Reset")),
            }
        })
        .await;
    let then = if args.reboot {
        "rebooting into maintenance mode"
    } else {
        "powering off"
    };
    for (node, ()) in session::successes(&results) {
        eprintln!("{node}: wiping, then {then}");
    }
    Ok(session::report_errors(&results))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wipe_modes_map_to_the_api() {
        let a = Args {
            graceful: true,
            reboot: true,
            wipe_mode: Wipe::User,
        };
        let r = request(&a);
        assert_eq!(r.mode, WipeMode::UserDisks as i32);
        assert!(r.graceful && r.reboot);
    }
}
