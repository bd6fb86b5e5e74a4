//! `cairnctl version`: the client's version, and each node's.

use std::process::ExitCode;

use serde::Serialize;

use crate::client::{self, Node};
use crate::global::GlobalArgs;

#[derive(clap::Args)]
pub struct Args {
    /// Print only the client version, without connecting.
    #[arg(long)]
    pub client: bool,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = Format::Text)]
    pub output: Format,
    /// Also show each server certificate's SHA-256 fingerprint (compare it
    /// with the one on the node's console in maintenance mode).
    #[arg(short = 'v', long)]
    pub verbose: bool,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
    Yaml,
}

#[derive(Serialize, Debug)]
pub struct Report {
    pub client: ClientVersion,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub servers: Option<Vec<ServerVersion>>,
}

#[derive(Serialize, Debug)]
pub struct ClientVersion {
    pub tag: String,
    pub build: String,
}

#[derive(Serialize, Debug, Default)]
pub struct ServerVersion {
    pub node: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub tag: String,
    pub build: String,
    pub kernel: String,
    pub arch: String,
    pub hostname: String,
    /// "A" or "B"; empty on a live boot.
    pub slot: String,
    /// "maintenance" or "configured".
    pub mode: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificate: Option<String>,
}

pub async fn run(args: Args, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let client = ClientVersion {
        tag: config::version::VERSION.into(),
        build: config::version::BUILD_ID.into(),
    };
    let mut report = Report {
        client,
        servers: None,
    };
    if !args.client {
        let nodes = global.nodes()?;
        let credentials = global.credentials()?;
        let queries = nodes.iter().map(|node| query(node, &credentials));
        report.servers = Some(futures::future::join_all(queries).await);
    }

    let failed: Vec<&ServerVersion> = report
        .servers
        .iter()
        .flatten()
        .filter(|s| s.error.is_some())
        .collect();
    match args.output {
        Format::Text => print!("{}", render_text(&report, args.verbose)),
        Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        Format::Yaml => print!("{}", serde_yaml::to_string(&report)?),
    }
    if args.output == Format::Text {
        for s in &failed {
            eprintln!("error: {}", s.error.as_deref().unwrap_or_default());
        }
    }
    Ok(if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn query(node: &Node, credentials: &client::Credentials) -> ServerVersion {
    let mut server = ServerVersion {
        node: node.to_string(),
        ..Default::default()
    };
    let mut conn = match client::connect(node, credentials).await {
        Ok(conn) => conn,
        Err(e) => {
            server.error = Some(e.to_string());
            return server;
        }
    };
    server.certificate = conn.server_fingerprint.clone();
    match conn.machine.version(()).await {
        Ok(resp) => {
            let v = resp.into_inner();
            server.tag = v.version;
            server.build = v.build_id;
            server.kernel = v.kernel;
            server.arch = v.arch;
            server.hostname = v.hostname;
            server.slot = v.booted_slot;
            server.mode = if v.maintenance {
                "maintenance"
            } else {
                "configured"
            }
            .into();
        }
        Err(status) => server.error = Some(client::explain(&status, node)),
    }
    server
}

/// The human form: two aligned sections, one block per server.
pub fn render_text(report: &Report, verbose: bool) -> String {
    let mut out = String::new();
    let mut line = |label: &str, value: &str| {
        out.push_str(&format!("  {:<11}{}\n", format!("{label}:"), value));
    };
    line("Tag", &report.client.tag);
    line("Build", &report.client.build);
    let mut text = format!("Client:\n{out}");
    for s in report
        .servers
        .iter()
        .flatten()
        .filter(|s| s.error.is_none())
    {
        let mut block = String::new();
        let mut line = |label: &str, value: &str| {
            block.push_str(&format!("  {:<11}{}\n", format!("{label}:"), value));
        };
        line("NODE", &s.node);
        line("Tag", &s.tag);
        line("Build", &s.build);
        line("Kernel", &s.kernel);
        line(
            "Slot",
            if s.slot.is_empty() {
                "none (live boot)"
            } else {
                &s.slot
            },
        );
        line("Mode", &s.mode);
        if verbose {
            if let Some(cert) = &s.certificate {
                line("Cert", cert);
            }
        }
        text.push_str("Server:\n");
        text.push_str(&block);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> Report {
        Report {
            client: ClientVersion {
                tag: "v0.1.0".into(),
                build: "dev".into(),
            },
            servers: Some(vec![
                ServerVersion {
                    node: "127.0.0.1:50000".into(),
                    tag: "v0.1.0".into(),
                    build: "abc123".into(),
                    kernel: "6.1.192".into(),
                    slot: "A".into(),
                    mode: "maintenance".into(),
                    certificate: Some("sha256:00ff".into()),
                    ..Default::default()
                },
                ServerVersion {
                    node: "10.0.0.9:50000".into(),
                    error: Some("connection refused".into()),
                    ..Default::default()
                },
            ]),
        }
    }

    #[test]
    fn text_output_is_aligned_and_skips_failed_nodes() {
        assert_eq!(
            render_text(&report(), false),
            "Client:\n  Tag:       v0.1.0\n  Build:     dev\n\
             Server:\n  NODE:      127.0.0.1:50000\n  Tag:       v0.1.0\n  Build:     abc123\n  \
             Kernel:    6.1.192\n  Slot:      A\n  Mode:      maintenance\n"
        );
    }

    #[test]
    fn verbose_text_shows_the_certificate() {
        assert!(render_text(&report(), true).contains("  Cert:      sha256:00ff\n"));
    }

    #[test]
    fn client_only_has_no_server_section() {
        let r = Report {
            servers: None,
            ..report()
        };
        assert_eq!(
            render_text(&r, false),
            "Client:\n  Tag:       v0.1.0\n  Build:     dev\n"
        );
        let json = serde_json::to_value(&r).unwrap();
        assert!(json.get("servers").is_none());
    }

    #[test]
    fn json_carries_errors_per_node() {
        let json = serde_json::to_value(report()).unwrap();
        assert_eq!(json["servers"][0]["mode"], "maintenance");
        assert!(json["servers"][0].get("error").is_none());
        assert_eq!(json["servers"][1]["error"], "connection refused");
    }
}
