//! `cairnctl bootstrap`: start etcd on one control-plane node as a new
//! cluster. Once per cluster; the node refuses a second time.

use std::process::ExitCode;

use api::machine::BootstrapRequest;

use crate::global::GlobalArgs;
use crate::session::Session;

#[derive(clap::Args, Debug)]
#[command(after_help = "\
Examples:
  cairnctl -n 10.5.0.2 bootstrap
  cairnctl -n 10.5.0.2 health

Run it once, against one control-plane node, after its config is applied: it
starts etcd there as a new one-member cluster, and the control plane comes up
on top of it. A node whose etcd already has data refuses. `cairnctl health`
waits until the cluster is up. Needs an admin certificate.")]
pub struct Args {}

pub async fn run(_args: Args, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let session = Session::open(global).await?;
    let client = session.single("bootstrap")?;
    client
        .call("Bootstrap", BootstrapRequest {}, |mut m, r| async move {
            m.bootstrap(r).await
        })
        .await
        .map_err(anyhow::Error::msg)?;
    println!(
        "{}: bootstrapping: etcd starts as a new cluster, then the control plane",
        client.node
    );
    println!(
        "next: cairnctl -n {} health, then cairnctl -n {} kubeconfig",
        client.node, client.node
    );
    Ok(ExitCode::SUCCESS)
}
