//! apid's entry point: arguments, privileges, certificate, serve.

use std::io::Read;
use std::net::SocketAddr;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Parser;

/// Cairn's API endpoint. machined starts and supervises it.
#[derive(Parser, Debug)]
#[command(version = config::version::VERSION)]
struct Args {
    /// Serve maintenance mode: TLS without client certificates, only
    /// what an unconfigured node answers.
    #[arg(long)]
    maintenance: bool,
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0:50000")]
    listen: SocketAddr,
    /// machined's unix socket.
    #[arg(long, default_value = config::constants::MACHINED_SOCKET)]
    machined_socket: PathBuf,
    /// Read the PEM certificate from this inherited descriptor.
    #[arg(long, conflicts_with = "cert_file")]
    cert_fd: Option<RawFd>,
    /// Read the PEM private key from this inherited descriptor.
    #[arg(long, conflicts_with = "key_file")]
    key_fd: Option<RawFd>,
    /// Read the PEM certificate from this file.
    #[arg(long)]
    cert_file: Option<PathBuf>,
    /// Read the PEM private key from this file.
    #[arg(long)]
    key_file: Option<PathBuf>,
}

/// Reads a PEM from an inherited descriptor or a file.
fn read_pem(fd: Option<RawFd>, file: Option<&PathBuf>, what: &str) -> anyhow::Result<Vec<u8>> {
    let mut buf = Vec::new();
    match (fd, file) {
        (Some(fd), _) => {
            if fd < 3 {
                bail!("--{what}-fd {fd}: descriptors 0-2 are stdio");
            }
            // SAFETY: machined passes this descriptor to us open, for us
            // alone; we take ownership once, and it is closed after reading.
            let owned = unsafe { OwnedFd::from_raw_fd(fd) };
            std::fs::File::from(owned)
                .read_to_end(&mut buf)
                .with_context(|| format!("reading the {what} from descriptor {fd}"))?;
        }
        (None, Some(path)) => {
            buf = std::fs::read(path)
                .with_context(|| format!("reading the {what} from {}", path.display()))?;
        }
        (None, None) => bail!("no {what}: pass --{what}-fd or --{what}-file"),
    }
    Ok(buf)
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_ansi(false)
        .without_time()
        .with_target(false)
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    if !args.maintenance {
        bail!(
            "only --maintenance is implemented: serving with mutual TLS comes with the PKI release"
        );
    }
    let cert = read_pem(args.cert_fd, args.cert_file.as_ref(), "cert")?;
    let key = read_pem(args.key_fd, args.key_file.as_ref(), "key")?;
    apid::privileges::drop_all().context("dropping privileges")?;
    tracing::info!("running as {}", apid::privileges::describe());

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let listener = apid::listen(args.listen)
            .await
            .with_context(|| format!("listening on {}", args.listen))?;
        tracing::info!(listen = %args.listen, "maintenance mode: serving TLS without client certificates");
        apid::serve_maintenance(listener, &cert, &key, args.machined_socket).await
    })
}
