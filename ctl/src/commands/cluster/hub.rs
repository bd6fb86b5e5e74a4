//! `cairnctl cluster hub <dir>` (hidden): relays Ethernet frames among the
//! VMs of one local cluster until its network directory is removed. `create`
//! starts it detached; `destroy` stops it.

use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
#[command(after_help = "\
Examples:
  cairnctl cluster hub ~/.cache/cairn/clusters/demo/net

Started by `cairnctl cluster create`; not meant to be run by hand.")]
pub struct Args {
    /// The cluster's network directory (holds hub.sock and the VMs' sockets).
    pub dir: PathBuf,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let hub = provision::hub::Hub::bind(&args.dir)?;
    eprintln!("relaying frames on {}", hub.path().display());
    hub.serve()?;
    eprintln!("{} removed: stopping", args.dir.display());
    Ok(ExitCode::SUCCESS)
}
