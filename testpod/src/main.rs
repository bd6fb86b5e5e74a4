//! cairn-testpod: the one program of the `cairn.local/cairn-testpod` image,
//! used by the end-to-end tests from inside Pods. Static, no shell needed.
//!
//!   testpod serve [--port 8080]          HTTP 200 with the Pod name on every path
//!   testpod resolve NAME                 the addresses of NAME, one a line
//!                                        (the Pod's /etc/resolv.conf: search, ndots)
//!   testpod count PREFIX [--every 1s]    "PREFIX N" on stdout every interval, N = 1, 2, ...
//!                                        (log shipping tests find every N once)
//!   testpod burn                         keep one CPU busy (resource metrics tests)
//!   testpod get URL [--ca F] [--token-file F] [--body]
//!                                        the HTTP status of a GET (exit 0 if < 400)
//!
//! DNS goes through hickory's resolver, not glibc's getaddrinfo: a static
//! glibc program would need NSS modules the image does not have.

mod get;
mod resolve;
mod serve;

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "testpod", version, about = "Cairn's test Pod program")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve HTTP; every request gets 200 and the Pod name (env POD_NAME, else the hostname).
    Serve {
        #[arg(long, default_value_t = 8080)]
        port: u16,
    },
    /// Resolve NAME with /etc/resolv.conf (search list, ndots) and print the addresses.
    Resolve {
        name: String,
        #[arg(long, default_value = "/etc/resolv.conf")]
        resolv_conf: PathBuf,
    },
    /// Print "PREFIX N" (N = 1, 2, ...) on stdout every interval, until SIGTERM.
    Count {
        prefix: String,
        #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
        every: std::time::Duration,
    },
    /// Keep one CPU busy until SIGTERM (the Pod's CPU limit bounds it).
    Burn,
    /// GET URL and print the HTTP status code (then the body with --body).
    Get {
        url: url::Url,
        /// PEM file of the CA that signs the server's certificate (https).
        #[arg(long)]
        ca: Option<PathBuf>,
        /// File holding a bearer token (e.g. a ServiceAccount token).
        #[arg(long)]
        token_file: Option<PathBuf>,
        /// Print the response body after the status line.
        #[arg(long)]
        body: bool,
        #[arg(long, default_value = "/etc/resolv.conf")]
        resolv_conf: PathBuf,
    },
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    match run(Cli::parse()).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("testpod: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve { port } => {
            let listener = tokio::net::TcpListener::bind(("::", port))
                .await
                .or(tokio::net::TcpListener::bind(("0.0.0.0", port)).await)
                .with_context(|| format!("listening on port {port} (--port)"))?;
            let name = serve::pod_name();
            println!("serving on port {port} as {name}");
            tokio::select! {
                r = serve::serve(listener, name) => r?,
                // PID 1 of a container gets no default SIGTERM action:
                // exit on it so Pods stop at once, not after the grace period.
                _ = serve::terminated() => println!("terminated"),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Count { prefix, every } => {
            tokio::select! {
                () = count(&prefix, every) => {}
                _ = serve::terminated() => println!("terminated"),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Burn => {
            println!("burning one CPU");
            // A plain thread: the spinning must not starve the runtime that
            // waits for SIGTERM.
            std::thread::spawn(|| loop {
                std::hint::spin_loop();
            });
            serve::terminated().await;
            println!("terminated");
            Ok(ExitCode::SUCCESS)
        }
        Command::Resolve { name, resolv_conf } => {
            let resolver = resolve::from_resolv_conf(&resolv_conf)?;
            let addrs = resolve::resolve(&resolver, &name).await?;
            for a in addrs {
                println!("{a}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Get {
            url,
            ca,
            token_file,
            body,
            resolv_conf,
        } => {
            let ca = ca
                .map(|p| std::fs::read(&p).with_context(|| format!("reading --ca {}", p.display())))
                .transpose()?;
            let token = token_file
                .map(|p| {
                    std::fs::read_to_string(&p)
                        .map(|t| t.trim().to_string())
                        .with_context(|| format!("reading --token-file {}", p.display()))
                })
                .transpose()?;
            let resolver = resolve::from_resolv_conf(&resolv_conf).ok();
            let request = get::Request {
                url: &url,
                ca: ca.as_deref(),
                token: token.as_deref(),
            };
            let response = get::get(&request, resolver.as_ref()).await?;
            println!("{}", response.status);
            if body {
                println!("{}", String::from_utf8_lossy(&response.body));
            }
            Ok(if response.status < 400 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            })
        }
    }
}

/// Prints `prefix N` for N = 1, 2, ... every `every`, each line written and
/// flushed whole (the container runtime's log sees complete lines).
async fn count(prefix: &str, every: std::time::Duration) {
    use std::io::Write as _;
    let mut tick = tokio::time::interval(every);
    for n in 1u64.. {
        tick.tick().await;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{prefix} {n}");
        let _ = out.flush();
    }
}
