//! Configured nodes for the network and time VM tests: one generated
//! cluster (secrets), a control-plane config per node with a machine
//! patch, applied over maintenance mode with `cairnctl apply-config
//! --insecure`, then reached over mutual TLS through the forwarded port.

use std::path::PathBuf;
use std::process::Output;
use std::time::{Duration, Instant};

use crate::{cairnctl, Vm, VmConfig, MAINTENANCE_BANNER};

/// The cluster endpoint every generated config names (QEMU's user network).
pub const ENDPOINT: &str = "https://10.0.2.15:6443";

/// stdout and stderr of a cairnctl run, for messages.
pub fn text(out: &Output) -> String {
    format!(
        "({})\n--- stdout ---\n{}--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Polls `check` every second until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Generated secrets shared by every node of a test.
pub struct Cluster {
    pub dir: tempfile::TempDir,
    secrets: PathBuf,
}

impl Cluster {
    pub fn generate() -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let secrets = dir.path().join("secrets.yaml");
        cairnctl::run_ok(&["gen", "secrets", "-o", secrets.to_str().unwrap()]);
        Cluster { dir, secrets }
    }

    /// A control-plane config for node `name`: `machine_patch` is the
    /// inside of `machine: {...}` (127.0.0.1 is always in apid's SANs).
    /// Returns the config and the admin cairnconfig.
    pub fn config(&self, name: &str, machine_patch: &str) -> (PathBuf, PathBuf) {
        self.config_for(name, ENDPOINT, machine_patch)
    }

    /// [`Cluster::config`] naming another control-plane `endpoint`.
    pub fn config_for(
        &self,
        name: &str,
        endpoint: &str,
        machine_patch: &str,
    ) -> (PathBuf, PathBuf) {
        let out = self.dir.path().join(name);
        let patch = if machine_patch.is_empty() {
            "machine: {certSans: [127.0.0.1]}".to_string()
        } else {
            format!("machine: {{certSans: [127.0.0.1], {machine_patch}}}")
        };
        cairnctl::run_ok(&[
            "gen",
            "config",
            "cairn-net",
            endpoint,
            "--with-secrets",
            self.secrets.to_str().unwrap(),
            "--config-patch-control-plane",
            &patch,
            "-o",
            out.to_str().unwrap(),
        ]);
        (out.join("controlplane.yaml"), out.join("cairnconfig"))
    }
}

/// Boots `config` to maintenance mode and waits for Version.
pub fn boot_maintenance(config: &VmConfig) -> Vm {
    let mut vm = Vm::start(config).unwrap_or_else(|e| panic!("{e}"));
    wait_maintenance(&mut vm, config.boot_timeout());
    vm
}

/// Waits for the maintenance banner (up to `timeout`) and for Version.
pub fn wait_maintenance(vm: &mut Vm, timeout: Duration) {
    vm.expect(MAINTENANCE_BANNER, timeout)
        .unwrap_or_else(|e| panic!("{e}"));
    vm.wait_for_version(Duration::from_secs(120))
        .unwrap_or_else(|e| panic!("{e}"));
}

/// A node with a config, answering mutual TLS.
pub struct Node {
    pub vm: Vm,
    /// `127.0.0.1:<forwarded port>`.
    pub addr: String,
    pub cairnconfig: PathBuf,
    pub config: PathBuf,
}

impl Node {
    /// Applies `name`'s config (with `machine_patch`) to `vm` in
    /// maintenance mode and waits until it answers as configured.
    pub fn configure(vm: Vm, cluster: &Cluster, name: &str, machine_patch: &str) -> Node {
        Node::configure_for(vm, cluster, name, ENDPOINT, machine_patch)
    }

    /// [`Node::configure`] with another control-plane `endpoint`.
    pub fn configure_for(
        vm: Vm,
        cluster: &Cluster,
        name: &str,
        endpoint: &str,
        machine_patch: &str,
    ) -> Node {
        let (config, cairnconfig) = cluster.config_for(name, endpoint, machine_patch);
        let addr = vm.apid_node();
        cairnctl::run_ok(&[
            "--cairnconfig",
            cairnconfig.to_str().unwrap(),
            "config",
            "endpoint",
            &addr,
        ]);
        let out = cairnctl::run(&[
            "apply-config",
            "--insecure",
            "-n",
            &addr,
            "-f",
            config.to_str().unwrap(),
            "--mode",
            "no-reboot",
        ]);
        assert!(
            out.status.success(),
            "insecure apply-config: {}",
            text(&out)
        );
        let node = Node {
            vm,
            addr,
            cairnconfig,
            config,
        };
        let configured = wait_until(Duration::from_secs(180), || {
            let out = node.ctl(&["version", "-o", "json"]);
            serde_json::from_slice::<serde_json::Value>(&out.stdout)
                .is_ok_and(|v| v["servers"][0]["mode"] == "configured")
        });
        assert!(
            configured,
            "{name} did not answer mTLS as configured\n--- console ---\n{}",
            node.vm.console_tail(40)
        );
        node
    }

    /// `cairnctl --cairnconfig <admin> -n <addr> <args>`.
    pub fn ctl(&self, args: &[&str]) -> Output {
        let mut argv = vec![
            "--cairnconfig",
            self.cairnconfig.to_str().unwrap(),
            "-n",
            &self.addr,
        ];
        argv.extend_from_slice(args);
        cairnctl::run(&argv)
    }

    /// The specs of `cairnctl get <kind> -o json`, or why not.
    pub fn specs(&self, kind: &str) -> Result<Vec<serde_json::Value>, String> {
        let out = self.ctl(&["get", kind, "-o", "json"]);
        if !out.status.success() {
            return Err(text(&out));
        }
        let v: serde_json::Value =
            serde_json::from_slice(&out.stdout).map_err(|e| format!("{e}: {}", text(&out)))?;
        Ok(v.as_array()
            .map(|a| a.iter().map(|r| r["spec"].clone()).collect())
            .unwrap_or_default())
    }

    /// A patched copy of this node's config.
    pub fn patched_config(&self, name: &str, patch: &str) -> PathBuf {
        let out = self.config.with_file_name(format!("{name}.yaml"));
        cairnctl::run_ok(&[
            "machineconfig",
            "patch",
            self.config.to_str().unwrap(),
            "-p",
            patch,
            "-o",
            out.to_str().unwrap(),
        ]);
        out
    }
}

impl Node {
    /// Like [`Node::ctl`], but gives up (killing cairnctl) after `limit`:
    /// an unreachable node may hold a connection open.
    pub fn ctl_within(&self, args: &[&str], limit: Duration) -> Option<Output> {
        let mut argv = vec![
            "--cairnconfig",
            self.cairnconfig.to_str().unwrap(),
            "-n",
            &self.addr,
        ];
        argv.extend_from_slice(args);
        let mut child = std::process::Command::new(cairnctl::path())
            .args(&argv)
            .env_remove("CAIRNCONFIG")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("running cairnctl");
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                return child.wait_with_output().ok();
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Whether `cairnctl version` answers as configured within `limit`.
    pub fn answers(&self, limit: Duration) -> bool {
        self.ctl_within(&["version", "-o", "json"], limit)
            .and_then(|out| serde_json::from_slice::<serde_json::Value>(&out.stdout).ok())
            .is_some_and(|v| v["servers"][0]["mode"] == "configured")
    }
}

/// Checks that all run; the test fails at the end, naming every failure.
#[derive(Default)]
pub struct Checks(Vec<(String, Result<(), String>)>);

impl Checks {
    pub fn check(&mut self, name: &str, result: Result<(), String>) {
        eprintln!("{} {name}", if result.is_ok() { "PASS" } else { "FAIL" });
        if let Err(e) = &result {
            eprintln!("  {e}");
        }
        self.0.push((name.to_string(), result));
    }

    pub fn finish(self) {
        let failed: Vec<String> = self
            .0
            .iter()
            .filter_map(|(n, r)| r.as_ref().err().map(|e| format!("{n}: {e}")))
            .collect();
        assert!(
            failed.is_empty(),
            "{} check(s) failed:\n{}",
            failed.len(),
            failed.join("\n")
        );
    }
}

/// `Ok` when `cond` holds, else the message.
pub fn is(cond: bool, otherwise: impl FnOnce() -> String) -> Result<(), String> {
    if cond {
        Ok(())
    } else {
        Err(otherwise())
    }
}
