//! `cairnctl cluster create`: a local cluster in QEMU, the way a user would
//! build one by hand, in one command.
//!
//! Preflight (memory, disk, QEMU, the images) before anything starts; then
//! the private network's hub and one VM per node from the raw image (qcow2
//! overlays in the cluster directory); each node's maintenance mode, its
//! certificate pinned by the fingerprint its console announced; the configs
//! generated in-process and applied per node; the first control plane
//! bootstrapped; the kubeconfig fetched and pointed at the forwarded API
//! port; and a wait, with a line per node state change, until every node is
//! Ready and the system Pods run. All API calls go through cairnctl's own
//! session code.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use api::machine::{ApplyConfigurationRequest, ApplyMode, BootstrapRequest};
use config::fsutil::write_private;
use provision::cluster::{
    self, ClusterState, Layout, MergedContext, NodeState, Request, Role, NETWORK,
};
use provision::{launch, preflight, Images};

use super::bringup::{
    mutual, pinned, version, wait_maintenance, wait_until, watch_until_up, Until,
};
use super::configs::{self, Generated};
use super::progress::Progress;
use crate::commands::apply_config::parse_duration;
use crate::commands::kubeconfig;
use crate::commands::machineconfig::{ConfigPatchArgs, RolePatches};
use crate::session::Session;
use config::patch::apply_all;

#[derive(clap::Args, Debug)]
#[command(after_help = "\
Examples:
  cairnctl cluster create --controlplanes 1 --workers 1 --name demo
  cairnctl cluster create --workers 2 --memory 4096 --memory-workers 3072 --name big
  cairnctl cluster create --workers 0 --name solo --no-merge
  cairnctl cluster create --name lean \
      --config-patch '{cluster: {addons: {prometheus: {enabled: false}}}}'

Boots the built images (make image; --image-dir or $CAIRN_OUT to use others)
in QEMU, one VM per node, on a private network 10.5.0.0/24 that this machine
builds itself (control planes from 10.5.0.2, workers from 10.5.0.10; the
Kubernetes endpoint is https://10.5.0.2:6443). Each node's apid, and the first
control plane's Kubernetes API, are forwarded to 127.0.0.1. Everything of the
cluster is in $CAIRN_CACHE/clusters/NAME (default ~/.cache/cairn/clusters/NAME):
the disks, the consoles, the secrets, the configs, kubeconfig and cairnconfig.
The kube context is merged into ~/.kube/config unless --no-merge.
Only one control plane is supported for now.")]
pub struct Args {
    /// Control-plane nodes (only 1 is supported for now).
    #[arg(long, default_value_t = 1)]
    pub controlplanes: u32,
    /// Worker nodes.
    #[arg(long, default_value_t = 1)]
    pub workers: u32,
    /// The cluster's name: its directory, its kube context.
    #[arg(long, default_value = "local")]
    pub name: String,
    /// Memory of each control-plane VM.
    #[arg(long, value_name = "MiB", default_value_t = 4096)]
    pub memory: u32,
    /// Memory of each worker VM.
    #[arg(long, value_name = "MiB", default_value_t = 2048)]
    pub memory_workers: u32,
    /// Virtual CPUs of each VM.
    #[arg(long, default_value_t = 2)]
    pub cpus: u32,
    /// Where the images are (default: $CAIRN_OUT, else beside cairnctl,
    /// else the workspace's _out/).
    #[arg(long, value_name = "DIR")]
    pub image_dir: Option<PathBuf>,
    /// Do not merge the kube context into ~/.kube/config.
    #[arg(long)]
    pub no_merge: bool,
    /// How long the whole bring-up may take (QEMU emulates the CPU here:
    /// minutes).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "40m")]
    pub timeout: Duration,
    #[command(flatten)]
    pub patches: ConfigPatchArgs,
}

/// What the user is told when multi-control-plane is asked for.
pub const MULTI_CONTROL_PLANE: &str = "more than one control plane is not supported yet: \
    a second control plane cannot join etcd yet; use --controlplanes 1 (with any number of workers)";

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    if args.controlplanes >= 2 {
        bail!(
            "--controlplanes {}: {MULTI_CONTROL_PLANE}",
            args.controlplanes
        );
    }
    // Bad patches fail here, before anything starts.
    let patches = args.patches.parse()?;
    let mut nodes = cluster::plan(&Request {
        name: args.name.clone(),
        controlplanes: args.controlplanes,
        workers: args.workers,
        controlplane_memory_mib: args.memory,
        worker_memory_mib: args.memory_workers,
        cpus: args.cpus,
    })?;
    let layout = Layout::named(&args.name)?;
    if layout.dir.exists() {
        let running = launch::node_dirs(&layout)
            .iter()
            .any(|n| launch::qemu_pid(&layout, n).is_some());
        bail!(
            "a cluster named {:?} exists already ({}, {}): `cairnctl cluster show --name {}` lists it, `cairnctl cluster destroy --name {}` removes it",
            args.name,
            layout.dir.display(),
            if running { "running" } else { "stopped" },
            args.name,
            args.name
        );
    }
    let images = Images::for_cli(args.image_dir.clone());
    images.raw()?;
    preflight::tools()?;
    layout.check_socket_paths(&nodes)?;
    preflight::check(
        &nodes,
        &layout.dir,
        preflight::memory_available_mib()?,
        preflight::disk_available_mib(&layout.dir)?,
    )?;

    // From here on, things run: a failure leaves them for a look.
    make_private_dir(&layout.dir)?;
    for (i, n) in nodes.iter_mut().enumerate() {
        launch::assign_ports(n, i == 0)?;
    }
    let mut state = ClusterState {
        name: args.name.clone(),
        network: NETWORK.into(),
        endpoint: cluster::endpoint(&nodes),
        image_dir: std::fs::canonicalize(&images.dir).unwrap_or(images.dir.clone()),
        nodes,
        merged_context: None,
    };
    layout.save(&state)?;
    let names: Vec<String> = state.nodes.iter().map(|n| n.name.clone()).collect();
    let mut progress = Progress::new(&names);
    match bring_up(&args, &patches, &layout, &images, &mut state, &mut progress).await {
        Ok(()) => {
            progress.finish();
            super::summary::print_summary(&layout, &state, &images, progress.elapsed());
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            progress.finish();
            eprintln!(
                "the cluster's VMs keep running for a look: consoles in {}/<node>/console.log; \
                 `cairnctl cluster destroy --name {}` removes it",
                layout.dir.display(),
                args.name
            );
            Err(e)
        }
    }
}

