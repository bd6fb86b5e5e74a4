//! Issue 16: power cuts at each step of writing the machine config to
//! STATE and of an upgrade's slot switch. machined stops for good at a
//! named point (`cairn.debug.cut=<point>` on a direct kernel boot of the
//! installed disk) and the test kills QEMU there; the node must boot again,
//! to the old state or the new one, never to neither. One disk goes through
//! every cut in turn, so each boot checks what the last cut left:
//!
//! 1. `state:temp-written` during the first apply-config: the node boots
//!    unconfigured again (maintenance mode) and says it removed the
//!    interrupted write;
//! 2. `state:written`: the node boots with the config;
//! 3. `upgrade:committed` (slot B written, not yet set to boot): the disk
//!    boots slot A, the version it ran;
//! 4. `upgrade:switched` (slot B set to boot once): the disk boots slot B,
//!    the new version.
//!
//! (A cut while the upgrade streams is the upgrade test's; the install's
//! cut points are exercised by machined's code but not booted here.)

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cairn_tests::{cairnctl, Firmware, Images, Vm, VmConfig, MAINTENANCE_BANNER};
use common::{text, Cluster, REBOOT_TIMEOUT};

/// Boots the disk with the image's kernel and initramfs (slot A's) and
/// `append` on the command line.
fn direct(name: &str, images: &Images, disk: &std::path::Path, append: &str) -> (Vm, VmConfig) {
    let mut config = VmConfig::direct(name, images, append).unwrap_or_else(|e| panic!("{e}"));
    config.disks = vec![disk.to_path_buf()];
    (Vm::start(&config).unwrap_or_else(|e| panic!("{e}")), config)
}

/// `cairnctl <args>` in the background (it hangs once machined stops).
fn spawn_ctl(args: &[&str]) -> Child {
    Command::new(cairnctl::path())
        .args(args)
        .env_remove("CAIRNCONFIG")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Waits for machined to reach `point`, then cuts the power.
fn cut_at(vm: &mut Vm, point: &str, mut client: Child) {
    vm.expect(
        &format!(r"debug: power cut point {point} reached"),
        Duration::from_secs(300),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    vm.kill();
    let _ = client.kill();
    let _ = client.wait();
}

#[test]
fn power_cuts_while_writing_the_config_or_switching_slots_leave_a_node_that_boots() {
    let started = Instant::now();
    let images = Images::locate();
    let second = common::upgrade_images(&images.dir);
    let (v1, v2) = (
        common::image_version(&images.dir),
        common::image_version(&second),
    );
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("disk.qcow2");
    common::overlay(&images.raw().unwrap(), &disk);
    let cluster = Cluster::generate("");
    let config = cluster.config();
    let config = config.to_str().unwrap();

    // 1. The temp file written, not renamed: no config after the cut.
    let (mut vm, c) = direct(
        "cut-1",
        &images,
        &disk,
        "cairn.debug.cut=state:temp-written",
    );
    vm.expect(MAINTENANCE_BANNER, c.boot_timeout())
        .unwrap_or_else(|e| panic!("{e}"));
    let addr = vm.apid_node();
    let apply = spawn_ctl(&[
        "apply-config",
        "--insecure",
        "-n",
        &addr,
        "-f",
        config,
        "--mode",
        "no-reboot",
    ]);
    cut_at(&mut vm, "state:temp-written", apply);
    eprintln!(
        "[{:>4}s] cut after the config's temp file",
        started.elapsed().as_secs()
    );

    // 2. Renamed and synced: the config after the cut.
    let (mut vm, c) = direct("cut-2", &images, &disk, "cairn.debug.cut=state:written");
    vm.expect(
        r"config: removed 1 file\(s\) of an interrupted write",
        c.boot_timeout(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    vm.expect(MAINTENANCE_BANNER, c.boot_timeout())
        .unwrap_or_else(|e| panic!("the node must boot unconfigured again: {e}"));
    let addr = vm.apid_node();
    let apply = spawn_ctl(&[
        "apply-config",
        "--insecure",
        "-n",
        &addr,
        "-f",
        config,
        "--mode",
        "no-reboot",
    ]);
    cut_at(&mut vm, "state:written", apply);
    eprintln!(
        "[{:>4}s] cut after the config's rename",
        started.elapsed().as_secs()
    );

    // 3. An upgrade cut after slot B is written, before it is set to boot.
    let (mut vm, _) = direct(
        "cut-3",
        &images,
        &disk,
        "cairn.slot=A cairn.debug.cut=upgrade:committed",
    );
    let addr = cluster.target(&vm);
    let v = cluster.wait_configured(&vm, &addr, Duration::from_secs(180));
    assert_eq!(v["tag"].as_str(), Some(v1.as_str()), "{v}");
    let admin = cluster.admin.to_str().unwrap();
    let upgrade = [
        "--cairnconfig",
        admin,
        "-n",
        &addr,
        "upgrade",
        "--image",
        second.to_str().unwrap(),
    ];
    cut_at(&mut vm, "upgrade:committed", spawn_ctl(&upgrade));
    eprintln!(
        "[{:>4}s] cut after slot B was written",
        started.elapsed().as_secs()
    );
    let disk_boot = VmConfig::from_disks("cut-3-boot", vec![disk.clone()], Firmware::SeaBios);
    let mut vm = Vm::start(&disk_boot).unwrap_or_else(|e| panic!("{e}"));
    vm.expect(r"cairn: booting slot A", disk_boot.boot_timeout())
        .unwrap_or_else(|e| panic!("{e}"));
    let addr = cluster.target(&vm);
    let v = cluster.wait_configured(&vm, &addr, REBOOT_TIMEOUT);
    assert_eq!(
        (v["tag"].as_str(), v["slot"].as_str()),
        (Some(v1.as_str()), Some("A")),
        "{v}"
    );
    vm.kill();

    // 4. Cut once slot B is set to boot once: it boots, with the new version.
    let (mut vm, _) = direct(
        "cut-4",
        &images,
        &disk,
        "cairn.slot=A cairn.debug.cut=upgrade:switched",
    );
    let addr = cluster.target(&vm);
    cluster.wait_configured(&vm, &addr, Duration::from_secs(180));
    let upgrade = [
        "--cairnconfig",
        admin,
        "-n",
        &addr,
        "upgrade",
        "--image",
        second.to_str().unwrap(),
    ];
    cut_at(&mut vm, "upgrade:switched", spawn_ctl(&upgrade));
    eprintln!(
        "[{:>4}s] cut after slot B was set to boot",
        started.elapsed().as_secs()
    );
    let disk_boot = VmConfig::from_disks("cut-4-boot", vec![disk.clone()], Firmware::SeaBios);
    let mut vm = Vm::start(&disk_boot).unwrap_or_else(|e| panic!("{e}"));
    vm.expect(r"cairn: booting slot B", disk_boot.boot_timeout())
        .unwrap_or_else(|e| panic!("{e}"));
    let addr = cluster.target(&vm);
    let v = cluster.wait_configured(&vm, &addr, REBOOT_TIMEOUT);
    assert_eq!(
        (v["tag"].as_str(), v["slot"].as_str()),
        (Some(v2.as_str()), Some("B")),
        "{v}"
    );
    let out = cluster.ctl(&addr, &["get", "meta", "-o", "json"]);
    assert!(out.status.success(), "get meta: {}", text(&out));
    vm.kill();
    eprintln!("power-cut test: {} s", started.elapsed().as_secs());
}
