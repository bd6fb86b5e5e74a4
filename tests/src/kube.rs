//! Bringing up Kubernetes on a booted node the way a user does (cairnctl
//! gen/apply-config/bootstrap/kubeconfig, then the host's kubectl), shared
//! by the end-to-end test (`tests/kubernetes.rs`), `make cluster` and the
//! Kubernetes benchmark.
//!
//! The node sits behind QEMU's user network: the cluster endpoint in the
//! config is the guest's own address (what the node and its Pods use), and
//! the kubeconfig written on the host points at the forwarded port instead
//! (the API server's certificate names 127.0.0.1).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::cairnctl;

/// The guest's address on QEMU's user network: the cluster endpoint.
pub const GUEST: &str = "10.0.2.15";
/// The Kubernetes API port in the guest.
pub const APISERVER_PORT: u16 = 6443;
/// The test Pod image the payload carries.
pub const TESTPOD_IMAGE: &str = "cairn.local/cairn-testpod:latest";
/// Where the testpod program is in its image.
pub const TESTPOD: &str = "/usr/local/bin/testpod";

/// The files of a configured node, all in one directory.
#[derive(Debug, Clone)]
pub struct Node {
    pub dir: PathBuf,
    /// `127.0.0.1:<forwarded apid port>`.
    pub addr: String,
    /// The admin cairnconfig, its endpoint set to `addr`.
    pub cairnconfig: PathBuf,
    /// The admin kubeconfig, its server set to the forwarded API port.
    pub kubeconfig: PathBuf,
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn ctl_ok(args: &[&str]) -> anyhow::Result<String> {
    let out = cairnctl::run(args);
    if !out.status.success() {
        bail!(
            "cairnctl {} failed ({}):\n{}",
            args.join(" "),
            out.status,
            text(&out)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Polls `attempt` every `every` until it returns Ok, or fails with its
/// last error after `timeout`.
pub fn eventually<T>(
    what: &str,
    timeout: Duration,
    every: Duration,
    mut attempt: impl FnMut() -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        match attempt() {
            Ok(v) => return Ok(v),
            Err(e) if Instant::now() >= deadline => {
                return Err(e.context(format!("{what}: not done after {}s", timeout.as_secs())))
            }
            Err(_) => std::thread::sleep(every),
        }
    }
}

impl Node {
    /// Generates a cluster named `name` into `dir`, points the admin
    /// cairnconfig at `addr`, applies the control-plane config to the node
    /// in maintenance mode (no reboot) and waits until it answers mTLS.
    pub fn configure(dir: &Path, name: &str, addr: &str) -> anyhow::Result<Node> {
        std::fs::create_dir_all(dir)?;
        let d = dir.to_str().context("state directory path")?;
        let secrets = format!("{d}/secrets.yaml");
        ctl_ok(&["gen", "secrets", "-o", &secrets, "--force"])?;
        ctl_ok(&[
            "gen",
            "config",
            name,
            &format!("https://{GUEST}:{APISERVER_PORT}"),
            "--with-secrets",
            &secrets,
            "--config-patch-control-plane",
            // No time sync: QEMU's clock starts from the host's, and no
            // NTP server is in reach here (etcd and the kubelet would wait
            // for one). One node: ordinary Pods run on the control plane.
            "machine: {certSans: [127.0.0.1], time: {disabled: true}}\ncluster: {allowSchedulingOnControlPlanes: true}",
            "--force",
            "-o",
            d,
        ])?;
        let node = Node {
            dir: dir.to_path_buf(),
            addr: addr.to_string(),
            cairnconfig: dir.join("cairnconfig"),
            kubeconfig: dir.join("kubeconfig"),
        };
        ctl_ok(&["--cairnconfig", node.cfg(), "config", "endpoint", addr])?;
        ctl_ok(&[
            "-n",
            addr,
            "--insecure",
            "apply-config",
            "--file",
            &format!("{d}/controlplane.yaml"),
            "--mode",
            "no-reboot",
        ])?;
        eventually(
            "the node answering mutual TLS",
            Duration::from_secs(120),
            Duration::from_secs(2),
            || node.ctl(&["version"]).map(drop),
        )?;
        Ok(node)
    }

    fn cfg(&self) -> &str {
        self.cairnconfig.to_str().unwrap_or_default()
    }

    /// `cairnctl --cairnconfig <admin> -n <addr> <args>`, stdout on success.
    pub fn ctl(&self, args: &[&str]) -> anyhow::Result<String> {
        let mut argv = vec!["--cairnconfig", self.cfg(), "-n", &self.addr];
        argv.extend_from_slice(args);
        ctl_ok(&argv)
    }

    /// What a failed check prints besides the console: the services, the
    /// Kubernetes containers and the kubelet's last log lines (each one's
    /// error in its place when the node does not answer).
    pub fn diagnostics(&self) -> String {
        let mut out = String::new();
        for args in [
            &["services"][..],
            &["containers", "-k"][..],
            &["logs", "kubelet", "--tail", "40"][..],
        ] {
            let got = self.ctl(args).unwrap_or_else(|e| format!("{e:#}\n"));
            out.push_str(&format!("--- cairnctl {} ---\n{got}", args.join(" ")));
        }
        out
    }

    /// `cairnctl bootstrap`.
    pub fn bootstrap(&self) -> anyhow::Result<String> {
        self.ctl(&["bootstrap"])
    }

    /// Fetches the admin kubeconfig and points it at 127.0.0.1:`api_port`.
    pub fn fetch_kubeconfig(&self, kubectl: &Kubectl, api_port: u16) -> anyhow::Result<()> {
        let path = self.kubeconfig.to_str().context("kubeconfig path")?;
        self.ctl(&["kubeconfig", path, "--force"])?;
        kubectl.point_at(api_port)
    }
}

/// The host's kubectl (built with the payload) with one kubeconfig.
#[derive(Debug, Clone)]
pub struct Kubectl {
    pub bin: PathBuf,
    pub kubeconfig: PathBuf,
}

impl Kubectl {
    /// Points every cluster of the kubeconfig at 127.0.0.1:`api_port` (a
    /// guest's API server forwarded to the host).
    pub fn point_at(&self, api_port: u16) -> anyhow::Result<()> {
        let clusters = self.ok(&["config", "get-clusters"])?;
        for cluster in clusters.lines().skip(1).filter(|l| !l.trim().is_empty()) {
            self.ok(&[
                "config",
                "set-cluster",
                cluster.trim(),
                &format!("--server=https://127.0.0.1:{api_port}"),
            ])?;
        }
        Ok(())
    }

    /// `kubectl` from the images directory (the payload build puts it
    /// there), else from PATH.
    pub fn new(images_dir: &Path, kubeconfig: &Path) -> Kubectl {
        let built = images_dir.join("kubectl");
        Kubectl {
            bin: if built.is_file() {
                built
            } else {
                PathBuf::from("kubectl")
            },
            kubeconfig: kubeconfig.to_path_buf(),
        }
    }

    pub fn run(&self, args: &[&str]) -> Output {
        Command::new(&self.bin)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--request-timeout=30s")
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", self.bin.display()))
    }

    /// stdout of a successful run, else an error with its output.
    pub fn ok(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = self.run(args);
        if !out.status.success() {
            bail!(
                "kubectl {} failed ({}): {}{}",
                args.join(" "),
                out.status,
                text(&out).trim(),
                self.unknown_reason(args, &out)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// kubectl hides the body of an error that is not a Kubernetes Status
    /// ("rejected our request for an unknown reason": a service behind
    /// the API server's proxy said no); the same request at -v=8 shows it.
    fn unknown_reason(&self, args: &[&str], out: &Output) -> String {
        if !text(out).contains("for an unknown reason") {
            return String::new();
        }
        let mut verbose = args.to_vec();
        verbose.push("-v=8");
        let again = self.run(&verbose);
        let bodies: Vec<&str> = std::str::from_utf8(&again.stderr)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("Response Body") || l.contains("Response Status"))
            .collect();
        format!(" (asked again at -v=8: {})", bodies.join(" | "))
    }

    pub fn json(&self, args: &[&str]) -> anyhow::Result<serde_json::Value> {
        let mut argv = args.to_vec();
        argv.extend(["-o", "json"]);
        Ok(serde_json::from_str(&self.ok(&argv)?)?)
    }

    /// `kubectl apply -f` with `yaml`, tried again for up to 5 minutes: on
    /// a young cluster the API server refuses Pods until the token
    /// controller has made their service account's token ("No API token
    /// found for service account"), and apply is idempotent.
    pub fn apply(&self, yaml: &str) -> anyhow::Result<String> {
        let dir = tempfile::tempdir()?;
        let file = dir.path().join("manifest.yaml");
        std::fs::write(&file, yaml)?;
        let path = file.to_str().context("path")?;
        eventually(
            "kubectl apply",
            Duration::from_secs(300),
            Duration::from_secs(5),
            || self.ok(&["apply", "-f", path]),
        )
    }

    /// Names of the nodes whose Ready condition is True.
    pub fn ready_nodes(&self) -> anyhow::Result<Vec<String>> {
        let v = self.json(&["get", "nodes"])?;
        Ok(items(&v)
            .filter(|n| condition(n, "Ready"))
            .filter_map(|n| n["metadata"]["name"].as_str().map(str::to_string))
            .collect())
    }

    /// `namespace/name phase` of every Pod, for progress and failures.
    pub fn pod_phases(&self) -> anyhow::Result<Vec<(String, String, bool)>> {
        let v = self.json(&["get", "pods", "-A"])?;
        Ok(items(&v)
            .map(|p| {
                let name = format!(
                    "{}/{}",
                    p["metadata"]["namespace"].as_str().unwrap_or("?"),
                    p["metadata"]["name"].as_str().unwrap_or("?")
                );
                let phase = p["status"]["phase"]
                    .as_str()
                    .unwrap_or("Unknown")
                    .to_string();
                (name, phase, condition(p, "Ready"))
            })
            .collect())
    }

    /// Waits until, for every prefix, a Pod in `namespace` whose name starts
    /// with it is Running and Ready.
    pub fn wait_pods_ready(
        &self,
        namespace: &str,
        prefixes: &[&str],
        timeout: Duration,
        progress: &mut dyn FnMut(&str),
    ) -> anyhow::Result<()> {
        let mut last = String::new();
        eventually(
            "Pods Running and Ready",
            timeout,
            Duration::from_secs(5),
            || {
                let pods = self.pod_phases()?;
                let missing: Vec<&&str> = prefixes
                    .iter()
                    .filter(|prefix| {
                        !pods.iter().any(|(name, phase, ready)| {
                            name.strip_prefix(&format!("{namespace}/"))
                                .is_some_and(|n| n.starts_with(**prefix))
                                && phase == "Running"
                                && *ready
                        })
                    })
                    .collect();
                let now = format!("waiting for {missing:?} in {namespace}");
                if now != last && !missing.is_empty() {
                    progress(&now);
                    last = now;
                }
                if missing.is_empty() {
                    Ok(())
                } else {
                    bail!("not ready: {missing:?}; pods: {pods:?}")
                }
            },
        )
    }

    /// Runs `testpod <args>` in `pod` until it succeeds; returns its stdout.
    pub fn exec_until_ok(
        &self,
        pod: &str,
        args: &[&str],
        timeout: Duration,
    ) -> anyhow::Result<String> {
        let mut argv = vec!["exec", pod, "--", TESTPOD];
        argv.extend_from_slice(args);
        eventually(
            &format!("testpod {} in {pod}", args.join(" ")),
            timeout,
            Duration::from_secs(5),
            || self.ok(&argv),
        )
    }
}

fn items(list: &serde_json::Value) -> impl Iterator<Item = &serde_json::Value> {
    list["items"].as_array().into_iter().flatten()
}

/// Whether `object.status.conditions` has `kind` with status "True".
fn condition(object: &serde_json::Value, kind: &str) -> bool {
    object["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == kind && c["status"] == "True")
}

/// Boot disk size of a Kubernetes node VM (see the provision crate).
pub use provision::cluster::NODE_DISK_GIB;

/// The control-plane and addon Pods every Cairn cluster runs, by name
/// prefix in kube-system.
pub const SYSTEM_PODS: &[&str] = &[
    "kube-apiserver-",
    "kube-controller-manager-",
    "kube-scheduler-",
    "kube-proxy-",
    "cairn-dns-",
];

/// Two test Pods and a ClusterIP Service in front of the first.
pub fn test_workload() -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: web
  labels: {{app: web}}
spec:
  containers:
  - name: web
    image: {TESTPOD_IMAGE}
    imagePullPolicy: Never
    args: [serve, --port, "8080"]
    env:
    - name: POD_NAME
      valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}
    ports: [{{containerPort: 8080}}]
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: {{app: web}}
  ports: [{{port: 80, targetPort: 8080}}]
---
apiVersion: v1
kind: Pod
metadata:
  name: client
spec:
  containers:
  - name: client
    image: {TESTPOD_IMAGE}
    imagePullPolicy: Never
    args: [serve, --port, "8081"]
"#
    )
}