fn make_private_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))
}

async fn bring_up(
    args: &Args,
    patches: &RolePatches,
    layout: &Layout,
    images: &Images,
    state: &mut ClusterState,
    progress: &mut Progress,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + args.timeout;
    let mut hub = std::process::Command::new(
        std::env::current_exe().context("finding the cairnctl program for the network hub")?,
    );
    hub.args(["cluster", "hub"]).arg(layout.net_dir());
    let pid = launch::start_hub(layout, hub)?;
    progress.step(&format!(
        "private network {NETWORK}: hub running (pid {pid})"
    ));
    let stagger = configure_workers_later(&state.nodes, host_cpus());
    for n in &state.nodes {
        let nice = if stagger && n.role == Role::Worker {
            WORKER_NICE
        } else {
            0
        };
        let pid = launch::start_node(images, layout, n, nice)?;
        progress.node(
            &n.name,
            &format!(
                "booting: {} {}, QEMU pid {pid}, apid on 127.0.0.1:{}",
                n.role.as_str(),
                n.ip,
                n.apid_port
            ),
        );
    }

    let fingerprints = wait_maintenance(layout, &state.nodes, progress, deadline).await?;
    let (control_planes, workers): (Vec<_>, Vec<_>) = state
        .nodes
        .iter()
        .zip(&fingerprints)
        .partition(|(n, _)| n.role == Role::Controlplane);
    let has_workers = !workers.is_empty();
    let mut generated = configs::generate(&state.name, &state.endpoint)?;
    generated.controlplane = apply_all(&generated.controlplane, &patches.controlplane)?;
    generated.worker = apply_all(&generated.worker, &patches.worker)?;
    let first = state
        .nodes
        .iter()
        .find(|n| n.role == Role::Controlplane)
        .context("no control plane in the plan")?
        .clone();
    write_configs(layout, state, &generated, &first, has_workers)?;
    progress.step(&format!(
        "generated secrets and configs for cluster {:?} ({})",
        state.name, state.endpoint
    ));

    apply_configs(&generated, &control_planes, has_workers, progress).await?;
    if !stagger {
        apply_configs(&generated, &workers, has_workers, progress).await?;
    }

    let cp = mutual(layout, &first);
    wait_until(
        deadline,
        Duration::from_secs(2),
        "the first control plane answering mutual TLS",
        || async {
            version(&cp).await.and_then(|v| {
                if v.maintenance {
                    Err("still in maintenance mode".into())
                } else {
                    Ok(())
                }
            })
        },
    )
    .await?;
    progress.node(&first.name, "configured: apid answers mutual TLS");
    wait_until(deadline, Duration::from_secs(5), "bootstrap", || async {
        let session = Session::open(&cp).await.map_err(|e| e.to_string())?;
        let client = session.single("bootstrap").map_err(|e| e.to_string())?;
        client
            .call("Bootstrap", BootstrapRequest {}, |mut m, r| async move {
                m.bootstrap(r).await
            })
            .await
    })
    .await?;
    progress.node(
        &first.name,
        "bootstrapped: etcd starts, then the control plane",
    );

    let mut client = None;
    if stagger {
        progress.step(&format!(
            "{} CPUs here for {} vCPUs: the workers run at nice {WORKER_NICE} and are configured once the control plane is up",
            host_cpus(),
            vcpus(&state.nodes)
        ));
        let cps: Vec<NodeState> = control_planes.iter().map(|(n, _)| (*n).clone()).collect();
        watch_until_up(
            layout,
            &cps,
            &first,
            &mut client,
            Until::NodesUp,
            progress,
            deadline,
        )
        .await?;
        apply_configs(&generated, &workers, has_workers, progress).await?;
    }
    watch_until_up(
        layout,
        &state.nodes,
        &first,
        &mut client,
        Until::ClusterUp,
        progress,
        deadline,
    )
    .await?;
    if !args.no_merge {
        merge_context(layout, state)?;
    }
    layout.save(state)?;
    Ok(())
}

