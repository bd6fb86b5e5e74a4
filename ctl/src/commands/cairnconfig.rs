//! `cairnctl config endpoint|node|context|contexts|merge|new`: edit the
//! client config (cairnconfig), or mint a new one for someone else
//! (config_new.rs). Every change is written atomically (temporary file,
//! fsync, rename) with mode 0600, since the file holds a private key.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use config::client::{ClientConfig, ClientConfigError};

use crate::client::Node;
use crate::global::GlobalArgs;
use crate::output::Table;

#[derive(clap::Subcommand, Debug)]
#[command(after_help = "\
Examples:
  cairnctl config endpoint 10.5.0.2 10.5.0.3
  cairnctl config node 10.5.0.2
  cairnctl config contexts
  cairnctl config context prod
  cairnctl config merge out/cairnconfig
  cairnctl config new alice.cairnconfig --roles os:reader --crt-ttl 24h

Edits --cairnconfig ($CAIRNCONFIG, default ~/.cairn/config); endpoint and node
change the --context given, else the current one.")]
pub enum ConfigCommand {
    /// Set the endpoints (apid addresses) of the context.
    #[command(after_help = "\
Examples:
  cairnctl config endpoint 10.5.0.2
  cairnctl --cairnconfig out/cairnconfig config endpoint 127.0.0.1:50001

cairnctl connects to the first endpoint that answers and asks it to forward
requests for other nodes.")]
    Endpoint(EndpointArgs),
    /// Set the default nodes of the context (none: act on the endpoints).
    #[command(after_help = "\
Examples:
  cairnctl config node 10.5.0.2 10.5.0.3
  cairnctl config node        # clear: act on the endpoints themselves")]
    Node(NodeArgs),
    /// Make a context the current one.
    #[command(after_help = "\
Examples:
  cairnctl config context prod")]
    Context(ContextArgs),
    /// List the contexts; * marks the current one.
    #[command(after_help = "\
Examples:
  cairnctl config contexts")]
    Contexts,
    /// Add the contexts of another client config to this one.
    #[command(after_help = "\
Examples:
  cairnctl config merge out/cairnconfig

A context whose name is already taken is added as <name>-1 (or -2, ...). The
merged file's current context becomes the current one. The target file is
created when it does not exist.")]
    Merge(MergeArgs),
    /// Write a new client config with a short-lived certificate of the
    /// roles given, minted by the node (needs an admin cairnconfig).
    #[command(after_help = "\
Examples:
  cairnctl config new alice.cairnconfig --roles os:reader
  cairnctl config new ops.cairnconfig --roles os:operator --crt-ttl 8h --name ops-oncall

The node signs the certificate with the OS CA; no CA key leaves it. The new
file has this context's endpoints and nodes, is written with mode 0600, and an
existing file is not overwritten unless --force is given. Hand it over instead
of your admin cairnconfig: it expires by itself (24h unless --crt-ttl says).")]
    New(super::config_new::NewArgs),
}

#[derive(clap::Args, Debug)]
pub struct EndpointArgs {
    /// Endpoints, `host` or `host:port`.
    #[arg(required = true, value_delimiter = ',')]
    pub endpoints: Vec<String>,
}

#[derive(clap::Args, Debug)]
pub struct NodeArgs {
    /// Nodes, `host` or `host:port`; none clears the list.
    #[arg(value_delimiter = ',')]
    pub nodes: Vec<String>,
}

#[derive(clap::Args, Debug)]
pub struct ContextArgs {
    /// The context to use from now on.
    pub name: String,
}

