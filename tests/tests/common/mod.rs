//! Shared by the install, upgrade and reset VM tests: a generated cluster
//! (secrets, configs, an admin cairnconfig) and waiting on a node through
//! cairnctl, the way a user does.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use cairn_tests::{cairnctl, Vm};

/// The guest's address on QEMU's user network (the cluster endpoint).
pub const GUEST: &str = "10.0.2.15";

/// How long a node behind GRUB may take to come back configured.
pub const REBOOT_TIMEOUT: Duration = Duration::from_secs(300);

/// stdout and stderr of a run, for messages.
pub fn text(out: &Output) -> String {
    format!(
        "({})\n--- stdout ---\n{}--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Generated secrets and configs, and an admin cairnconfig.
pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub admin: PathBuf,
}

impl Cluster {
    /// `cairnctl gen secrets` and `gen config`; `patch` (YAML) is applied to
    /// the control-plane config, which also gets 127.0.0.1 in apid's SANs.
    pub fn generate(machine_patch: &str) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_str().unwrap().to_string();
        let secrets = format!("{d}/secrets.yaml");
        cairnctl::run_ok(&["gen", "secrets", "-o", &secrets]);
        let patch = if machine_patch.is_empty() {
            "machine: {certSans: [127.0.0.1]}".to_string()
        } else {
            format!("machine: {{certSans: [127.0.0.1], {machine_patch}}}")
        };
        cairnctl::run_ok(&[
            "gen",
            "config",
            "cairn-test",
            &format!("https://{GUEST}:6443"),
            "--with-secrets",
            &secrets,
            "--config-patch-control-plane",
            &patch,
            "-o",
            &d,
        ]);
        let admin = dir.path().join("cairnconfig");
        Cluster { dir, admin }
    }

    pub fn config(&self) -> PathBuf {
        self.dir.path().join("controlplane.yaml")
    }

    /// Points the admin cairnconfig at `vm`'s forwarded apid port.
    pub fn target(&self, vm: &Vm) -> String {
        let addr = vm.apid_node();
        cairnctl::run_ok(&[
            "--cairnconfig",
            self.admin.to_str().unwrap(),
            "config",
            "endpoint",
            &addr,
        ]);
        addr
    }

    /// `cairnctl --cairnconfig admin -n addr <args>`.
    pub fn ctl(&self, addr: &str, args: &[&str]) -> Output {
        let mut argv = vec!["--cairnconfig", self.admin.to_str().unwrap(), "-n", addr];
        argv.extend_from_slice(args);
        cairnctl::run(&argv)
    }

    /// `apply-config --insecure` of `config` to a node in maintenance mode.
    pub fn apply_insecure(&self, addr: &str, config: &Path, mode: &str) -> Output {
        cairnctl::run(&[
            "apply-config",
            "--insecure",
            "-n",
            addr,
            "-f",
            config.to_str().unwrap(),
            "--mode",
            mode,
        ])
    }

    /// Polls `version -o json` over mTLS until the node answers as
    /// configured; returns its entry.
    pub fn wait_configured(&self, vm: &Vm, addr: &str, timeout: Duration) -> serde_json::Value {
        let deadline = Instant::now() + timeout;
        let mut last = String::new();
        while Instant::now() < deadline {
            let out = self.ctl(addr, &["version", "-o", "json"]);
            if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&out.stdout) {
                if v["servers"][0]["mode"] == "configured" {
                    return v["servers"][0].clone();
                }
            }
            last = text(&out);
            std::thread::sleep(Duration::from_secs(2));
        }
        panic!(
            "the node did not answer mTLS as configured within {} s; last cairnctl version: {last}\n--- console ---\n{}",
            timeout.as_secs(),
            vm.console_tail(40)
        );
    }

    /// `get meta -o json` as key -> value.
    pub fn meta(&self, addr: &str) -> std::collections::BTreeMap<String, String> {
        let out = self.ctl(addr, &["get", "meta", "-o", "json"]);
        assert!(out.status.success(), "get meta: {}", text(&out));
        let v: serde_json::Value =
            serde_json::from_slice(&out.stdout).expect("get -o json prints JSON");
        v.as_array()
            .expect("an array")
            .iter()
            .map(|r| {
                (
                    r["metadata"]["id"].as_str().unwrap_or_default().to_string(),
                    r["spec"]["value"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect()
    }
}

/// A qcow2 file over `backing` (raw), so a test can write it across VM
/// restarts without touching the image.
pub fn overlay(backing: &Path, path: &Path) {
    let backing = std::fs::canonicalize(backing).unwrap();
    let out = Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2", "-F", "raw", "-b"])
        .arg(&backing)
        .arg(path)
        .output()
        .expect("running qemu-img");
    assert!(
        out.status.success(),
        "qemu-img: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A blank qcow2 disk of `size` (e.g. "4G").
pub fn blank_disk(path: &Path, size: &str) {
    let out = Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2"])
        .arg(path)
        .arg(size)
        .output()
        .expect("running qemu-img");
    assert!(
        out.status.success(),
        "qemu-img: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The second image (another version) the upgrade tests move to:
/// `$CAIRN_UPGRADE_OUT`, else `upgrade/` in the first image's directory
/// (`make image-upgrade` builds it there).
/// The upgrade image (see [`upgrade_images`]) and both images' versions,
/// which must differ.
pub fn upgrade_versions(images: &cairn_tests::Images) -> (PathBuf, String, String) {
    let second = upgrade_images(&images.dir);
    let (v1, v2) = (image_version(&images.dir), image_version(&second));
    assert_ne!(v1, v2, "the second image needs another version");
    (second, v1, v2)
}

pub fn upgrade_images(first: &Path) -> PathBuf {
    let dir = std::env::var_os("CAIRN_UPGRADE_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|| first.join("upgrade"));
    assert!(
        dir.join("vmlinuz").is_file() && dir.join("initramfs.img").is_file(),
        "no second image in {}: build one with another version, e.g. \
         `OUT={} CAIRN_VERSION=v0.0.0-upgrade images/build-image.sh` (make image-upgrade does)",
        dir.display(),
        dir.display()
    );
    dir
}

/// The version an image build wrote (`$OUT/version`).
pub fn image_version(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("version"))
        .unwrap_or_else(|e| panic!("{}/version: {e}", dir.display()))
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}