/// Applies each node's config in maintenance mode (its certificate pinned
/// by `fingerprint`).
async fn apply_configs(
    generated: &Generated,
    nodes: &[(&NodeState, &String)],
    has_workers: bool,
    progress: &mut Progress,
) -> anyhow::Result<()> {
    for (n, fingerprint) in nodes {
        let config = configs::node_config(generated, n, !has_workers)?;
        let request = ApplyConfigurationRequest {
            data: config.render().into_bytes(),
            mode: ApplyMode::NoReboot as i32,
            dry_run: false,
            try_timeout_seconds: 0,
        };
        let global = pinned(n, fingerprint);
        let session = Session::open(&global).await?;
        let client = session.single("apply-config")?;
        client
            .call("ApplyConfiguration", request, |mut m, r| async move {
                m.apply_configuration(r).await
            })
            .await
            .map_err(|e| anyhow::anyhow!("applying the config of {}: {e}", n.name))?;
        progress.node(&n.name, "config applied");
    }
    Ok(())
}

/// The niceness of workers' VMs on a host with fewer CPUs than vCPUs: the
/// control plane's VMs get the CPU first (weight 1024 against 110).
const WORKER_NICE: i32 = 10;

/// The CPUs this process may use (cgroup quota and affinity included).
fn host_cpus() -> u32 {
    std::thread::available_parallelism().map_or(1, |n| u32::try_from(n.get()).unwrap_or(u32::MAX))
}

fn vcpus(nodes: &[NodeState]) -> u32 {
    nodes.iter().map(|n| n.cpus).sum()
}

/// Whether the workers get their configs only once the control plane is
/// up, and their VMs a lower CPU priority ([`WORKER_NICE`]): when the VMs
/// have more vCPUs than the host has CPUs. A worker cannot join Kubernetes
/// before the control plane answers anyway, and under QEMU's emulation its
/// work (image imports, the kubelet starting) took the CPU the control
/// plane needs, which every node waits for: one control plane and one
/// worker on 2 CPUs came up in 838 s at once, and later the API server,
/// starved while the worker imported its images, stopped answering.
fn configure_workers_later(nodes: &[NodeState], host_cpus: u32) -> bool {
    nodes.iter().any(|n| n.role == Role::Worker) && vcpus(nodes) > host_cpus
}

/// secrets.yaml, controlplane.yaml, worker.yaml (as generated), one
/// `<node>.yaml` per node, and the admin cairnconfig pointed at the first
/// control plane's forwarded apid.
fn write_configs(
    layout: &Layout,
    state: &ClusterState,
    generated: &Generated,
    first: &NodeState,
    has_workers: bool,
) -> anyhow::Result<()> {
    write_private(
        &layout.secrets(),
        generated.secrets.render().as_bytes(),
        false,
    )?;
    write_private(
        &layout.dir.join("controlplane.yaml"),
        generated.controlplane.render().as_bytes(),
        false,
    )?;
    write_private(
        &layout.dir.join("worker.yaml"),
        generated.worker.render().as_bytes(),
        false,
    )?;
    for n in &state.nodes {
        let config = configs::node_config(generated, n, !has_workers)?;
        write_private(
            &layout.node_config(&n.name),
            config.render().as_bytes(),
            false,
        )?;
    }
    configs::client_config(generated, &format!("127.0.0.1:{}", first.apid_port))
        .save(&layout.cairnconfig(), false)?;
    Ok(())
}

