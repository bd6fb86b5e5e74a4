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
    /// apid endpoints to connect to (host or host:port), comma separated;
    /// default: the context's. Requests for other nodes go through the
    /// first endpoint that answers, which forwards them.
    #[arg(short = 'e', long, global = true, value_delimiter = ',')]
    pub endpoints: Vec<String>,
    /// Nodes to act on (host or host:port), comma separated; one call per
    /// node. Default: the context's nodes, else the endpoints themselves.
    /// Without endpoints each node is its own endpoint.
    #[arg(short = 'n', long, global = true, value_delimiter = ',')]
    pub nodes: Vec<String>,
    /// Connect without client certificates and without verifying the server
    /// (maintenance mode only).
    #[arg(short = 'i', long, global = true)]
    pub insecure: bool,
    /// With --insecure: accept only the node whose certificate has this
    /// SHA-256 (`sha256:<hex>`, as the node's console shows it), so nobody
    /// in the middle can read the config sent to it.
    #[arg(long, global = true, value_name = "SHA256", requires = "insecure", value_parser = parse_fingerprint)]
    pub fingerprint: Option<String>,
}

fn parse_fingerprint(s: &str) -> Result<String, String> {
    if config::tls::is_fingerprint(s) {
        Ok(s.to_string())
    } else {
        Err("expected a SHA-256 fingerprint: sha256: and 64 hex digits, as the node's console shows it".into())
    }
}

/// Where to connect and how to authenticate.
pub struct Target {
    /// The nodes to act on.
    pub nodes: Vec<Node>,
    /// Where to connect; empty means each node is its own endpoint.
    pub endpoints: Vec<Node>,
    pub credentials: Credentials,
}

impl GlobalArgs {
    /// Endpoints from `-e` (else the context's), nodes from `-n` (else the
    /// context's nodes, else the endpoints themselves), and credentials:
    /// none with `--insecure`, else the current (or `--context`) context of
    /// the client config.
    pub fn target(&self) -> Result<Target, ClientError> {
        let context = if self.insecure {
            None
        } else {
            let config = self.load_client_config()?;
            let (_, context) = config.context(self.context.as_deref())?;
            Some(context.clone())
        };
        let endpoint_names: Vec<String> = match &context {
            _ if !self.endpoints.is_empty() => self.endpoints.clone(),
            Some(c) => c.endpoints.clone(),
            None => Vec::new(),
        };
        let node_names: Vec<String> = match &context {
            _ if !self.nodes.is_empty() => self.nodes.clone(),
            Some(c) if !c.nodes.is_empty() => c.nodes.clone(),
            _ => endpoint_names.clone(),
        };
        if node_names.is_empty() {
            return Err(ClientError::NoNodes);
        }
        let parse = |names: &[String]| -> Result<Vec<Node>, ClientError> {
            names.iter().map(|n| Node::parse(n)).collect()
        };
        let nodes = parse(&node_names)?;
        let endpoints = parse(&endpoint_names)?;
        let credentials = match context {
            None => match &self.fingerprint {
                Some(f) => Credentials::Pinned(f.clone()),
                None => Credentials::Insecure,
            },
            Some(c) => Credentials::Mutual {
                ca: vec![CertificateDer::from(c.ca.der().to_vec())],
                chain: vec![CertificateDer::from(c.crt.der().to_vec())],
                key: PrivateKeyDer::from_pem_slice(c.key.pem().as_bytes())
                    .map_err(|e| ClientError::BadKey(e.to_string()))?,
            },
        };
        Ok(Target {
            nodes,
            endpoints,
            credentials,
        })
    }

    /// The client config file to read or edit: `--cairnconfig`,
    /// `$CAIRNCONFIG`, or `~/.cairn/config` (which may not exist yet).
    pub fn client_config_path(&self) -> Result<PathBuf, ClientError> {
        match &self.cairnconfig {
            Some(p) => Ok(p.clone()),
            None => ClientConfig::default_path().ok_or(ClientError::NoClientConfig),
        }
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
        assert!(t.endpoints.is_empty(), "each node is its own endpoint");
        assert!(matches!(
            args(&["--insecure"]).target(),
            Err(ClientError::NoNodes)
        ));
    }

    #[test]
    fn endpoints_alone_are_the_nodes() {
        let t = args(&["--insecure", "-e", "10.5.0.2,10.5.0.3"])
            .target()
            .unwrap();
        let nodes: Vec<String> = t.nodes.iter().map(ToString::to_string).collect();
        assert_eq!(nodes, ["10.5.0.2:50000", "10.5.0.3:50000"]);
        assert_eq!(t.endpoints.len(), 2);
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

        assert!(
            t.endpoints
                .iter()
                .map(ToString::to_string)
                .eq(["10.0.0.1:50000"]),
            "the context's endpoint stays the endpoint"
        );

        let t = args(&["--cairnconfig", path, "-e", "127.0.0.1:4000", "-n", "a,b:7"])
            .target()
            .unwrap();
        let nodes: Vec<String> = t.nodes.iter().map(ToString::to_string).collect();
        assert_eq!(nodes, ["a:50000", "b:7"]);
        assert_eq!(
            t.endpoints[0].to_string(),
            "127.0.0.1:4000",
            "-e wins over the context"
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
