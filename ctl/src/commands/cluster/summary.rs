//! What `cluster create` prints at the end: the nodes, the files, and
//! the commands to run next, runnable as printed (programs by their path
//! when they are not on PATH).

use std::path::{Path, PathBuf};
use std::time::Duration;

use provision::cluster::{ClusterState, Layout, Role, NETWORK};
use provision::{launch, Images};

use super::create::Args;

/// `program` by its path when it is not on PATH.
fn program(name: &str, beside: &[PathBuf]) -> String {
    let on_path = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()));
    if on_path {
        return name.to_string();
    }
    beside
        .iter()
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .map_or_else(|| name.to_string(), |p| p.display().to_string())
}

pub(super) fn print_summary(
    args: &Args,
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
    let exe_dir: Vec<PathBuf> = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .into_iter()
        .chain([images.dir.clone()])
        .collect();
    let cairnctl = program("cairnctl", &exe_dir);
    let kubectl = program("kubectl", &exe_dir);
    println!("  kubeconfig:   {}", layout.kubeconfig().display());
    println!("  cairnconfig:  {}", layout.cairnconfig().display());
    if let Some(m) = &state.merged_context {
        println!(
            "  kube context: {} (merged into {})",
            m.context,
            m.path.display()
        );
    }
    println!();
    println!("next:");
    if state.merged_context.is_some() {
        println!("  {kubectl} get nodes -o wide");
    } else {
        println!(
            "  {kubectl} --kubeconfig {} get nodes -o wide",
            layout.kubeconfig().display()
        );
    }
    let cfg = layout.cairnconfig();
    let worker = state.nodes.iter().find(|n| n.role == Role::Worker);
    println!("  {cairnctl} --cairnconfig {} services", cfg.display());
    if let Some(w) = worker {
        let addr = format!("127.0.0.1:{}", w.apid_port);
        println!(
            "  {cairnctl} --cairnconfig {} -e {addr} -n {addr} services    # {}",
            cfg.display(),
            w.name
        );
    }
    println!("  {cairnctl} cluster show --name {}", args.name);
    println!("  {cairnctl} cluster destroy --name {}", args.name);
}
