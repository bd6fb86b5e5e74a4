//! Byte streams from nodes (logs, dmesg, files) copied to stdout; with
//! several nodes every line is prefixed with its node.

use std::future::Future;
use std::io::Write;

use api::machine::Data;
use tonic::Streaming;

use crate::output::NodeLines;
use crate::session::{NodeClient, NodeResult, Session};

/// Opens a `Data` stream on every node with `open` and copies it to
/// stdout until it ends (or forever when the server follows).
pub async fn copy_to_stdout<F, Fut>(
    session: &Session,
    rpc: &'static str,
    open: F,
) -> Vec<NodeResult<()>>
where
    F: Fn(NodeClient) -> Fut,
    Fut: Future<Output = Result<Streaming<Data>, tonic::Status>>,
{
    let prefixed = session.len() > 1;
    session
        .each(|client| {
            let opened = open(client.clone());
            async move {
                let stream = opened.await.map_err(|s| client.explain(&s, rpc))?;
                copy(stream, &client, rpc, prefixed).await
            }
        })
        .await
}

async fn copy(
    mut stream: Streaming<Data>,
    client: &NodeClient,
    rpc: &str,
    prefixed: bool,
) -> Result<(), String> {
    let mut lines = NodeLines::new(&client.node.to_string(), prefixed);
    let write = |bytes: Vec<u8>| -> Result<(), String> {
        if bytes.is_empty() {
            return Ok(());
        }
        let mut out = std::io::stdout().lock();
        out.write_all(&bytes)
            .and_then(|()| out.flush())
            .map_err(|e| format!("writing to standard output: {e}"))
    };
    loop {
        match stream.message().await {
            Ok(Some(data)) => write(lines.push(&data.bytes))?,
            Ok(None) => return write(lines.finish()),
            Err(status) => {
                write(lines.finish())?;
                return Err(client.explain(&status, rpc));
            }
        }
    }
}
