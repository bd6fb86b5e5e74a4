//! Issue 7, A/B upgrades, on one installed node (the raw image behind a
//! qcow2 file the test keeps, so the node survives a power cut):
//! 1. `cairnctl upgrade` to a second image with another version: the node
//!    runs it from slot B, and keeps it (it marked itself good);
//! 2. an upgrade to a broken image (an initramfs whose /init cannot find
//!    its root filesystem): the node comes back by itself on the version it
//!    ran, and `cairnctl get meta` says why;
//! 3. the VM's power is cut while an upgrade is being written: the node
//!    boots the version it ran, and META says the upgrade was interrupted.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cairn_tests::{cairnctl, cpio, Firmware, Images, Vm, VmConfig, MAINTENANCE_BANNER};
use common::{text, Cluster, REBOOT_TIMEOUT};

/// A kernel and an initramfs holding only the image's /init: it fails to
/// find /rootfs.sqsh and reboots, so machined never runs.
fn broken_image(images: &Images, dir: &std::path::Path) -> std::path::PathBuf {
    let out = dir.join("broken");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::copy(images.kernel().unwrap(), out.join("vmlinuz")).unwrap();
    let initramfs = images.read_initramfs().unwrap_or_else(|e| panic!("{e}"));
    let init = cpio::find(&initramfs, "init")
        .expect("a newc cpio")
        .expect("/init")
        .to_vec();
    std::fs::write(
        out.join("initramfs.img"),
        cpio::Writer::new().file("init", 0o755, &init).finish(),
    )
    .unwrap();
    std::fs::write(out.join("version"), "v0.0.0-broken broken\n").unwrap();
    out
}

#[test]
fn upgrade_keeps_a_good_image_and_falls_back_from_a_broken_one_or_a_power_cut() {
    let started = Instant::now();
    let images = Images::locate();
    let (second, v1, v2) = common::upgrade_versions(&images);
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("disk.qcow2");
    common::overlay(&images.raw().unwrap(), &disk);
    let broken = broken_image(&images, dir.path());

    let config = VmConfig::from_disks("upgrade", vec![disk.clone()], Firmware::SeaBios);
    let mut vm = Vm::start(&config).unwrap_or_else(|e| panic!("{e}"));
    vm.expect(MAINTENANCE_BANNER, config.boot_timeout())
        .unwrap_or_else(|e| panic!("{e}"));
    vm.wait_for_version(Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{e}"));
    let cluster = Cluster::generate("");
    let addr = cluster.target(&vm);
    let out = cluster.apply_insecure(&addr, &cluster.config(), "no-reboot");
    assert!(out.status.success(), "apply-config: {}", text(&out));
    let v = cluster.wait_configured(&vm, &addr, Duration::from_secs(120));
    assert_eq!(
        (v["tag"].as_str(), v["slot"].as_str()),
        (Some(v1.as_str()), Some("A")),
        "{v}"
    );
    let t0 = started.elapsed();

    // 1. A good image: slot B, kept.
    let out = cluster.ctl(
        &addr,
        &[
            "upgrade",
            "--image",
            second.to_str().unwrap(),
            "--wait",
            "--timeout",
            "6m",
        ],
    );
    assert!(out.status.success(), "upgrade: {}", text(&out));
    vm.expect(
        r"upgrade: slot B is steady and now the default",
        REBOOT_TIMEOUT,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let v = cluster.wait_configured(&vm, &addr, Duration::from_secs(60));
    assert_eq!(
        (v["tag"].as_str(), v["slot"].as_str()),
        (Some(v2.as_str()), Some("B")),
        "{v}"
    );
    let meta = cluster.meta(&addr);
    assert_eq!(
        meta.get("upgrade.state").map(String::as_str),
        Some("good"),
        "{meta:?}"
    );
    let t1 = started.elapsed();

    // 2. A broken image: tried once in slot A, then slot B again by itself.
    let out = cluster.ctl(&addr, &["upgrade", "--image", broken.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "upgrade to the broken image: {}",
        text(&out)
    );
    vm.expect(r"cairn: booting slot A", REBOOT_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}"));
    vm.expect(r"cairn-init: .*rootfs\.sqsh", Duration::from_secs(120))
        .unwrap_or_else(|e| panic!("{e}"));
    vm.expect(r"cairn: booting slot B", REBOOT_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}"));
    vm.expect(
        r"upgrade: slot A \(v0\.0\.0-broken\) did not mark itself good",
        REBOOT_TIMEOUT,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let v = cluster.wait_configured(&vm, &addr, Duration::from_secs(120));
    assert_eq!(
        (v["tag"].as_str(), v["slot"].as_str()),
        (Some(v2.as_str()), Some("B")),
        "{v}"
    );
    let out = cluster.ctl(&addr, &["get", "meta"]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("did not mark itself good") && table.contains("failure.reason"),
        "get meta should say why: {}",
        text(&out)
    );
    let meta = cluster.meta(&addr);
    assert_eq!(
        meta.get("upgrade.state").map(String::as_str),
        Some("failed"),
        "{meta:?}"
    );
    assert_eq!(
        meta.get("failure.slot").map(String::as_str),
        Some("A"),
        "{meta:?}"
    );
    let t2 = started.elapsed();

    // 3. Power cut while slot A is being written.
    let mut upload = Command::new(cairnctl::path())
        .args([
            "--cairnconfig",
            cluster.admin.to_str().unwrap(),
            "-n",
            &addr,
            "upgrade",
            "--image",
        ])
        .arg(&images.dir)
        .env_remove("CAIRNCONFIG")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    vm.expect(r"upgrade: received kernel", Duration::from_secs(120))
        .unwrap_or_else(|e| panic!("{e}"));
    vm.kill();
    let _ = upload.kill();
    let _ = upload.wait();
    drop(vm);
    let config = VmConfig::from_disks(
        "upgrade-after-power-cut",
        vec![disk.clone()],
        Firmware::SeaBios,
    );
    let mut vm = Vm::start(&config).unwrap_or_else(|e| panic!("{e}"));
    vm.expect(r"cairn: booting slot B", config.boot_timeout())
        .unwrap_or_else(|e| panic!("{e}"));
    vm.expect(
        r"upgrade: the upgrade of slot A .*was interrupted",
        REBOOT_TIMEOUT,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let addr = cluster.target(&vm);
    let v = cluster.wait_configured(&vm, &addr, Duration::from_secs(240));
    assert_eq!(
        (v["tag"].as_str(), v["slot"].as_str()),
        (Some(v2.as_str()), Some("B")),
        "{v}"
    );
    let meta = cluster.meta(&addr);
    assert_eq!(
        meta.get("upgrade.state").map(String::as_str),
        Some("interrupted"),
        "{meta:?}"
    );

    eprintln!(
        "upgrade test: configured {} s, good upgrade {} s, broken upgrade {} s, power cut {} s (total)",
        t0.as_secs(),
        (t1 - t0).as_secs(),
        (t2 - t1).as_secs(),
        (started.elapsed() - t2).as_secs()
    );
}
