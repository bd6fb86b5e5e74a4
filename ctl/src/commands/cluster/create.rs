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
use api::machine::{ApplyConfigurationRequest, ApplyMode, BootstrapRequest, VersionResponse};
use config::fsutil::write_private;
use provision::cluster::{
    self, ClusterState, Layout, MergedContext, NodeState, Request, Role, NETWORK,
};
use provision::{launch, preflight, Images};

use super::configs::{self, Generated};
use super::progress::Progress;
use super::wait;
use crate::commands::apply_config::parse_duration;
use crate::commands::kubeconfig;
use crate::global::GlobalArgs;
use crate::session::Session;

#[derive(clap::Args, Debug)]
#[command(after_help = "\
Examples:
  cairnctl cluster create --controlplanes 1 --workers 1 --name demo
  cairnctl cluster create --workers 2 --memory 4096 --memory-workers 3072 --name big
  cairnctl cluster create --workers 0 --name solo --no-merge

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
    match bring_up(&args, &layout, &images, &mut state, &mut progress).await {
        Ok(()) => {
            progress.finish();
            print_summary(&args, &layout, &state, &images, progress.elapsed());
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
    for n in &state.nodes {
        let pid = launch::start_node(images, layout, n)?;
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
    let generated = configs::generate(&state.name, &state.endpoint)?;
    let first = state
        .nodes
        .iter()
        .find(|n| n.role == Role::Controlplane)
        .context("no control plane in the plan")?
        .clone();
    write_configs(layout, state, &generated, &first)?;
    progress.step(&format!(
        "generated secrets and configs for cluster {:?} ({})",
        state.name, state.endpoint
    ));

    let workers = state.nodes.iter().any(|n| n.role == Role::Worker);
    for (n, fingerprint) in state.nodes.iter().zip(&fingerprints) {
        let config = configs::node_config(&generated, n, !workers)?;
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

    let client = watch_until_up(layout, state, &first, progress, deadline).await?;
    drop(client);
    if !args.no_merge {
        merge_context(layout, state)?;
    }
    layout.save(state)?;
    Ok(())
}

/// GlobalArgs for `node` in maintenance mode, its certificate pinned.
fn pinned(node: &NodeState, fingerprint: &str) -> GlobalArgs {
    GlobalArgs {
        cairnconfig: None,
        context: None,
        endpoints: Vec::new(),
        nodes: vec![format!("127.0.0.1:{}", node.apid_port)],
        insecure: true,
        fingerprint: Some(fingerprint.to_string()),
    }
}

/// GlobalArgs for `node` over mutual TLS with the cluster's cairnconfig,
/// straight to its forwarded port.
fn mutual(layout: &Layout, node: &NodeState) -> GlobalArgs {
    let addr = format!("127.0.0.1:{}", node.apid_port);
    GlobalArgs {
        cairnconfig: Some(layout.cairnconfig()),
        context: None,
        endpoints: vec![addr.clone()],
        nodes: vec![addr],
        insecure: false,
        fingerprint: None,
    }
}

/// Version through `global`'s single node, within 15 s.
async fn version(global: &GlobalArgs) -> Result<VersionResponse, String> {
    let call = async {
        let session = Session::open(global).await.map_err(|e| format!("{e:#}"))?;
        let client = session.single("version").map_err(|e| format!("{e:#}"))?;
        client
            .call("Version", (), |mut m, r| async move { m.version(r).await })
            .await
    };
    tokio::time::timeout(Duration::from_secs(15), call)
        .await
        .unwrap_or_else(|_| Err("no answer in 15 s".into()))
}

/// Calls `attempt` every `every` until it succeeds; past `deadline` fails
/// with its last error.
async fn wait_until<T, F, Fut>(
    deadline: Instant,
    every: Duration,
    what: &str,
    mut attempt: F,
) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    loop {
        match attempt().await {
            Ok(v) => return Ok(v),
            Err(e) if Instant::now() >= deadline => bail!("{what}: gave up: {e}"),
            Err(_) => tokio::time::sleep(every).await,
        }
    }
}

/// Waits until every node's console announced maintenance mode and its
/// apid answers Version with the announced certificate; returns the
/// fingerprints.
async fn wait_maintenance(
    layout: &Layout,
    nodes: &[NodeState],
    progress: &mut Progress,
    deadline: Instant,
) -> anyhow::Result<Vec<String>> {
    let mut found: Vec<Option<String>> = vec![None; nodes.len()];
    loop {
        for (n, slot) in nodes.iter().zip(found.iter_mut()) {
            if slot.is_some() {
                continue;
            }
            if launch::qemu_pid(layout, &n.name).is_none() {
                bail!(
                    "QEMU of {} exited during boot\n--- {} ---\n{}\n--- last console lines ({}) ---\n{}",
                    n.name,
                    layout.qemu_log(&n.name).display(),
                    std::fs::read_to_string(layout.qemu_log(&n.name)).unwrap_or_default().trim(),
                    layout.console(&n.name).display(),
                    tail(&launch::console(layout, &n.name), 30)
                );
            }
            let Some(fingerprint) =
                launch::maintenance_fingerprint(&launch::console(layout, &n.name))
            else {
                continue;
            };
            match version(&pinned(n, &fingerprint)).await {
                Ok(v) if v.maintenance => {
                    progress.node(
                        &n.name,
                        &format!(
                            "maintenance mode: Cairn {}, apid {}…",
                            v.version,
                            &fingerprint[..fingerprint.len().min(19)]
                        ),
                    );
                    *slot = Some(fingerprint);
                }
                Ok(_) => bail!(
                    "{} is not in maintenance mode: it has a config already",
                    n.name
                ),
                Err(_) => {}
            }
        }
        if found.iter().all(Option::is_some) {
            return Ok(found.into_iter().flatten().collect());
        }
        let waiting: Vec<&str> = nodes
            .iter()
            .zip(&found)
            .filter(|(_, f)| f.is_none())
            .map(|(n, _)| n.name.as_str())
            .collect();
        progress.waiting(&format!(
            "booting to maintenance mode: {}",
            waiting.join(", ")
        ));
        if Instant::now() >= deadline {
            bail!(
                "{} did not reach maintenance mode in time; consoles under {}",
                waiting.join(", "),
                layout.dir.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| !l.contains("cairn: status:"))
        .collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// secrets.yaml, controlplane.yaml, worker.yaml (as generated), one
/// `<node>.yaml` per node, and the admin cairnconfig pointed at the first
/// control plane's forwarded apid.
fn write_configs(
    layout: &Layout,
    state: &ClusterState,
    generated: &Generated,
    first: &NodeState,
) -> anyhow::Result<()> {
    let workers = state.nodes.iter().any(|n| n.role == Role::Worker);
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
        let config = configs::node_config(generated, n, !workers)?;
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

/// The kubeconfig from `first`, its server set to the forwarded API port.
fn local_kubeconfig(bytes: &[u8], api_port: u16) -> anyhow::Result<String> {
    let mut doc: serde_yaml::Value =
        serde_yaml::from_slice(bytes).context("the node sent a kubeconfig that is not YAML")?;
    let clusters = doc
        .get_mut("clusters")
        .and_then(serde_yaml::Value::as_sequence_mut)
        .context("the node's kubeconfig has no clusters")?;
    for c in clusters {
        if let Some(cluster) = c
            .get_mut("cluster")
            .and_then(serde_yaml::Value::as_mapping_mut)
        {
            cluster.insert(
                "server".into(),
                format!("https://127.0.0.1:{api_port}").into(),
            );
        }
    }
    Ok(serde_yaml::to_string(&doc)?)
}

/// A Kubernetes client from the kubeconfig text.
async fn kube_client(text: &str) -> anyhow::Result<kube::Client> {
    let kc = kube::config::Kubeconfig::from_yaml(text).context("the kubeconfig is not valid")?;
    let config =
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await
            .context("the kubeconfig cannot be used")?;
    kube::Client::try_from(config).context("building the Kubernetes client")
}

/// What apid says about a node Kubernetes does not list yet.
async fn apid_state(layout: &Layout, node: &NodeState) -> String {
    match version(&mutual(layout, node)).await {
        Ok(_) if node.role == Role::Worker => {
            "joined: apid has its certificate from the control plane; kubelet starting".into()
        }
        Ok(_) => "configured: control plane starting".into(),
        Err(_) => {
            // The worker's own account of its join, from its console.
            let console = launch::console(layout, &node.name);
            let join = console
                .lines()
                .rev()
                .find_map(|l| l.split_once("cairn: join: ").map(|(_, m)| calm(m)));
            match join {
                Some(m) => format!("joining: {m}"),
                None => "configured: waiting for its apid certificate".into(),
            }
        }
    }
}

/// A join message without its retry countdown, so that only a new
/// reason makes a new progress line.
fn calm(message: &str) -> String {
    message
        .split("; asking again")
        .next()
        .unwrap_or(message)
        .trim()
        .to_string()
}

/// Watches the cluster come up: apid per node until Kubernetes lists it,
/// the kubeconfig once the control plane issues it, then Nodes and Pods.
async fn watch_until_up(
    layout: &Layout,
    state: &ClusterState,
    first: &NodeState,
    progress: &mut Progress,
    deadline: Instant,
) -> anyhow::Result<kube::Client> {
    let api_port = first
        .api_port
        .context("the first control plane has no forwarded API port")?;
    let cp = mutual(layout, first);
    let mut client: Option<kube::Client> = None;
    let mut dns_said = false;
    let mut last_error = String::new();
    loop {
        if client.is_none() {
            let fetched = async {
                let session = Session::open(&cp).await?;
                kubeconfig::fetch(&session).await
            };
            if let Ok(bytes) = fetched.await {
                let text = local_kubeconfig(&bytes, api_port)?;
                write_private(&layout.kubeconfig(), text.as_bytes(), true)?;
                progress.step(&format!(
                    "kubeconfig written to {} (API on 127.0.0.1:{api_port})",
                    layout.kubeconfig().display()
                ));
                client = Some(kube_client(&text).await?);
            }
        }
        let status = match &client {
            Some(c) => match wait::fetch(c, &state.nodes).await {
                Ok(s) => Some(s),
                Err(e) => {
                    last_error = format!("the Kubernetes API: {e}");
                    None
                }
            },
            None => None,
        };
        for n in &state.nodes {
            let known = status.as_ref().and_then(|s| s.nodes.get(&n.name));
            match known {
                Some(s) => progress.node(&n.name, s),
                None => {
                    let s = apid_state(layout, n).await;
                    progress.node(&n.name, &s);
                }
            }
        }
        if let Some(s) = &status {
            if s.dns && !dns_said {
                progress.step("cluster DNS running");
                dns_said = true;
            }
            if s.done {
                if let Some(c) = client {
                    return Ok(c);
                }
            }
        }
        progress.waiting(if client.is_none() {
            "waiting for the control plane to issue the kubeconfig"
        } else if status.is_none() {
            "waiting for the Kubernetes API"
        } else {
            "waiting for every node to be Ready with its system Pods"
        });
        for n in &state.nodes {
            if launch::qemu_pid(layout, &n.name).is_none() {
                bail!(
                    "QEMU of {} stopped\n--- last console lines ({}) ---\n{}",
                    n.name,
                    layout.console(&n.name).display(),
                    tail(&launch::console(layout, &n.name), 30)
                );
            }
        }
        if Instant::now() >= deadline {
            bail!(
                "the cluster was not up in time{}; consoles under {}",
                if last_error.is_empty() {
                    String::new()
                } else {
                    format!(" (last: {last_error})")
                },
                layout.dir.display()
            );
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
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

fn print_summary(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_retries_do_not_make_new_lines() {
        assert_eq!(
            calm("waiting for apid's certificate: cannot reach 10.5.0.2:50001: transport error; asking again in 16 s"),
            "waiting for apid's certificate: cannot reach 10.5.0.2:50001: transport error"
        );
    }

    #[test]
    fn the_kubeconfig_points_at_the_forwarded_port() {
        let node = "apiVersion: v1\nkind: Config\nclusters:\n- name: demo\n  cluster:\n    server: https://10.5.0.2:6443\n    certificate-authority-data: Q0E=\n\
            contexts:\n- name: admin@demo\n  context: {cluster: demo, user: admin}\ncurrent-context: admin@demo\n";
        let local = local_kubeconfig(node.as_bytes(), 40123).unwrap();
        let v: serde_yaml::Value = serde_yaml::from_str(&local).unwrap();
        assert_eq!(
            v["clusters"][0]["cluster"]["server"],
            "https://127.0.0.1:40123"
        );
        assert_eq!(
            v["clusters"][0]["cluster"]["certificate-authority-data"],
            "Q0E="
        );
        assert_eq!(v["current-context"], "admin@demo");
    }

    #[tokio::test]
    async fn two_control_planes_are_refused_before_anything_starts() {
        let dir = tempfile::tempdir().unwrap();
        let args = Args {
            controlplanes: 2,
            workers: 1,
            name: "multi".into(),
            memory: 4096,
            memory_workers: 2048,
            cpus: 2,
            image_dir: Some(dir.path().to_path_buf()),
            no_merge: true,
            timeout: Duration::from_secs(1),
        };
        let err = run(args).await.unwrap_err().to_string();
        assert!(err.contains("--controlplanes 2"), "{err}");
        assert!(err.contains("not supported yet"), "{err}");
        assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none());
    }

    #[tokio::test]
    async fn missing_images_are_an_error_before_anything_starts() {
        let dir = tempfile::tempdir().unwrap();
        let args = Args {
            controlplanes: 1,
            workers: 1,
            name: "noimages".into(),
            memory: 4096,
            memory_workers: 2048,
            cpus: 2,
            image_dir: Some(dir.path().join("nothing")),
            no_merge: true,
            timeout: Duration::from_secs(1),
        };
        let err = run(args).await.unwrap_err().to_string();
        assert!(err.contains("metal-amd64.raw is missing"), "{err}");
    }
}
