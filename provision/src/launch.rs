//! Starting and stopping a cluster's processes: the hub of its private
//! network and one daemonized QEMU per node, each known by a pid file in
//! the cluster directory (they outlive the command that started them).
//!
//! A pid is trusted only while `/proc/<pid>` still shows the program that
//! wrote it (QEMU, or the hub with this cluster's network directory on its
//! command line): a pid reused by something else is never signalled.

use std::ffi::OsString;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use regex::Regex;

use crate::cluster::{Layout, NodeState, Role, APISERVER_PORT, JOIN_PORT, NODE_DISK_GIB};
use crate::images::Images;
use crate::qemu::{VmConfig, VmError, QEMU};
use crate::{Firmware, FINGERPRINT_LINE, MAINTENANCE_BANNER};

#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error(transparent)]
    Vm(#[from] VmError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("QEMU for {node} did not start ({status}):\n{log}")]
    QemuFailed {
        node: String,
        status: std::process::ExitStatus,
        log: String,
    },
    #[error("the network hub did not start: {detail} (log: {log})")]
    Hub { detail: String, log: PathBuf },
}

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> LaunchError {
    let what = what.into();
    move |source| LaunchError::Io { what, source }
}

/// QEMU's arguments for the private NIC of `node`, on the hub's network.
pub fn private_nic_args(layout: &Layout, node: &NodeState) -> Vec<String> {
    let path = |p: PathBuf| p.display().to_string().replace(',', ",,");
    vec![
        "-netdev".into(),
        format!(
            "dgram,id=priv,local.type=unix,local.path={},remote.type=unix,remote.path={}",
            path(layout.node_socket(&node.name)),
            path(layout.hub_socket())
        ),
        "-device".into(),
        format!("virtio-net-pci,netdev=priv,mac={}", node.mac),
    ]
}

/// The VM of `node`: the raw image behind a qcow2 overlay, QEMU's user
/// network first (apid, and on control planes the Kubernetes API and the
/// join port, forwarded to 127.0.0.1), the private NIC second.
pub fn vm_config(images: &Images, layout: &Layout, node: &NodeState) -> Result<VmConfig, VmError> {
    let mut c = VmConfig::disk(&node.name, images, Firmware::SeaBios)?;
    c.disk_gib = Some(NODE_DISK_GIB);
    c.memory_mib = node.memory_mib;
    c.cpus = node.cpus;
    c.apid_port = Some(node.apid_port);
    if let Some(p) = node.api_port {
        c.forwards.push((p, APISERVER_PORT));
    }
    if let Some(p) = node.join_port {
        c.forwards.push((p, JOIN_PORT));
    }
    c.extra_args = private_nic_args(layout, node);
    Ok(c)
}

/// Picks the host ports of `node`: for the first control plane 50000 and
/// 6443 when free (what a user expects), else free ones.
pub fn assign_ports(node: &mut NodeState, first: bool) -> Result<(), LaunchError> {
    let port = |preferred: Option<u16>| match preferred {
        Some(p) => crate::ports::preferred_or_free(p),
        None => crate::ports::free_port(),
    };
    let err = io_err("finding a free port on 127.0.0.1");
    let apid_pref = first.then_some(config::constants::APID_PORT);
    node.apid_port = port(apid_pref).map_err(err)?;
    if node.role == Role::Controlplane {
        let api_pref = first.then_some(APISERVER_PORT);
        node.api_port = Some(port(api_pref).map_err(io_err("finding a free port on 127.0.0.1"))?);
        node.join_port =
            Some(crate::ports::free_port().map_err(io_err("finding a free port on 127.0.0.1"))?);
    }
    Ok(())
}

/// Starts `node`'s QEMU in the background (`-daemonize`, pid file in its
/// directory) and returns its pid.
/// `nice` is added to QEMU's niceness (0: as this process; more: a lower
/// CPU priority, which every thread of the VM inherits).
pub fn start_node(
    images: &Images,
    layout: &Layout,
    node: &NodeState,
    nice: i32,
) -> Result<i32, LaunchError> {
    let dir = layout.node_dir(&node.name);
    std::fs::create_dir_all(&dir).map_err(io_err(format!("creating {}", dir.display())))?;
    let _ = std::fs::remove_file(layout.node_socket(&node.name));
    let config = vm_config(images, layout, node)?;
    let console = layout.console(&node.name);
    let pidfile = layout.qemu_pid(&node.name);
    let mut args: Vec<OsString> = config.prepare(&dir, &console, node.apid_port)?;
    args.extend(["-daemonize".into(), "-pidfile".into(), pidfile.into()]);
    let log_path = layout.qemu_log(&node.name);
    let log = std::fs::File::create(&log_path)
        .map_err(io_err(format!("creating {}", log_path.display())))?;
    let mut qemu = Command::new(QEMU);
    if nice != 0 {
        // SAFETY: nice(2) is one system call, async-signal-safe; the child
        // touches no memory shared with the parent.
        unsafe {
            qemu.pre_exec(move || {
                rustix::process::nice(nice)?;
                Ok(())
            });
        }
    }
    let status = qemu
        .args(&args)
        .stdin(Stdio::null())
        .stdout(
            log.try_clone()
                .map_err(io_err("duplicating a file handle"))?,
        )
        .stderr(log)
        .status()
        .map_err(io_err(format!("starting {QEMU}")))?;
    if !status.success() {
        return Err(LaunchError::QemuFailed {
            node: node.name.clone(),
            status,
            log: std::fs::read_to_string(&log_path).unwrap_or_default(),
        });
    }
    qemu_pid(layout, &node.name).ok_or_else(|| LaunchError::QemuFailed {
        node: node.name.clone(),
        status,
        log: "QEMU daemonized, but its pid file names no running QEMU".into(),
    })
}

