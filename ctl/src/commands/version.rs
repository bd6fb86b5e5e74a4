//! `cairnctl version`: the client's version, and each node's.

use std::io::Write;
use std::process::ExitCode;

use serde::Serialize;

use crate::global::GlobalArgs;
use crate::session::Session;

#[derive(clap::Args)]
#[command(after_help = "\
Examples:
  cairnctl version --client
  cairnctl -n 10.5.0.2 --insecure version -v
  cairnctl --cairnconfig out/cairnconfig -n 10.5.0.2,10.5.0.3 version -o json

With -v the SHA-256 of each node's certificate is shown: in maintenance mode,
compare it with the one on the node's console before trusting the node.")]
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
    pub servers: Option<Vec<ServerEntry>>,
}

#[derive(Serialize, Debug)]
pub struct ClientVersion {
    pub tag: String,
    pub build: String,
}

/// One node: its version, or why it could not be read.
#[derive(Serialize, Debug)]
pub struct ServerEntry {
    pub node: String,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub version: Option<ServerVersion>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Serialize, Debug, Default)]
pub struct ServerVersion {
    pub tag: String,
    pub build: String,
    pub kernel: String,
    pub arch: String,
    pub hostname: String,
    /// "A" or "B"; empty on a live boot.
    pub slot: String,
    /// "maintenance" or "configured".
    pub mode: String,
    /// `sha256:<hex>` of the certificate the node presented.
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
        let session = Session::open(global).await?;
        let results = session
            .each(|c| async move {
                let v = c
                    .call("Version", (), |mut m, r| async move { m.version(r).await })
                    .await?;
                Ok(server_version(v, c.fingerprint.clone()))
            })
            .await;
        let entries = results.into_iter().map(|r| match r.result {
            Ok(v) => ServerEntry {
                node: r.node,
                version: Some(v),
                error: None,
            },
            Err(e) => ServerEntry {
                node: r.node,
                version: None,
                error: Some(e),
            },
        });
        report.servers = Some(entries.collect());
    }

    let errors: Vec<&str> = report
        .servers
        .iter()
        .flatten()
        .filter_map(|s| s.error.as_deref())
        .collect();
    match args.output {
        Format::Text => print!("{}", render_text(&report, args.verbose)),
        Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        Format::Yaml => print!("{}", serde_yaml::to_string(&report)?),
    }
    std::io::stdout().flush()?;
    if args.output == Format::Text {
        for e in &errors {
            eprintln!("error: {e}");
        }
    }
    Ok(if errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// A node's answer, in the report's form.
fn server_version(v: api::machine::VersionResponse, certificate: Option<String>) -> ServerVersion {
    ServerVersion {
        tag: v.version,
        build: v.build_id,
        kernel: v.kernel,
        arch: v.arch,
        hostname: v.hostname,
        slot: v.booted_slot,
        mode: if v.maintenance {
            "maintenance"
        } else {
            "configured"
        }
        .into(),
        certificate,
    }
}

/// The human form: aligned sections, one per server that answered (the
/// others are reported on stderr).
pub fn render_text(report: &Report, verbose: bool) -> String {
    fn line(out: &mut String, label: &str, value: &str) {
        out.push_str(&format!("  {:<11}{value}\n", format!("{label}:")));
    }
    let mut out = String::from("Client:\n");
    line(&mut out, "Tag", &report.client.tag);
    line(&mut out, "Build", &report.client.build);
    for s in report.servers.iter().flatten() {
        let Some(v) = &s.version else { continue };
        out.push_str("Server:\n");
        line(&mut out, "NODE", &s.node);
        line(&mut out, "Tag", &v.tag);
        line(&mut out, "Build", &v.build);
        line(&mut out, "Kernel", &v.kernel);
        let slot = if v.slot.is_empty() {
            "none (live boot)"
        } else {
            &v.slot
        };
        line(&mut out, "Slot", slot);
        line(&mut out, "Mode", &v.mode);
        if let (true, Some(cert)) = (verbose, &v.certificate) {
            line(&mut out, "Cert", cert);
        }
    }
    out
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
                ServerEntry {
                    node: "127.0.0.1:50000".into(),
                    version: Some(ServerVersion {
                        tag: "v0.1.0".into(),
                        build: "abc123".into(),
                        kernel: "6.1.192".into(),
                        slot: "A".into(),
                        mode: "maintenance".into(),
                        certificate: Some("sha256:00ff".into()),
                        ..Default::default()
                    }),
                    error: None,
                },
                ServerEntry {
                    node: "10.0.0.9:50000".into(),
                    version: None,
                    error: Some("connection refused".into()),
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
    fn live_boots_have_no_slot() {
        let mut r = report();
        r.servers.as_mut().unwrap()[0]
            .version
            .as_mut()
            .unwrap()
            .slot
            .clear();
        assert!(render_text(&r, false).contains("  Slot:      none (live boot)\n"));
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
    fn json_has_flat_versions_and_errors_per_node() {
        let json = serde_json::to_value(report()).unwrap();
        assert_eq!(json["servers"][0]["mode"], "maintenance");
        assert_eq!(json["servers"][0]["slot"], "A");
        assert!(json["servers"][0].get("error").is_none());
        assert_eq!(json["servers"][1]["error"], "connection refused");
        assert!(json["servers"][1].get("tag").is_none());
    }
}
