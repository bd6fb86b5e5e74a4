//! Flags every verb that talks to a node understands, and how they turn
//! into nodes and credentials.

use std::path::PathBuf;

use crate::client::{ClientError, Credentials, Node};

#[derive(clap::Args, Debug, Clone)]
pub struct GlobalArgs {
    /// Client config with contexts, endpoints and credentials.
    #[arg(long, global = true, env = "CAIRNCONFIG")]
    pub cairnconfig: Option<PathBuf>,
    /// Context from the client config to use instead of its current one.
    #[arg(long, global = true)]
    pub context: Option<String>,
    /// Endpoints to connect to (host or host:port), comma separated.
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

impl GlobalArgs {
    /// The nodes to talk to, from `-n`.
    pub fn nodes(&self) -> Result<Vec<Node>, ClientError> {
        if self.nodes.is_empty() {
            return Err(ClientError::NoNodes);
        }
        self.nodes.iter().map(|n| Node::parse(n)).collect()
    }

    /// The credentials for the chosen mode: none with `--insecure`, else
    /// the current (or `--context`) context of the client config.
    pub fn credentials(&self) -> Result<Credentials, ClientError> {
        if self.insecure {
            return Ok(Credentials::Insecure);
        }
        Err(ClientError::NoClientConfig)
    }
}
