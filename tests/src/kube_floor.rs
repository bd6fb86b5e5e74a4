//! The floor of Kubernetes' bring-up (issue 17): the same kernel, payload,
//! certificates, configs and flags as a Cairn node, started by a minimal
//! /init with nothing of Cairn in it (`tests/floor-init/kube-floor-init.c`).
//! What the floor takes to answer `/readyz`, run its static Pods and have a
//! Ready Node is what the machine costs; `make bench` prints Cairn against it.
//!
//! The inputs are copied from a Cairn node that has just come up (so they
//! are the same by construction): its secrets, the kubelet's and
//! containerd's configs, the static Pod manifests, the CNI config, the
//! sysctls it set and the command lines of etcd, containerd and the kubelet
//! (read from `/proc/<pid>/cmdline` through `cairnctl read`). The floor
//! starts everything at once, as early as it can: etcd with containerd, the
//! images the static Pods need imported in parallel (`ctr`), then the
//! kubelet, with the CNI config already in place.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::kube::{self, Kubectl, Node, GUEST};
use crate::{cpio, Boot, Images, Vm, VmConfig};

/// Directories copied from the node, whole: everything the components read.
const COPIED_DIRS: [&str; 4] = [
    "/system/secrets",
    "/system/kubernetes",
    "/system/containerd",
    "/system/cni",
];

/// Single files copied when the node has them.
const COPIED_FILES: [&str; 4] = [
    "/etc/hosts",
    "/etc/resolv.conf",
    "/etc/machine-id",
    "/etc/os-release",
];

/// Kernel parameters whose values the node's are copied from (the ones
/// Cairn or the kubelet set or check).
const SYSCTLS: [&str; 11] = [
    "net/ipv4/ip_forward",
    "net/ipv6/conf/all/forwarding",
    "net/bridge/bridge-nf-call-iptables",
    "net/bridge/bridge-nf-call-ip6tables",
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
    "fs/inotify/max_user_instances",
];

/// The processes the floor starts itself, by executable name, in order.
const SERVICES: [&str; 3] = ["etcd", "containerd", "kubelet"];

/// What the floor needs, collected from a node into a directory: `root/`
/// (the files at their paths), `argv/<service>` (NUL-separated command
/// lines), `sysctls`, `hostname`.
pub struct Inputs {
    pub dir: PathBuf,
}

impl Inputs {
    /// Copies the floor's inputs from `node` (admin access) into `dir`.
    pub fn collect(node: &Node, dir: &Path) -> anyhow::Result<Inputs> {
        let root = dir.join("root");
        std::fs::create_dir_all(&root)?;
        for top in COPIED_DIRS {
            let listing = node.ctl(&["ls", top, "-r", "-o", "json"])?;
            let files: Vec<serde_json::Value> =
                serde_json::from_str(&listing).with_context(|| format!("ls {top} -o json"))?;
            for f in files {
                let name = f["name"].as_str().context("ls: a file without a name")?;
                let mode = f["mode"].as_str().unwrap_or("");
                if !mode.starts_with('-') {
                    continue;
                }
                let path = if name.starts_with('/') {
                    PathBuf::from(name)
                } else {
                    Path::new(top).join(name)
                };
                copy_file(node, &path, &root)?;
            }
        }
        for f in COPIED_FILES {
            // Absent on some nodes; the floor does without.
            let _ = copy_file(node, Path::new(f), &root);
        }
        let mut sysctls = String::new();
        for s in SYSCTLS {
            if let Ok(v) = node.ctl(&["read", &format!("/proc/sys/{s}")]) {
                sysctls.push_str(&format!("/proc/sys/{s} {}\n", v.trim()));
            }
        }
        std::fs::write(dir.join("sysctls"), sysctls)?;
        let hostname = node.ctl(&["read", "/proc/sys/kernel/hostname"])?;
        std::fs::write(dir.join("hostname"), hostname.trim())?;

        let procs: Vec<serde_json::Value> =
            serde_json::from_str(&node.ctl(&["processes", "-o", "json"])?)
                .context("processes -o json")?;
        std::fs::create_dir_all(dir.join("argv"))?;
        for service in SERVICES {
            let pid = procs
                .iter()
                .find(|p| {
                    p["executable"]
                        .as_str()
                        .is_some_and(|e| e.rsplit('/').next() == Some(service))
                })
                .and_then(|p| p["pid"].as_i64())
                .with_context(|| format!("no {service} process on the node"))?;
            let cmdline = node.ctl(&["read", &format!("/proc/{pid}/cmdline")])?;
            std::fs::write(dir.join("argv").join(service), cmdline)?;
        }
        Ok(Inputs {
            dir: dir.to_path_buf(),
        })
    }

    fn argv(&self, service: &str) -> anyhow::Result<Vec<String>> {
        let raw = std::fs::read_to_string(self.dir.join("argv").join(service))?;
        Ok(raw
            .split('\0')
            .filter(|a| !a.is_empty())
            .map(str::to_string)
            .collect())
    }
}