/// Merges the kube context into ~/.kube/config (or $KUBECONFIG's first
/// file) and records it for destroy.
fn merge_context(layout: &Layout, state: &mut ClusterState) -> anyhow::Result<()> {
    let path = match std::env::var("KUBECONFIG")
        .ok()
        .and_then(|v| v.split(':').find(|p| !p.is_empty()).map(PathBuf::from))
    {
        Some(p) => p,
        None => dirs::home_dir()
            .context("cannot find the home directory for ~/.kube/config; use --no-merge")?
            .join(".kube")
            .join("config"),
    };
    let text = std::fs::read_to_string(layout.kubeconfig())
        .with_context(|| format!("reading {}", layout.kubeconfig().display()))?;
    let merged = kubeconfig::merge_file(&path, &text)?;
    state.merged_context = Some(MergedContext {
        path,
        context: merged.context,
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn two_control_planes_are_refused_before_anything_starts() {
        let dir = tempfile::tempdir().unwrap();
        let args = Args {
            controlplanes: 2,
            name: "multi".into(),
            image_dir: Some(dir.path().to_path_buf()),
            ..test_args()
        };
        let err = run(args).await.unwrap_err().to_string();
        assert!(err.contains("--controlplanes 2"), "{err}");
        assert!(err.contains("not supported yet"), "{err}");
        assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none());
    }

    #[tokio::test]
    async fn a_bad_patch_is_an_error_naming_it_before_anything_starts() {
        let dir = tempfile::tempdir().unwrap();
        let patch = dir.path().join("lean.yaml");
        std::fs::write(
            &patch,
            "cluster: {addons: {prometheus: {enabeld: false}}}\n",
        )
        .unwrap();
        let args = Args {
            name: "badpatch".into(),
            image_dir: Some(dir.path().join("nothing")),
            patches: ConfigPatchArgs {
                config_patch_worker: vec!["{machine: {".into()],
                ..ConfigPatchArgs::default()
            },
            ..test_args()
        };
        let err = format!("{:#}", run(args).await.unwrap_err());
        assert!(err.contains("(inline)") && err.contains("YAML"), "{err}");
        let lean = format!("@{}", patch.display());
        let patches = ConfigPatchArgs {
            config_patch: vec![lean],
            ..ConfigPatchArgs::default()
        }
        .parse()
        .unwrap();
        let generated = configs::generate("demo", "https://10.5.0.2:6443").unwrap();
        let err = apply_all(&generated.worker, &patches.worker)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("lean.yaml") && err.contains("enabeld"),
            "{err}"
        );
    }

    fn test_args() -> Args {
        Args {
            controlplanes: 1,
            workers: 1,
            name: "demo".into(),
            memory: 4096,
            memory_workers: 2048,
            cpus: 2,
            image_dir: None,
            no_merge: true,
            timeout: Duration::from_secs(1),
            patches: ConfigPatchArgs::default(),
        }
    }

    #[test]
    fn patches_reach_each_role() {
        let patches = ConfigPatchArgs {
            config_patch: vec!["{cluster: {addons: {prometheus: {enabled: false}}}}".into()],
            config_patch_worker: vec!["{machine: {kubelet: {extraArgs: {v: '2'}}}}".into()],
            ..ConfigPatchArgs::default()
        }
        .parse()
        .unwrap();
        let g = configs::generate("demo", "https://10.5.0.2:6443").unwrap();
        let cp = apply_all(&g.controlplane, &patches.controlplane).unwrap();
        let worker = apply_all(&g.worker, &patches.worker).unwrap();
        assert!(!cp.cluster.addons.prometheus.enabled);
        assert!(!worker.cluster.addons.prometheus.enabled);
        assert!(worker.render().contains("v: '2'"), "{}", worker.render());
        assert!(!cp.render().contains("v: '2'"));
    }

    #[test]
    fn workers_wait_for_the_control_plane_only_on_a_small_host() {
        let nodes = |workers| {
            cluster::plan(&Request {
                name: "demo".into(),
                controlplanes: 1,
                workers,
                controlplane_memory_mib: 4096,
                worker_memory_mib: 2048,
                cpus: 2,
            })
            .unwrap()
        };
        assert!(configure_workers_later(&nodes(1), 2));
        assert!(!configure_workers_later(&nodes(1), 4));
        assert!(configure_workers_later(&nodes(2), 4));
        assert!(!configure_workers_later(&nodes(0), 1), "no workers");
    }

    #[tokio::test]
    async fn missing_images_are_an_error_before_anything_starts() {
        let dir = tempfile::tempdir().unwrap();
        let args = Args {
            name: "noimages".into(),
            image_dir: Some(dir.path().join("nothing")),
            ..test_args()
        };
        let err = run(args).await.unwrap_err().to_string();
        assert!(err.contains("metal-amd64.raw is missing"), "{err}");
    }
}
