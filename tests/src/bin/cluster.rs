//! `make cluster` / `make cluster-down`: one local Cairn node in QEMU.
//!
//! `up` boots the raw disk image through a qcow2 overlay in a state
//! directory (`$CAIRN_CACHE/cluster`, by default `~/.cache/cairn/cluster`),
//! forwards apid (127.0.0.1:50000 when free) and the Kubernetes API
//! (127.0.0.1:6443 when free), leaves QEMU running in the background with a
//! pidfile, and waits until the node answers Version in maintenance mode.
//! Then, as a user would by hand: generates a cluster, applies the
//! control-plane config, bootstraps etcd, writes the admin kubeconfig
//! (pointed at the forwarded API port) into the state directory and waits,
//! with progress, until the node is Ready and the system Pods run.
//! `--no-kubernetes` stops at maintenance mode.
//! `down` stops it and removes the state.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use cairn_tests::{kube, ports, Firmware, Images, VmConfig};

const UP_TIMEOUT: Duration = Duration::from_secs(300);
const KUBERNETES_PORT: u16 = 6443;
/// How long each Kubernetes bring-up step may take under TCG.
const BRING_UP_TIMEOUT: Duration = Duration::from_secs(1800);

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let state = state_dir();
    match args.first().map(String::as_str) {
        Some("up") => up(
            &state,
            args[1..].iter().any(|a| a == "--uefi"),
            !args[1..].iter().any(|a| a == "--no-kubernetes"),
        ),
        Some("down") => down(&state),
        _ => {
            eprintln!(
                "usage: cluster up [--uefi] [--no-kubernetes] | cluster down\n  state: {}",
                state.display()
            );
            std::process::exit(2);
        }
    }
}

fn state_dir() -> PathBuf {
    std::env::var_os("CAIRN_CACHE")
        .map(PathBuf::from)
        .or_else(|| dirs::cache_dir().map(|d| d.join("cairn")))
        .unwrap_or_else(|| PathBuf::from(".cache/cairn"))
        .join("cluster")
}

struct Node {
    pid: i32,
    apid_port: u16,
    kubernetes_port: u16,
}