fn copy_file(node: &Node, path: &Path, root: &Path) -> anyhow::Result<()> {
    let p = path.to_str().context("path")?;
    let body = node.ctl(&["read", p])?;
    let dest = root.join(p.trim_start_matches('/'));
    std::fs::create_dir_all(dest.parent().context("parent")?)?;
    std::fs::write(&dest, body)?;
    Ok(())
}

/// The floor's boot media: the /init initramfs and the tree's squashfs.
pub struct Media {
    pub initramfs: PathBuf,
    pub tree: PathBuf,
}

/// Builds the floor's media in `work` from `inputs` and the payload.
pub fn build(images: &Images, inputs: &Inputs, work: &Path) -> anyhow::Result<Media> {
    let src = crate::images::workspace_root().join("tests/floor-init/kube-floor-init.c");
    let init = work.join("init");
    run(Command::new("gcc")
        .args(["-static", "-O2", "-s", "-o"])
        .arg(&init)
        .arg(&src))?;
    let initramfs = work.join("floor-init.cpio");
    std::fs::write(
        &initramfs,
        cpio::Writer::new()
            .file("init", 0o755, &std::fs::read(&init)?)
            .finish(),
    )?;

    let tree = work.join("tree");
    if tree.exists() {
        std::fs::remove_dir_all(&tree)?;
    }
    run(Command::new("cp")
        .arg("-a")
        .arg(inputs.dir.join("root"))
        .arg(&tree))?;
    for d in [
        "proc",
        "sys",
        "dev",
        "run",
        "var",
        "tmp",
        "etc",
        "root",
        "system/payload",
        "floor",
    ] {
        std::fs::create_dir_all(tree.join(d))?;
    }
    // ctr, to import the images, and the loader and libraries it needs.
    let ctr = which("ctr")?;
    install(&ctr, &tree.join("usr/bin/ctr"))?;
    for lib in needed_libraries(&ctr)? {
        install(&lib, &tree.join(lib.strip_prefix("/")?))?;
    }
    let floor = tree.join("floor");
    std::fs::copy(inputs.dir.join("sysctls"), floor.join("sysctls"))?;
    std::fs::copy(inputs.dir.join("hostname"), floor.join("hostname"))?;
    std::fs::write(
        floor.join("net"),
        format!("{GUEST} 255.255.255.0 10.0.2.2\n"),
    )?;
    std::fs::write(
        floor.join("env"),
        format!(
            "PATH={}\nXTABLES_LIBDIR={}\nHOME=/root\n",
            config::constants::payload::PATH,
            config::constants::payload::XTABLES_LIB_DIR
        ),
    )?;
    std::fs::write(floor.join("plan"), plan(images, inputs)?)?;

    let sqsh = work.join("floor.sqsh");
    let _ = std::fs::remove_file(&sqsh);
    run(Command::new("mksquashfs").arg(&tree).arg(&sqsh).args([
        "-noappend",
        "-no-progress",
        "-quiet",
        "-all-root",
    ]))?;
    Ok(Media {
        initramfs,
        tree: sqsh,
    })
}

/// The floor's plan (see the init's comment for its language): etcd and
/// containerd at once; the static Pods' images imported in parallel as soon
/// as containerd answers; then the kubelet.
fn plan(images: &Images, inputs: &Inputs) -> anyhow::Result<String> {
    let tab = |v: &[String]| v.join("\t");
    let mut p = String::from("mark\tplan\n");
    p.push_str(&format!("bg\tetcd\t{}\n", tab(&inputs.argv("etcd")?)));
    p.push_str(&format!(
        "bg\tcontainerd\t{}\n",
        tab(&inputs.argv("containerd")?)
    ));
    p.push_str(&format!(
        "wait\t{}\n",
        config::constants::k8s::CONTAINERD_SOCKET
    ));
    p.push_str("mark\tcontainerd-up\n");
    for (i, tar) in needed_images(images, inputs)?.iter().enumerate() {
        p.push_str(&format!(
            "par\timport-{i}\t/usr/bin/ctr\t-n\tk8s.io\timages\timport\t{}/{tar}\n",
            config::constants::payload::IMAGES_DIR
        ));
    }
    p.push_str("join\nmark\timages-imported\n");
    p.push_str(&format!("bg\tkubelet\t{}\n", tab(&inputs.argv("kubelet")?)));
    p.push_str("mark\tkubelet-started\n");
    Ok(p)
}

