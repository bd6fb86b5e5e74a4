//! Issue 7, install: the live ISO with two disks attached, a blank one and
//! one holding an ext4 filesystem. A config naming the used disk is refused
//! with a message naming it; a config naming the blank disk installs Cairn
//! there and the node reboots; then the node boots from that disk alone,
//! with its config (mutual TLS, slot A).

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cairn_tests::{cairnctl, Firmware, Images, Vm, VmConfig, MAINTENANCE_BANNER};
use common::{text, Cluster};

#[test]
fn iso_installs_to_a_blank_disk_and_refuses_a_used_one() {
    let started = Instant::now();
    let images = Images::locate();
    let dir = tempfile::tempdir().unwrap();
    let blank = dir.path().join("blank.qcow2");
    common::blank_disk(&blank, "4G");
    // A disk with a filesystem on it (no partition table), as a user's
    // data disk would have.
    let used = dir.path().join("used.raw");
    std::fs::File::create(&used)
        .unwrap()
        .set_len(2 << 30)
        .unwrap();
    let mkfs = std::process::Command::new("mkfs.ext4")
        .args(["-q", "-F", "-L", "userdata"])
        .arg(&used)
        .output()
        .expect("running mkfs.ext4");
    assert!(
        mkfs.status.success(),
        "{}",
        String::from_utf8_lossy(&mkfs.stderr)
    );

    let mut config =
        VmConfig::iso("install-iso", &images, Firmware::SeaBios).unwrap_or_else(|e| panic!("{e}"));
    config.disks = vec![blank.clone(), used.clone()];
    // The reboot after installing ends QEMU: the ISO is "removed".
    config.no_reboot = true;
    let mut vm = Vm::start(&config).unwrap_or_else(|e| panic!("{e}"));
    vm.expect(MAINTENANCE_BANNER, config.boot_timeout())
        .unwrap_or_else(|e| panic!("{e}"));
    vm.wait_for_version(Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{e}"));
    let addr = vm.apid_node();

    // /dev/vdb holds ext4: refused, naming the disk and what is on it.
    let refused = Cluster::generate("install: {disk: /dev/vdb}");
    let out = refused.apply_insecure(&addr, &refused.config(), "auto");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "installing over ext4 was not refused: {}",
        text(&out)
    );
    assert!(
        stderr.contains("/dev/vdb") && stderr.contains("ext4") && stderr.contains("wipe"),
        "the refusal should name the disk, its contents and the way out: {}",
        text(&out)
    );
    eprintln!("refused: {}", stderr.trim());

    // /dev/vda is blank: installed, then the node reboots (QEMU exits).
    // cairnctl waits for the node to come back, which it cannot here (the
    // reboot ends QEMU): its answer is read once QEMU is gone.
    let cluster = Cluster::generate("install: {disk: /dev/vda}");
    let config_path = cluster.config();
    let apply = Command::new(cairnctl::path())
        .args([
            "apply-config",
            "--insecure",
            "-n",
            &addr,
            "-f",
            config_path.to_str().unwrap(),
        ])
        .env_remove("CAIRNCONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // While it installs, a second anonymous apply (another disk, with
    // wipe) is refused: one install at a time, and /dev/vdb keeps its data.
    vm.expect(r"install: partitioning /dev/vda", Duration::from_secs(300))
        .unwrap_or_else(|e| panic!("{e}"));
    let second = Cluster::generate("install: {disk: /dev/vdb, wipe: true}");
    let out = second.apply_insecure(&addr, &second.config(), "auto");
    assert!(
        !out.status.success(),
        "a second install was started during the first: {}",
        text(&out)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("an install is in progress"),
        "the refusal should say an install runs: {}",
        text(&out)
    );
    eprintln!("second apply during the install refused");
    vm.expect(r"install: done in", Duration::from_secs(300))
        .unwrap_or_else(|e| panic!("{e}"));
    vm.wait_exit(Duration::from_secs(120))
        .unwrap_or_else(|e| panic!("{e}"));
    let installed_at = started.elapsed();
    drop(vm);
    let mut apply = apply;
    let _ = apply.kill();
    let out = apply.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("installing to /dev/vda"), "{said}");
    // The refused second install wiped nothing: /dev/vdb is still ext4.
    let blkid = Command::new("blkid")
        .args(["-o", "value", "-s", "TYPE"])
        .arg(&used)
        .output()
        .expect("running blkid");
    assert_eq!(String::from_utf8_lossy(&blkid.stdout).trim(), "ext4");

    // The installed disk alone: GRUB, slot A, the config from STATE.
    let config = VmConfig::from_disks("install-disk", vec![blank.clone()], Firmware::SeaBios);
    let mut vm = Vm::start(&config).unwrap_or_else(|e| panic!("{e}"));
    vm.expect(r"cairn: booting slot A", config.boot_timeout())
        .unwrap_or_else(|e| panic!("{e}"));
    vm.expect(
        r"config: using the machine config from STATE",
        Duration::from_secs(240),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let addr = cluster.target(&vm);
    let v = cluster.wait_configured(&vm, &addr, Duration::from_secs(240));
    assert_eq!(v["slot"], "A", "{v}");
    let meta = cluster.meta(&addr);
    assert_eq!(
        meta.get("install.version").map(String::as_str),
        v["tag"].as_str(),
        "{meta:?}"
    );
    assert_eq!(
        meta.get("boot.count.A").map(String::as_str),
        Some("1"),
        "{meta:?}"
    );
    let disks = cluster.ctl(&addr, &["disks"]);
    let listed = String::from_utf8_lossy(&disks.stdout);
    assert!(
        listed.contains("gpt: EFI, BIOS, BOOT, META, STATE, EPHEMERAL"),
        "cairnctl disks: {}",
        text(&disks)
    );
    eprintln!(
        "install test: installed after {} s, configured from disk after {} s",
        installed_at.as_secs(),
        started.elapsed().as_secs()
    );
}