fn up(state: &Path, uefi: bool, kubernetes: bool) -> anyhow::Result<()> {
    if let Some(node) = running(state)? {
        println!(
            "a node is already running (pid {}); `make cluster-down` stops it",
            node.pid
        );
        print_next(state, &node);
        return Ok(());
    }
    let images = Images::locate();
    let firmware = if uefi {
        Firmware::Ovmf
    } else {
        Firmware::SeaBios
    };
    let mut config = VmConfig::disk("cluster", &images, firmware)?;
    config.disk_gib = Some(kube::NODE_DISK_GIB);
    // The control plane, etcd and containerd need more than maintenance mode.
    config.memory_mib = 4096;
    // Leftovers of a node that died: start from a fresh overlay.
    let _ = std::fs::remove_dir_all(state);
    std::fs::create_dir_all(state).with_context(|| format!("creating {}", state.display()))?;

    let apid_port = ports::preferred_or_free(config::constants::APID_PORT)?;
    let kubernetes_port = ports::preferred_or_free(KUBERNETES_PORT)?;
    config.forwards.push((kubernetes_port, KUBERNETES_PORT));
    let console = state.join("console.log");
    let pidfile = state.join("qemu.pid");
    let mut args = config.prepare(state, &console, apid_port)?;
    args.extend([
        "-daemonize".into(),
        "-pidfile".into(),
        pidfile.clone().into(),
    ]);
    let log = std::fs::File::create(state.join("qemu.log"))?;
    let status = Command::new(cairn_tests::qemu::QEMU)
        .args(&args)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .status()
        .context("starting qemu-system-x86_64")?;
    if !status.success() {
        let log = std::fs::read_to_string(state.join("qemu.log")).unwrap_or_default();
        bail!("QEMU did not start ({status}):\n{log}");
    }
    std::fs::write(
        state.join("ports"),
        format!("apid={apid_port}\nkubernetes={kubernetes_port}\n"),
    )?;
    let node = running(state)?.context("QEMU started but its pidfile names no live process")?;

    let started = Instant::now();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let mut last_report = 0;
    let version = loop {
        if let Ok(v) = runtime.block_on(cairn_tests::api::version_insecure(apid_port)) {
            break v;
        }
        if running(state)?.is_none() {
            bail!("QEMU exited during boot; console: {}", console.display());
        }
        if started.elapsed() > UP_TIMEOUT {
            bail!(
                "no answer on 127.0.0.1:{apid_port} after {} s; console: {}\n(the node keeps running; `make cluster-down` stops it)",
                UP_TIMEOUT.as_secs(),
                console.display()
            );
        }
        if tty {
            eprint!(
                "\rbooting Cairn in QEMU (TCG): {:>3} s, waiting for maintenance mode",
                started.elapsed().as_secs()
            );
            let _ = std::io::stderr().flush();
        } else if started.elapsed().as_secs() >= last_report + 10 {
            last_report = started.elapsed().as_secs();
            eprintln!("booting: {last_report} s, waiting for maintenance mode");
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    if tty {
        eprintln!();
    }
    println!(
        "node up in maintenance mode after {} s: Cairn {} (build {}), kernel {}",
        started.elapsed().as_secs(),
        version.version,
        version.build_id,
        version.kernel
    );
    if kubernetes {
        bring_up_kubernetes(state, &images, &node, started)?;
    }
    print_next(state, &node);
    Ok(())
}

/// Configure, bootstrap, kubeconfig, then wait for Ready with progress.
fn bring_up_kubernetes(
    state: &Path,
    images: &Images,
    node: &Node,
    started: Instant,
) -> anyhow::Result<()> {
    let say = |m: &str| eprintln!("[{:>4} s] {m}", started.elapsed().as_secs());
    let addr = format!("127.0.0.1:{}", node.apid_port);
    say("applying a generated control-plane config (cluster \"cairn\")");
    let n = kube::Node::configure(&state.join("cluster"), "cairn", &addr)?;
    say("bootstrapping etcd");
    n.bootstrap()?;
    let kubectl = kube::Kubectl::new(&images.dir, &n.kubeconfig);
    say("fetching the admin kubeconfig (once the node has issued it)");
    kube::eventually(
        "cairnctl kubeconfig",
        BRING_UP_TIMEOUT,
        Duration::from_secs(5),
        || n.fetch_kubeconfig(&kubectl, node.kubernetes_port),
    )?;
    say("waiting for the Kubernetes API and the node to be Ready (minutes under TCG)");
    let mut last = String::new();
    kube::eventually(
        "node Ready",
        BRING_UP_TIMEOUT,
        Duration::from_secs(10),
        || {
            let ready = kubectl.ready_nodes();
            let now = match &ready {
                Ok(n) if !n.is_empty() => format!("node Ready: {}", n.join(", ")),
                Ok(_) => "API up; node not Ready yet".to_string(),
                Err(_) => "API not answering yet".to_string(),
            };
            if now != last {
                say(&now);
                last = now;
            }
            anyhow::ensure!(ready.is_ok_and(|n| !n.is_empty()), "no Ready node");
            Ok(())
        },
    )?;
    let mut progress = |m: &str| say(m);
    kubectl.wait_pods_ready(
        "kube-system",
        kube::SYSTEM_PODS,
        BRING_UP_TIMEOUT,
        &mut progress,
    )?;
    say("control plane, kube-proxy and cluster DNS are running");
    Ok(())
}

fn print_next(state: &Path, node: &Node) {
    let apid = format!("127.0.0.1:{}", node.apid_port);
    let cluster = state.join("cluster");
    let cairnconfig = cluster.join("cairnconfig");
    let kubeconfig = cluster.join("kubeconfig");
    println!("  apid:         {apid}");
    println!("  kubernetes:   https://127.0.0.1:{}", node.kubernetes_port);
    println!("  console:      {}", state.join("console.log").display());
    println!();
    println!("next:");
    // The programs by their paths when `make cluster` put them in the
    // output directory (cairnctl beside kubectl), so the lines run as
    // printed without anything on PATH.
    let out = Images::locate().dir;
    let cairnctl = if out.join("cairnctl").is_file() {
        out.join("cairnctl").display().to_string()
    } else {
        "cairnctl".into()
    };
    if kubeconfig.is_file() {
        let kubectl = out.join("kubectl");
        println!("  export KUBECONFIG={}", kubeconfig.display());
        println!(
            "  {} get nodes",
            if kubectl.is_file() {
                kubectl.display().to_string()
            } else {
                "kubectl".into()
            }
        );
        println!(
            "  {cairnctl} --cairnconfig {} services",
            cairnconfig.display()
        );
    } else {
        println!("  {cairnctl} -n {apid} --insecure version");
    }
    println!("  make cluster-down");
}

/// The node described by the state directory, if its QEMU still runs.
fn running(state: &Path) -> anyhow::Result<Option<Node>> {
    let Ok(pid) = std::fs::read_to_string(state.join("qemu.pid")) else {
        return Ok(None);
    };
    let pid: i32 = pid.trim().parse().context("qemu.pid")?;
    // The pid may have been reused by something else since: check it is QEMU.
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    if !comm.starts_with("qemu-system") || is_zombie(pid) {
        return Ok(None);
    }
    let ports = std::fs::read_to_string(state.join("ports")).unwrap_or_default();
    let port = |key: &str, default: u16| {
        ports
            .lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('=')?.parse().ok())
            .unwrap_or(default)
    };
    Ok(Some(Node {
        pid,
        apid_port: port("apid", config::constants::APID_PORT),
        kubernetes_port: port("kubernetes", KUBERNETES_PORT),
    }))
}

/// A process that has exited but was not reaped yet (a daemonized QEMU's
/// parent is whatever init this machine runs).
fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(") ").map(|(_, rest)| rest.starts_with('Z')))
        .unwrap_or(false)
}

fn down(state: &Path) -> anyhow::Result<()> {
    match running(state)? {
        Some(node) => {
            let pid = rustix::process::Pid::from_raw(node.pid).context("pid")?;
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
            let deadline = Instant::now() + Duration::from_secs(10);
            while running(state)?.is_some() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
            if running(state)?.is_some() {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
            println!("stopped the node (QEMU pid {})", node.pid);
        }
        None => println!("no node running"),
    }
    if state.exists() {
        std::fs::remove_dir_all(state).with_context(|| format!("removing {}", state.display()))?;
        println!("removed {}", state.display());
    }
    Ok(())
}