/// The payload's image archives the static Pods and the sandbox need: each
/// archive whose reference a manifest or containerd's config names.
fn needed_images(images: &Images, inputs: &Inputs) -> anyhow::Result<Vec<String>> {
    let refs = Command::new("unsquashfs")
        .arg("-cat")
        .arg(images.dir.join("payload.sqsh"))
        .arg("images/refs.txt")
        .output()
        .context("unsquashfs -cat payload.sqsh images/refs.txt")?;
    anyhow::ensure!(refs.status.success(), "unsquashfs: cannot read refs.txt");
    let mut named = String::new();
    let root = inputs.dir.join("root");
    for e in
        std::fs::read_dir(root.join(config::constants::k8s::MANIFESTS_DIR.trim_start_matches('/')))?
    {
        named.push_str(&std::fs::read_to_string(e?.path())?);
    }
    // The sandbox image.
    named.push_str(&std::fs::read_to_string(root.join(
        config::constants::k8s::CONTAINERD_CONFIG.trim_start_matches('/'),
    ))?);
    let tars: BTreeSet<String> = String::from_utf8_lossy(&refs.stdout)
        .lines()
        .filter_map(|l| l.split_once(' '))
        .filter(|(_, r)| named.contains(r.trim()))
        .map(|(tar, _)| tar.to_string())
        .collect();
    anyhow::ensure!(
        !tars.is_empty(),
        "no payload image is named by the manifests"
    );
    Ok(tars.into_iter().collect())
}

/// When the floor reached each point, in seconds after its /init started.
#[derive(Debug, Clone, Copy)]
pub struct Times {
    /// QEMU started → /init (the kernel's part, for reboot's floor).
    pub kernel: f64,
    pub api_ready: f64,
    pub static_pods: f64,
    pub node_ready: f64,
}

/// Boots the floor and measures it, with the node's admin kubeconfig (the
/// same CA and API server certificate, so it works against the floor too).
pub fn measure(
    name: &str,
    images: &Images,
    media: &Media,
    inputs: &Inputs,
    memory_mib: u32,
) -> anyhow::Result<Times> {
    let kubeconfig = inputs
        .dir
        .join("root")
        .join(config::constants::k8s::ADMIN_KUBECONFIG.trim_start_matches('/'));
    let api_port = crate::ports::free_port()?;
    let mut config = VmConfig::direct(name, images, "")?;
    config.boot = Boot::Direct {
        kernel: images.kernel()?,
        initrd: media.initramfs.clone(),
        append: "console=ttyS0 panic=-1".into(),
    };
    config.memory_mib = memory_mib;
    config.forwards.push((api_port, kube::APISERVER_PORT));
    for disk in [images.dir.join("payload.sqsh"), media.tree.clone()] {
        config.extra_args.extend([
            "-drive".into(),
            format!("file={},format=raw,if=virtio,readonly=on", disk.display()),
        ]);
    }
    let dir = tempfile::tempdir()?;
    let kc = dir.path().join("kubeconfig");
    std::fs::copy(&kubeconfig, &kc)?;
    let kubectl = Kubectl::new(&images.dir, &kc);
    kubectl.point_at(api_port)?;

    let mut vm = Vm::start(&config)?;
    vm.expect("floor: init at", Duration::from_secs(120))?;
    let t0 = Instant::now();
    let kernel = t0.duration_since(vm.started).as_secs_f64();
    let step = Duration::from_secs(900);
    let every = Duration::from_secs(1);
    let failed =
        |vm: &Vm, e: anyhow::Error| e.context(format!("console:\n{}", vm.console_tail(60)));
    kube::eventually("floor: /readyz", step, every, || {
        kubectl.ok(&["get", "--raw", "/readyz"]).map(drop)
    })
    .map_err(|e| failed(&vm, e))?;
    let api_ready = t0.elapsed().as_secs_f64();
    let mut static_pods = None;
    let mut node_ready = None;
    kube::eventually(
        "floor: static Pods running, Node Ready",
        step,
        every,
        || {
            if static_pods.is_none() {
                let running = kubectl
                    .pod_phases()?
                    .iter()
                    .filter(|(n, phase, _)| {
                        n.starts_with("kube-system/kube-") && phase == "Running"
                    })
                    .count();
                if running >= 3 {
                    static_pods = Some(t0.elapsed().as_secs_f64());
                }
            }
            if node_ready.is_none() && !kubectl.ready_nodes()?.is_empty() {
                node_ready = Some(t0.elapsed().as_secs_f64());
            }
            anyhow::ensure!(static_pods.is_some() && node_ready.is_some(), "not yet");
            Ok(())
        },
    )
    .map_err(|e| failed(&vm, e))?;
    vm.kill();
    Ok(Times {
        kernel,
        api_ready,
        static_pods: static_pods.unwrap_or_default(),
        node_ready: node_ready.unwrap_or_default(),
    })
}

fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

fn which(program: &str) -> anyhow::Result<PathBuf> {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
        .with_context(|| format!("{program} is not on PATH (Debian: containerd)"))
}

/// The shared libraries (and the loader) `elf` loads, from `ldd`.
fn needed_libraries(elf: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let out = Command::new("ldd").arg(elf).output()?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let path = l.split("=>").last()?.split_whitespace().next()?;
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect())
}

fn install(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to.parent().context("parent")?)?;
    std::fs::copy(from, to).with_context(|| format!("copying {}", from.display()))?;
    Ok(())
}
