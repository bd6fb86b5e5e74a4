//! What `cluster create` prints at the end: the nodes, then the files and
//! the commands to run next (`provision::summary`, runnable as printed).

use std::path::PathBuf;
use std::time::Duration;

use provision::cluster::{ClusterState, Layout, Role, NETWORK};
use provision::{launch, summary, Images};

pub(super) fn print_summary(
    layout: &Layout,
    state: &ClusterState,
    images: &Images,
    took: Duration,
) {
    let cps = state
        .nodes
        .iter()
        .filter(|n| n.role == Role::Controlplane)
        .count();
    let workers = state.nodes.len() - cps;
    println!(
        "cluster {:?} is up after {} s: {cps} control plane(s), {workers} worker(s) on {NETWORK}",
        state.name,
        took.as_secs()
    );
    let rows = super::show::rows(state, layout, |n| launch::qemu_pid(layout, n));
    print!("{}", super::show::table(&rows).render());
    println!();
    // The cairnctl running now made the cluster: the commands name it.
    let running = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("cairnctl"));
    print!(
        "{}",
        summary::render_here(state, layout, &running, &images.dir)
    );
}
