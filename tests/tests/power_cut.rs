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
//!
//! And an install from the ISO, on blank disks:
//! 5. `install:boot-written` (GPT, GRUB and slot A on the disk, STATE not
//!    made yet): the disk boots slot A to maintenance mode, unconfigured;
//! 6. `install:done` (STATE written and synced, before the reboot): the
//!    disk boots configured.
//!
//! (A cut while the upgrade streams is the upgrade test's.)

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cairn_tests::{cairnctl, Firmware, Images, Vm, VmConfig, MAINTENANCE_BANNER};
use common::{Cluster, REBOOT_TIMEOUT};

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

/// `apply-config --insecure` of the cluster's control-plane config to the
/// node in maintenance mode at `addr`, in the background.
fn spawn_insecure_apply(addr: &str, cluster: &Cluster, extra: &[&str]) -> Child {
    let config = cluster.config();
    let mut args = vec![
        "apply-config",
        "--insecure",
        "-n",
        addr,
        "-f",
        config.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    spawn_ctl(&args)
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

/// What a test run shares: the images, the disk every boot uses, the
/// cluster's configs.
struct Run {
    images: Images,
    second: std::path::PathBuf,
    disk: std::path::PathBuf,
    cluster: Cluster,
    started: Instant,
}

impl Run {
    /// A first apply-config to the unconfigured node, cut at `point`.
    fn apply_cut_at(&self, name: &str, point: &str, before: &str) {
        let append = format!("cairn.debug.cut={point}");
        let (mut vm, c) = direct(name, &self.images, &self.disk, &append);
        if !before.is_empty() {
            vm.expect(before, c.boot_timeout())
                .unwrap_or_else(|e| panic!("{e}"));
        }
        vm.expect(MAINTENANCE_BANNER, c.boot_timeout())
            .unwrap_or_else(|e| panic!("the node must boot unconfigured: {e}"));
        let addr = vm.apid_node();
        let apply = spawn_insecure_apply(&addr, &self.cluster, &["--mode", "no-reboot"]);
        cut_at(&mut vm, point, apply);
        self.say(&format!("cut at {point}"));
    }

    /// An upgrade of the configured node (slot A) cut at `point`; then the
    /// disk boots through its firmware and must run `slot` with `version`.
    fn upgrade_cut_at(&self, name: &str, point: &str, slot: &str, version: &str) {
        let append = format!("cairn.slot=A cairn.debug.cut={point}");
        let (mut vm, _) = direct(name, &self.images, &self.disk, &append);
        let addr = self.cluster.target(&vm);
        self.cluster
            .wait_configured(&vm, &addr, Duration::from_secs(180));
        let upgrade = [
            "--cairnconfig",
            self.cluster.admin.to_str().unwrap(),
            "-n",
            &addr,
            "upgrade",
            "--image",
            self.second.to_str().unwrap(),
        ];
        cut_at(&mut vm, point, spawn_ctl(&upgrade));
        self.say(&format!("cut at {point}"));
        let boot = VmConfig::from_disks(
            &format!("{name}-boot"),
            vec![self.disk.clone()],
            Firmware::SeaBios,
        );
        let mut vm = Vm::start(&boot).unwrap_or_else(|e| panic!("{e}"));
        vm.expect(&format!(r"cairn: booting slot {slot}"), boot.boot_timeout())
            .unwrap_or_else(|e| panic!("after a cut at {point}: {e}"));
        let addr = self.cluster.target(&vm);
        let v = self.cluster.wait_configured(&vm, &addr, REBOOT_TIMEOUT);
        assert_eq!(
            (v["tag"].as_str(), v["slot"].as_str()),
            (Some(version), Some(slot)),
            "after a cut at {point}: {v}"
        );
        let meta = self.cluster.meta(&addr);
        self.say(&format!(
            "slot {slot} runs {version}; upgrade.state {:?}",
            meta.get("upgrade.state")
        ));
        vm.kill();
    }

    fn say(&self, what: &str) {
        eprintln!("[{:>4}s] {what}", self.started.elapsed().as_secs());
    }
}

#[test]
fn power_cuts_while_writing_the_config_or_switching_slots_leave_a_node_that_boots() {
    let images = Images::locate();
    let (second, v1, v2) = common::upgrade_versions(&images);
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("disk.qcow2");
    common::overlay(&images.raw().unwrap(), &disk);
    let run = Run {
        images,
        second,
        disk,
        cluster: Cluster::generate(""),
        started: Instant::now(),
    };
    // 1. The temp file written, not renamed: no config after the cut...
    run.apply_cut_at("cut-1", "state:temp-written", "");
    // 2. ...the node boots unconfigured and drops the temp file; renamed
    // and synced: the config after the cut.
    run.apply_cut_at(
        "cut-2",
        "state:written",
        r"config: removed 1 file\(s\) of an interrupted write",
    );
    // 3. Slot B written, not set to boot: slot A again. 4. Set to boot
    // once: slot B with the new version.
    run.upgrade_cut_at("cut-3", "upgrade:committed", "A", &v1);
    run.upgrade_cut_at("cut-4", "upgrade:switched", "B", &v2);
    run.say("power-cut test done");
}

/// A live boot from the ISO's kernel and initramfs with `append`, the ISO
/// in a drive (the install's medium) and `disk` to install to; the first
/// config names it, and the install is cut at `point`.
fn install_cut_at(images: &Images, cluster: &Cluster, disk: &std::path::Path, point: &str) {
    let append = format!("cairn.debug.cut={point}");
    let mut c = VmConfig::direct(&format!("cut-{}", point.replace(':', "-")), images, &append)
        .unwrap_or_else(|e| panic!("{e}"));
    let iso = images.iso().unwrap_or_else(|e| panic!("{e}"));
    c.extra_args = vec![
        "-drive".into(),
        format!("file={},media=cdrom,readonly=on", iso.display()),
    ];
    c.disks = vec![disk.to_path_buf()];
    let mut vm = Vm::start(&c).unwrap_or_else(|e| panic!("{e}"));
    vm.expect(MAINTENANCE_BANNER, c.boot_timeout())
        .unwrap_or_else(|e| panic!("{e}"));
    let addr = vm.apid_node();
    let apply = spawn_insecure_apply(&addr, cluster, &[]);
    cut_at(&mut vm, point, apply);
}

/// The disk alone, through its firmware and GRUB: slot A boots.
fn boot_disk(name: &str, disk: &std::path::Path) -> (Vm, VmConfig) {
    let c = VmConfig::from_disks(name, vec![disk.to_path_buf()], Firmware::SeaBios);
    let mut vm = Vm::start(&c).unwrap_or_else(|e| panic!("{e}"));
    vm.expect(r"cairn: booting slot A", c.boot_timeout())
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    (vm, c)
}

#[test]
fn power_cuts_during_an_install_leave_a_disk_that_boots() {
    let started = Instant::now();
    let images = Images::locate();
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::generate("install: {disk: /dev/vda}");
    let say = |what: &str| eprintln!("[{:>4}s] {what}", started.elapsed().as_secs());

    // 5. Cut once BOOT is written: the disk boots, unconfigured.
    let half = dir.path().join("half.qcow2");
    common::blank_disk(&half, "4G");
    install_cut_at(&images, &cluster, &half, "install:boot-written");
    say("cut at install:boot-written");
    let (mut vm, c) = boot_disk("cut-install-half", &half);
    vm.expect(MAINTENANCE_BANNER, c.boot_timeout())
        .unwrap_or_else(|e| panic!("a half-installed disk must boot to maintenance mode: {e}"));
    vm.kill();
    say("the half-installed disk boots to maintenance mode");

    // 6. Cut once STATE is written, before the reboot: configured.
    let whole = dir.path().join("whole.qcow2");
    common::blank_disk(&whole, "4G");
    install_cut_at(&images, &cluster, &whole, "install:done");
    say("cut at install:done");
    let (mut vm, _) = boot_disk("cut-install-done", &whole);
    let addr = cluster.target(&vm);
    let v = cluster.wait_configured(&vm, &addr, REBOOT_TIMEOUT);
    assert_eq!(v["slot"], "A", "{v}");
    vm.kill();
    say("the installed disk boots configured");
}