/// Starts the hub with `command` (a program that runs
/// [`crate::hub::Hub::serve`] on the network directory, e.g. `cairnctl
/// cluster hub <dir>`), detached in its own process group, its output in
/// `net/hub.log`; waits until its socket exists and writes `net/hub.pid`.
pub fn start_hub(layout: &Layout, mut command: Command) -> Result<i32, LaunchError> {
    let net = layout.net_dir();
    std::fs::create_dir_all(&net).map_err(io_err(format!("creating {}", net.display())))?;
    let _ = std::fs::remove_file(layout.hub_socket());
    let log_path = layout.hub_log();
    let log = std::fs::File::create(&log_path)
        .map_err(io_err(format!("creating {}", log_path.display())))?;
    let mut child = command
        .stdin(Stdio::null())
        .stdout(
            log.try_clone()
                .map_err(io_err("duplicating a file handle"))?,
        )
        .stderr(log)
        .process_group(0)
        .spawn()
        .map_err(io_err("starting the network hub"))?;
    let pid = child.id() as i32;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !layout.hub_socket().exists() {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(LaunchError::Hub {
                detail: format!(
                    "it exited ({status}): {}",
                    std::fs::read_to_string(&log_path)
                        .unwrap_or_default()
                        .trim()
                ),
                log: log_path,
            });
        }
        if Instant::now() > deadline {
            return Err(LaunchError::Hub {
                detail: format!("{} did not appear in 10 s", layout.hub_socket().display()),
                log: log_path,
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    std::fs::write(layout.hub_pid(), format!("{pid}\n"))
        .map_err(io_err(format!("writing {}", layout.hub_pid().display())))?;
    Ok(pid)
}

fn read_pid(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Whether `pid` runs (not a zombie) and its command line passes `is_ours`.
fn alive(pid: i32, is_ours: impl Fn(&str, &[String]) -> bool) -> bool {
    let Ok(comm) = std::fs::read_to_string(format!("/proc/{pid}/comm")) else {
        return false;
    };
    let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(") ").map(|(_, rest)| rest.starts_with('Z')))
        .unwrap_or(true);
    let cmdline: Vec<String> = std::fs::read(format!("/proc/{pid}/cmdline"))
        .unwrap_or_default()
        .split(|b| *b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    !zombie && is_ours(comm.trim(), &cmdline)
}

/// The pid of `node`'s QEMU, if it runs.
pub fn qemu_pid(layout: &Layout, node: &str) -> Option<i32> {
    let pid = read_pid(&layout.qemu_pid(node))?;
    let pidfile = layout.qemu_pid(node).display().to_string();
    alive(pid, |comm, cmdline| {
        comm.starts_with("qemu-system") && cmdline.contains(&pidfile)
    })
    .then_some(pid)
}

/// The pid of the cluster's hub, if it runs.
pub fn hub_pid(layout: &Layout) -> Option<i32> {
    let pid = read_pid(&layout.hub_pid())?;
    let net = layout.net_dir().display().to_string();
    alive(pid, |_, cmdline| cmdline.contains(&net)).then_some(pid)
}

/// Sends SIGTERM, waits up to `grace`, then SIGKILL; returns whether the
/// process is gone.
fn stop_pid(pid: i32, grace: Duration, still: impl Fn() -> bool) -> bool {
    let Some(p) = rustix::process::Pid::from_raw(pid) else {
        return true;
    };
    let _ = rustix::process::kill_process(p, rustix::process::Signal::TERM);
    let deadline = Instant::now() + grace;
    while still() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    if still() {
        let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
        let deadline = Instant::now() + Duration::from_secs(5);
        while still() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    !still()
}

/// What was stopped.
#[derive(Debug, Default)]
pub struct Stopped {
    /// `(node, pid)` of each QEMU stopped.
    pub nodes: Vec<(String, i32)>,
    pub hub: Option<i32>,
}

/// Stops every node's QEMU named by `nodes`, then the hub.
pub fn stop(layout: &Layout, nodes: &[String]) -> Stopped {
    let mut stopped = Stopped::default();
    for name in nodes {
        if let Some(pid) = qemu_pid(layout, name) {
            stop_pid(pid, Duration::from_secs(10), || {
                qemu_pid(layout, name).is_some()
            });
            stopped.nodes.push((name.clone(), pid));
        }
    }
    if let Some(pid) = hub_pid(layout) {
        stop_pid(pid, Duration::from_secs(5), || hub_pid(layout).is_some());
        stopped.hub = Some(pid);
    }
    stopped
}

/// Node directories under `layout`, also of nodes a failed create did not
/// record: every directory holding a `qemu.pid`.
pub fn node_dirs(layout: &Layout) -> Vec<String> {
    std::fs::read_dir(&layout.dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().join("qemu.pid").is_file())
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .collect()
}

/// apid's certificate fingerprint (`sha256:<hex>`) as the console of a node
/// in maintenance mode announced it: the last fingerprint line before the
/// maintenance banner; `None` until the banner is there.
pub fn maintenance_fingerprint(console: &str) -> Option<String> {
    let fingerprint = Regex::new(FINGERPRINT_LINE).expect("FINGERPRINT_LINE is a valid pattern");
    let banner = Regex::new(MAINTENANCE_BANNER).expect("MAINTENANCE_BANNER is a valid pattern");
    let mut last = None;
    for line in console.lines() {
        if let Some(c) = fingerprint.captures(line) {
            last = Some(c[1].to_string());
        }
        if banner.is_match(line) {
            return last;
        }
    }
    None
}

/// The console of `node` so far (`\r` removed).
pub fn console(layout: &Layout, node: &str) -> String {
    std::fs::read(layout.console(node))
        .map(|b| String::from_utf8_lossy(&b).replace('\r', ""))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::{plan, Request};

    fn nodes() -> Vec<NodeState> {
        plan(&Request {
            name: "demo".into(),
            controlplanes: 1,
            workers: 1,
            controlplane_memory_mib: 4096,
            worker_memory_mib: 2048,
            cpus: 2,
        })
        .unwrap()
    }

    #[test]
    fn each_vm_has_user_networking_with_forwards_and_a_private_nic_on_the_hub() {
        let layout = Layout::new("/c/demo");
        let mut n = nodes();
        n[0].apid_port = 50000;
        n[0].api_port = Some(6443);
        n[0].join_port = Some(41001);
        n[1].apid_port = 41002;
        let images = Images {
            dir: PathBuf::from("/o"),
        };
        let cp = vm_config(&images, &layout, &n[0]);
        // No image here: the config is built from the args alone.
        assert!(cp.is_err());
        let args = private_nic_args(&layout, &n[1]).join(" ");
        assert_eq!(
            args,
            "-netdev dgram,id=priv,local.type=unix,local.path=/c/demo/net/worker-1.sock,\
             remote.type=unix,remote.path=/c/demo/net/hub.sock \
             -device virtio-net-pci,netdev=priv,mac=52:54:00:ca:00:0a"
        );
    }

    #[test]
    fn the_fingerprint_is_the_one_announced_with_maintenance_mode() {
        let a = "a".repeat(64);
        let b = "b".repeat(64);
        let console = format!(
            "[    1.0] cairn: apid certificate sha256:{a}\n\
             [    1.1] cairn: apid certificate sha256:{b}\n\
             [    1.2] cairn: maintenance mode: apid listening on :50000\n"
        );
        assert_eq!(
            maintenance_fingerprint(&console),
            Some(format!("sha256:{b}"))
        );
        let early = format!("[    1.0] cairn: apid certificate sha256:{a}\n");
        assert_eq!(maintenance_fingerprint(&early), None, "no banner yet");
    }

    #[test]
    fn pids_of_other_programs_are_not_ours() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        std::fs::create_dir_all(layout.node_dir("cp-1")).unwrap();
        std::fs::create_dir_all(layout.net_dir()).unwrap();
        // This test process is alive, but it is neither QEMU nor the hub.
        let me = std::process::id().to_string();
        std::fs::write(layout.qemu_pid("cp-1"), &me).unwrap();
        std::fs::write(layout.hub_pid(), &me).unwrap();
        assert_eq!(qemu_pid(&layout, "cp-1"), None);
        assert_eq!(hub_pid(&layout), None);
        assert_eq!(node_dirs(&layout), ["cp-1"]);
        let s = stop(&layout, &["cp-1".into()]);
        assert!(s.nodes.is_empty() && s.hub.is_none());
    }

    #[test]
    fn a_hub_process_is_started_detached_and_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        // A stand-in for `cairnctl cluster hub <dir>`: makes the socket
        // file and waits, with the network directory on its command line.
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg("touch \"$0/hub.sock\"; while :; do sleep 1; done")
            .arg(layout.net_dir());
        let pid = start_hub(&layout, cmd).unwrap();
        assert_eq!(hub_pid(&layout), Some(pid));
        let s = stop(&layout, &[]);
        assert_eq!(s.hub, Some(pid));
        assert_eq!(hub_pid(&layout), None);
    }
}