#[derive(clap::Args, Debug)]
pub struct MergeArgs {
    /// The client config to take contexts from.
    pub file: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum EditError {
    #[error(transparent)]
    Config(#[from] ClientConfigError),
    #[error("{0}")]
    Node(#[from] crate::client::ClientError),
}

/// Checks each address and returns them as given (trimmed).
fn addresses(list: &[String]) -> Result<Vec<String>, EditError> {
    list.iter()
        .map(|a| {
            Node::parse(a)
                .map(|_| a.trim().to_string())
                .map_err(EditError::from)
        })
        .collect()
}

/// The name of the context to edit: `name`, or the current one.
fn context_name(config: &ClientConfig, name: Option<&str>) -> Result<String, EditError> {
    Ok(config.context(name)?.0.to_string())
}

/// Sets the endpoints of `context` (or the current one); returns its name.
pub fn set_endpoints(
    config: &mut ClientConfig,
    context: Option<&str>,
    endpoints: &[String],
) -> Result<String, EditError> {
    let endpoints = addresses(endpoints)?;
    let name = context_name(config, context)?;
    if let Some(c) = config.contexts.get_mut(&name) {
        c.endpoints = endpoints;
    }
    Ok(name)
}

/// Sets the default nodes of `context` (or the current one).
pub fn set_nodes(
    config: &mut ClientConfig,
    context: Option<&str>,
    nodes: &[String],
) -> Result<String, EditError> {
    let nodes = addresses(nodes)?;
    let name = context_name(config, context)?;
    if let Some(c) = config.contexts.get_mut(&name) {
        c.nodes = nodes;
    }
    Ok(name)
}

/// Makes `name` the current context.
pub fn use_context(config: &mut ClientConfig, name: &str) -> Result<(), EditError> {
    config.context(Some(name))?;
    config.context = Some(name.to_string());
    Ok(())
}

/// Adds every context of `other` to `config`, renaming on clashes;
/// returns (name in `other`, name it got). `other`'s current context
/// becomes current.
pub fn merge(config: &mut ClientConfig, other: ClientConfig) -> Vec<(String, String)> {
    let mut renamed = Vec::new();
    for (name, context) in other.contexts {
        let mut new_name = name.clone();
        let mut n = 1;
        while config.contexts.contains_key(&new_name) {
            new_name = format!("{name}-{n}");
            n += 1;
        }
        config.contexts.insert(new_name.clone(), context);
        if other.context.as_deref() == Some(name.as_str()) {
            config.context = Some(new_name.clone());
        }
        renamed.push((name, new_name));
    }
    renamed
}

/// The contexts table: CURRENT NAME ENDPOINTS NODES.
pub fn contexts_table(config: &ClientConfig) -> Table {
    let mut t = Table::new(["CURRENT", "NAME", "ENDPOINTS", "NODES"]);
    for (name, c) in &config.contexts {
        let current = if config.context.as_deref() == Some(name.as_str()) {
            "*"
        } else {
            ""
        };
        t.row([
            current.to_string(),
            name.clone(),
            c.endpoints.join(","),
            c.nodes.join(","),
        ]);
    }
    t
}

fn load(path: &Path) -> anyhow::Result<ClientConfig> {
    ClientConfig::load(path).map_err(anyhow::Error::from)
}

fn save(config: &ClientConfig, path: &Path) -> anyhow::Result<()> {
    config
        .save(path, true)
        .with_context(|| format!("writing {}", path.display()))
}

pub async fn run(command: ConfigCommand, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let path = global.client_config_path()?;
    let shown = path.display();
    match command {
        ConfigCommand::Endpoint(a) => {
            let mut config = load(&path)?;
            let name = set_endpoints(&mut config, global.context.as_deref(), &a.endpoints)?;
            save(&config, &path)?;
            eprintln!(
                "{shown}: context {name}: endpoints {}",
                a.endpoints.join(", ")
            );
        }
        ConfigCommand::Node(a) => {
            let mut config = load(&path)?;
            let name = set_nodes(&mut config, global.context.as_deref(), &a.nodes)?;
            save(&config, &path)?;
            if a.nodes.is_empty() {
                eprintln!("{shown}: context {name}: no default nodes (the endpoints are used)");
            } else {
                eprintln!("{shown}: context {name}: nodes {}", a.nodes.join(", "));
            }
        }
        ConfigCommand::Context(a) => {
            let mut config = load(&path)?;
            use_context(&mut config, &a.name)?;
            save(&config, &path)?;
            eprintln!("{shown}: current context is {}", a.name);
        }
        ConfigCommand::Contexts => {
            print!("{}", contexts_table(&load(&path)?).render());
        }
        ConfigCommand::Merge(a) => {
            let other = load(&a.file)?;
            let mut config = if path.exists() {
                load(&path)?
            } else {
                ClientConfig::default()
            };
            for (from, to) in merge(&mut config, other) {
                if from == to {
                    eprintln!("added context {to}");
                } else {
                    eprintln!("added context {from} as {to} ({from} was taken)");
                }
            }
            save(&config, &path)?;
            eprintln!(
                "{shown}: current context is {}",
                config.context.as_deref().unwrap_or("(none)")
            );
        }
        ConfigCommand::New(a) => return super::config_new::run(a, global).await,
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn generated(cluster: &str, endpoint: &str) -> ClientConfig {
        let secrets = config::generate::generate_secrets().unwrap();
        let input = config::generate::GenerateInput::new(
            cluster.parse().unwrap(),
            endpoint.parse().unwrap(),
            secrets,
        );
        config::generate::generate_configs(&input).unwrap().2
    }

    #[test]
    fn endpoints_and_nodes_edit_the_current_or_named_context() {
        let mut c = generated("lab", "https://10.5.0.2:6443");
        let name = set_endpoints(
            &mut c,
            None,
            &["127.0.0.1:50001".into(), " 10.5.0.3".into()],
        )
        .unwrap();
        assert_eq!(name, "lab");
        assert_eq!(c.contexts["lab"].endpoints, ["127.0.0.1:50001", "10.5.0.3"]);
        set_nodes(&mut c, Some("lab"), &["10.5.0.9".into()]).unwrap();
        assert_eq!(c.contexts["lab"].nodes, ["10.5.0.9"]);
        set_nodes(&mut c, None, &[]).unwrap();
        assert!(c.contexts["lab"].nodes.is_empty());

        let err = set_endpoints(&mut c, None, &["a:notaport".into()]).unwrap_err();
        assert!(err.to_string().contains("\"a:notaport\""), "{err}");
        assert_eq!(
            c.contexts["lab"].endpoints.len(),
            2,
            "a bad edit changes nothing"
        );
        let err = set_nodes(&mut c, Some("nope"), &[]).unwrap_err();
        assert!(
            err.to_string().contains("no context named \"nope\""),
            "{err}"
        );
    }

    #[test]
    fn merging_renames_clashes_and_switches_context() {
        let mut c = generated("lab", "https://10.5.0.2:6443");
        let renamed = merge(&mut c, generated("lab", "https://10.6.0.2:6443"));
        assert_eq!(renamed, [("lab".to_string(), "lab-1".to_string())]);
        assert_eq!(c.context.as_deref(), Some("lab-1"));
        assert_eq!(c.contexts["lab-1"].endpoints, ["10.6.0.2"]);
        merge(&mut c, generated("lab", "https://10.7.0.2:6443"));
        assert_eq!(c.context.as_deref(), Some("lab-2"));
        merge(&mut c, generated("prod", "https://10.8.0.2:6443"));
        use_context(&mut c, "lab").unwrap();
        assert!(use_context(&mut c, "staging").is_err());
        assert_eq!(
            contexts_table(&c).render(),
            "CURRENT   NAME    ENDPOINTS   NODES\n\
             *         lab     10.5.0.2\n\
             \x20         lab-1   10.6.0.2\n\
             \x20         lab-2   10.7.0.2\n\
             \x20         prod    10.8.0.2\n"
        );
    }

    #[tokio::test]
    async fn edits_are_saved_0600_and_merge_creates_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("out-cairnconfig");
        generated("lab", "https://10.5.0.2:6443")
            .save(&source, false)
            .unwrap();
        let target = dir.path().join("home/.cairn/config");
        let global = |extra: &[&str]| -> GlobalArgs {
            use clap::Parser;
            #[derive(Parser)]
            struct Cli {
                #[command(flatten)]
                g: GlobalArgs,
            }
            let mut argv = vec!["cairnctl", "--cairnconfig", target.to_str().unwrap()];
            argv.extend_from_slice(extra);
            Cli::parse_from(argv).g
        };
        run(
            ConfigCommand::Merge(MergeArgs {
                file: source.clone(),
            }),
            &global(&[]),
        )
        .await
        .unwrap();
        let mode = std::fs::metadata(&target).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        run(
            ConfigCommand::Endpoint(EndpointArgs {
                endpoints: vec!["127.0.0.1:40000".into()],
            }),
            &global(&["--context", "lab"]),
        )
        .await
        .unwrap();
        let saved = ClientConfig::load(&target).unwrap();
        assert_eq!(saved.context.as_deref(), Some("lab"));
        assert_eq!(saved.contexts["lab"].endpoints, ["127.0.0.1:40000"]);
        let leftovers: Vec<_> = std::fs::read_dir(target.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers.len(), 1, "no temporary files left: {leftovers:?}");
    }
}
