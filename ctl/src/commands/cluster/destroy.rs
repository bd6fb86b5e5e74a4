//! `cairnctl cluster destroy --name NAME`: stops a local cluster's VMs and
//! its network hub, removes its kube context from the kubeconfig it was
//! merged into, and removes its directory.

use std::process::ExitCode;

use anyhow::Context as _;
use provision::cluster::{is_cluster_dir, Layout};
use provision::launch;

#[derive(clap::Args, Debug)]
#[command(after_help = "\
Examples:
  cairnctl cluster destroy --name demo

Everything of the cluster goes: its VMs (their disks are overlays in the
cluster directory), the private network, the generated secrets and configs,
and the context `create` merged into ~/.kube/config.")]
pub struct Args {
    /// The cluster's name.
    #[arg(long, default_value = "local")]
    pub name: String,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let layout = Layout::named(&args.name)?;
    if !layout.dir.exists() {
        println!(
            "no cluster named {:?} ({} does not exist)",
            args.name,
            layout.dir.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let state = layout.load().ok();
    // Nodes a failed create did not record still have their pid files.
    let mut names: Vec<String> = state
        .as_ref()
        .map(|s| s.nodes.iter().map(|n| n.name.clone()).collect())
        .unwrap_or_default();
    for n in launch::node_dirs(&layout) {
        if !names.contains(&n) {
            names.push(n);
        }
    }
    let stopped = launch::stop(&layout, &names);
    for (node, pid) in &stopped.nodes {
        println!("stopped {node} (QEMU pid {pid})");
    }
    if let Some(pid) = stopped.hub {
        println!("stopped the network hub (pid {pid})");
    }
    if let Some(merged) = state.as_ref().and_then(|s| s.merged_context.as_ref()) {
        match crate::commands::kubeconfig::unmerge_file(&merged.path, &merged.context) {
            Ok(true) => println!(
                "removed context {} from {}",
                merged.context,
                merged.path.display()
            ),
            Ok(false) => {}
            Err(e) => eprintln!(
                "warning: context {} stays in {}: {e:#}",
                merged.context,
                merged.path.display()
            ),
        }
    }
    // Only a directory that looks like a cluster's is removed whole.
    if !is_cluster_dir(&layout.dir) && !layout.net_dir().exists() {
        anyhow::bail!(
            "{} holds no cluster.json; not removing it",
            layout.dir.display()
        );
    }
    std::fs::remove_dir_all(&layout.dir)
        .with_context(|| format!("removing {}", layout.dir.display()))?;
    println!("removed {}", layout.dir.display());
    Ok(ExitCode::SUCCESS)
}
