//! Flags every verb that talks to a node understands, and how they turn
//! into nodes and credentials.

use std::path::PathBuf;

use config::client::ClientConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::client::{ClientError, Credentials, Node};

#[derive(clap::Args, Debug, Clone)]
pub struct GlobalArgs {
    /// Client config with contexts, endpoints and credentials
    /// (default ~/.cairn/config).
    #[arg(long, global = true, env = "CAIRNCONFIG")]
    pub cairnconfig: Option<PathBuf>,
    /// Context from the client config to use instead of its current one.
    #[arg(long, global = true)]
    pub context: Option<String>,
    /// Endpoints to connect to (host or host:port), comma separated. Until
    /// apid forwards requests between nodes, they are used as the nodes
    /// when no nodes are given.
    #[arg(short = 'e', long, global = true, value_delimiter = ',')]
    pub endpoints: Vec<String>,
    /// Nodes to act on (host or host:port), comma separated.
    #[arg(short = 'n', long, global = true, value_delimiter = ',')]
    pub nodes: Vec<String>,
    /// Connect without client certificates and without verifying the server
    /// (maintenance mode only).
    #[arg(short = 'i', long, global = true)]
    pub insecure: bool,
}

/// Where to connect and how to authenticate.
pub struct Target {
    pub nodes: Vec<Node>,
    pub credentials: Credentials,
}

impl GlobalArgs {
    /// Nodes from `-n` (else `-e`, else the context's nodes, else its
    /// endpoints) and credentials: none with `--insecure`, else the current
    /// (or `--context`) context of the client config.
    pub fn target(&self) -> Result<Target, ClientError> {
        let context = if self.insecure {
            None
        } else {
            let config = self.load_client_config()?;
            let (_, context) = config.context(self.context.as_deref())?;
            Some(context.clone())
        };
        let from_flags = if self.nodes.is_empty() {
            &self.endpoints
        } else {
            &self.nodes
        };
        let names: Vec<String> = match &context {
            _ if !from_flags.is_empty() => from_flags.clone(),
            Some(c) if !c.nodes.is_empty() => c.nodes.clone(),
            Some(c) => c.endpoints.clone(),
            None => Vec::new(),
        };
        if names.is_empty() {
            return Err(ClientError::NoNodes);
        }
        let nodes = names
            .iter()
            .map(|n| Node::parse(n))
            .collect::<Result<_, _>>()?;
        let credentials = match context {
            None => Credentials::Insecure,
            Some(c) => Credentials::Mutual {
                ca: vec![CertificateDer::from(c.ca.der().to_vec())],
                chain: vec![CertificateDer::from(c.crt.der().to_vec())],
                key: PrivateKeyDer::from_pem_slice(c.key.pem().as_bytes())
                    .map_err(|e| ClientError::BadKey(e.to_string()))?,
            },
        };
        Ok(Target { nodes, credentials })
    }

    /// `--cairnconfig`, `$CAIRNCONFIG`, or `~/.cairn/config`.
    fn load_client_config(&self) -> Result<ClientConfig, ClientError> {
        let path = match &self.cairnconfig {
            Some(p) => p.clone(),
            None => match ClientConfig::default_path() {
                Some(p) if p.exists() => p,
                _ => return Err(ClientError::NoClientConfig),
            },
        };
        Ok(ClientConfig::load(&path)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        global: GlobalArgs,
    }

    fn args(argv: &[&str]) -> GlobalArgs {
        Cli::parse_from(std::iter::once("cairnctl").chain(argv.iter().copied())).global
    }

    #[test]
    fn insecure_needs_nodes_but_no_config() {
        let t = args(&["--insecure", "-n", "10.5.0.2,10.5.0.3:7"])
            .target()
            .unwrap();
        assert!(matches!(t.credentials, Credentials::Insecure));
        let nodes: Vec<String> = t.nodes.iter().map(|n| n.to_string()).collect();
        assert_eq!(nodes, ["10.5.0.2:50000", "10.5.0.3:7"]);
        assert!(matches!(
            args(&["--insecure"]).target(),
            Err(ClientError::NoNodes)
        ));
    }

    #[test]
    fn a_missing_config_file_names_the_file() {
        let err = args(&["--cairnconfig", "/nonexistent/cairnconfig", "-n", "a"])
            .target()
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("/nonexistent/cairnconfig"), "{err}");
    }

    #[test]
    fn nodes_and_credentials_come_from_the_context() {
        let secrets = config::generate::generate_secrets().expect("secrets");
        let input = config::generate::GenerateInput::new(
            "prod".parse().unwrap(),
            "https://10.0.0.1:6443".parse().unwrap(),
            secrets,
        );
        let (_, _, client) = config::generate::generate_configs(&input).expect("configs");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config");
        client.save(&path, false).unwrap();
        let path = path.to_str().unwrap();

        let t = args(&["--cairnconfig", path]).target().unwrap();
        assert_eq!(t.nodes[0].to_string(), "10.0.0.1:50000");
        assert!(matches!(t.credentials, Credentials::Mutual { .. }));

        let t = args(&["--cairnconfig", path, "-n", "10.0.0.9"])
            .target()
            .unwrap();
        assert_eq!(
            t.nodes[0].to_string(),
            "10.0.0.9:50000",
            "-n wins over the context"
        );

        let err = args(&["--cairnconfig", path, "--context", "nope"])
            .target()
            .err()
            .unwrap();
        assert!(
            err.to_string().contains("no context named \"nope\""),
            "{err}"
        );
    }
}
