//! Hardening hole 3: a first config from `cairn.config=<url>` is taken
//! only as pinned on the kernel command line. Three direct boots against a
//! config served from this host (10.0.2.2 on QEMU's user network): plain
//! http without `cairn.config.sha256=` is refused, a config whose hash
//! does not match is refused (both nodes stay in maintenance mode, saying
//! why on the console), and the pinned one is used (the node answers
//! mutual TLS as configured; it boots the kernel directly with a disk
//! made from the raw image, so it counts as installed). https with `cairn.config.fingerprint=` is
//! covered by host's unit tests (a real TLS server there).

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_tests::{cairnctl, Images, Vm, VmConfig, MAINTENANCE_BANNER};
use sha2::{Digest, Sha256};

/// The guest's address on QEMU's user network (the cluster endpoint).
const GUEST: &str = "10.0.2.15";

/// Serves `body` to every GET on 127.0.0.1 (the guest's 10.0.2.2); returns
/// the port and the number of requests answered.
fn serve(body: Vec<u8>) -> (u16, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let served = Arc::new(AtomicUsize::new(0));
    let count = served.clone();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = s.write_all(head.as_bytes());
            let _ = s.write_all(&body);
            count.fetch_add(1, Ordering::SeqCst);
        }
    });
    (port, served)
}

fn boot(name: &str, append: &str, disk: Option<&Path>) -> (Vm, VmConfig) {
    let mut config =
        VmConfig::direct(name, &Images::locate(), append).unwrap_or_else(|e| panic!("{e}"));
    config.disks.extend(disk.map(Path::to_path_buf));
    let vm = Vm::start(&config).unwrap_or_else(|e| panic!("{e}"));
    (vm, config)
}

/// A copy-on-write disk over the raw image, in `dir`: with its STATE the
/// node counts as installed, so the config needs no install disk.
fn disk_over_raw(dir: &Path) -> std::path::PathBuf {
    let raw = Images::locate().raw().unwrap_or_else(|e| panic!("{e}"));
    let disk = dir.join("disk.qcow2");
    let out = std::process::Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2", "-F", "raw", "-b"])
        .arg(&raw)
        .arg(&disk)
        .output()
        .expect("running qemu-img");
    assert!(out.status.success(), "qemu-img: {out:?}");
    disk
}

/// Boots with `append`, expects the console to say `refusal` and the node
/// to come up in maintenance mode.
fn refused(name: &str, append: &str, refusal: &str) {
    let (mut vm, config) = boot(name, append, None);
    vm.expect(refusal, config.boot_timeout() + Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{e}"));
    vm.expect(MAINTENANCE_BANNER, Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{e}"));
    let version = vm
        .wait_for_version(Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(version.maintenance, "{name}: not in maintenance mode");
}

/// A control-plane config with 127.0.0.1 in apid's names and an admin
/// cairnconfig, in `dir`.
fn generate(dir: &Path) -> Vec<u8> {
    let d = dir.to_str().unwrap();
    cairnctl::run_ok(&[
        "gen",
        "config",
        "url",
        &format!("https://{GUEST}:6443"),
        "--config-patch-control-plane",
        "machine: {certSans: [127.0.0.1]}",
        "-o",
        d,
    ]);
    std::fs::read(dir.join("controlplane.yaml")).unwrap()
}

#[test]
fn a_config_from_a_url_is_used_only_as_pinned() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let body = generate(dir.path());
    let sha = hex::encode(Sha256::digest(&body));
    let (port, served) = serve(body);
    let url = format!("cairn.config=http://10.0.2.2:{port}/controlplane.yaml");

    refused(
        "config-url-unpinned",
        &url,
        r"config: .* accepted only with cairn\.config\.sha256=",
    );
    assert_eq!(served.load(Ordering::SeqCst), 0, "fetched without a pin");

    let wrong = "0".repeat(64);
    refused(
        "config-url-mismatch",
        &format!("{url} cairn.config.sha256={wrong}"),
        r"config: attempt 4/4: .* SHA-256 is [0-9a-f]{64}, not 0{64}",
    );

    let disk = disk_over_raw(dir.path());
    let (mut vm, config) = boot(
        "config-url-pinned",
        &format!("{url} cairn.config.sha256=sha256:{}", sha.to_uppercase()),
        Some(&disk),
    );
    vm.expect(
        r"config: using the machine config from http://10\.0\.2\.2:\d+/controlplane\.yaml",
        config.boot_timeout() + Duration::from_secs(60),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let admin = dir.path().join("cairnconfig");
    let admin = admin.to_str().unwrap();
    cairnctl::run_ok(&[
        "--cairnconfig",
        admin,
        "config",
        "endpoint",
        &vm.apid_node(),
    ]);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let out = cairnctl::run(&["--cairnconfig", admin, "version", "-o", "json"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        if v["servers"][0]["mode"] == "configured" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the node did not answer mTLS as configured: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            vm.console_tail(40)
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    eprintln!("config_url: {:?}", started.elapsed());
}
