//! apid's entry point: arguments, privileges, settings, serve.

use std::net::SocketAddr;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{CommandFactory, FromArgMatches, Parser};

/// Cairn's API endpoint. machined starts and supervises it.
#[derive(Parser, Debug)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0:50000")]
    listen: SocketAddr,
    /// machined's unix socket.
    #[arg(long, default_value = config::constants::MACHINED_SOCKET)]
    machined_socket: PathBuf,
    /// The settings directory (holding apid.yaml), as an inherited open
    /// descriptor: how machined starts apid.
    #[arg(long, conflicts_with = "settings_dir")]
    settings_fd: Option<RawFd>,
    /// The settings directory by path (apid started by hand, tests).
    #[arg(long)]
    settings_dir: Option<PathBuf>,
    /// Another member of this cluster that calls may be forwarded to
    /// (host or host:port, port 50000 by default); repeatable. The node's
    /// own names and addresses (its certificate's) are always members;
    /// apid forwards to nothing else.
    #[arg(long = "member", value_name = "HOST[:PORT]", value_parser = parse_member)]
    members: Vec<apid::peers::NodeAddr>,
    /// Where joining machines ask for certificates (served only while the
    /// settings say this node signs them); `none` turns it off.
    #[arg(long, default_value = "0.0.0.0:50001")]
    join_listen: String,
}

fn parse_member(s: &str) -> Result<apid::peers::NodeAddr, String> {
    apid::peers::NodeAddr::parse(s).map_err(|e| e.to_string())
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_ansi(false)
        .without_time()
        .with_target(false)
        .with_writer(std::io::stderr)
        .init();
    // The version is the image's (its os-release), known only at run time.
    let version = config::version::running().version.as_str();
    let args = Args::from_arg_matches(&Args::command().version(version).get_matches())
        .unwrap_or_else(|e| e.exit());
    let source = match (args.settings_fd, &args.settings_dir) {
        (Some(fd), _) => {
            if fd < 3 {
                bail!("--settings-fd {fd}: descriptors 0-2 are stdio");
            }
            // SAFETY: machined passes this descriptor open, for apid alone;
            // it is taken over exactly once, here.
            apid::settings::Source::from_fd(unsafe { OwnedFd::from_raw_fd(fd) })
        }
        (None, Some(dir)) => apid::settings::Source::open(dir)?,
        (None, None) => bail!("no settings: pass --settings-fd or --settings-dir"),
    };
    apid::privileges::drop_all().context("dropping privileges")?;
    tracing::info!("running as {}", apid::privileges::describe());

    // One thread: apid mostly waits on the network and machined, and a
    // current-thread runtime keeps its memory small.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("listening on {}", args.listen))?;
        tracing::info!(listen = %args.listen, "listening");
        let join = match args.join_listen.as_str() {
            "none" => None,
            addr => match tokio::net::TcpListener::bind(addr).await {
                Ok(l) => Some(l),
                Err(e) => {
                    tracing::error!(listen = addr, error = %e, "cannot listen for joining machines");
                    None
                }
            },
        };
        apid::serve(
            listener,
            source,
            args.machined_socket,
            apid::RELOAD_INTERVAL,
            args.members,
            join,
        )
        .await?;
        Ok(())
    })
}
