//! Flags every verb that talks to a node understands.

use std::path::PathBuf;

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
