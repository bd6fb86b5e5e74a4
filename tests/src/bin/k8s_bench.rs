//! `make bench`, last part: Kubernetes on one node under QEMU TCG.
//!
//! Boots the raw image, applies a generated control-plane config, then
//! measures from `cairnctl bootstrap`: the node Ready, and cluster DNS
//! answering inside a Pod (kubernetes.default resolved by the test Pod).
//! Then machined's RSS with the cluster running (from the console status
//! line; nobody can log in to ask otherwise), the sizes of the images
//! that carry the payload, and the node's bring-up timeline.

use std::time::{Duration, Instant};

use anyhow::Context;
use cairn_tests::kube::{self, Kubectl, Node};
use cairn_tests::timeline;
use cairn_tests::{ports, Firmware, Images, Vm, VmConfig, MAINTENANCE_BANNER, STATUS_LINE};
use regex::Regex;

const STEP: Duration = Duration::from_secs(1800);
const RSS_TARGET_MIB: f64 = 32.0;

fn main() -> anyhow::Result<()> {
    let images = Images::locate();
    let mut config = VmConfig::disk("bench-kubernetes", &images, Firmware::SeaBios)?;
    config.disk_gib = Some(kube::NODE_DISK_GIB);
    config.memory_mib = 4096;
    let api_port = ports::free_port()?;
    config.forwards.push((api_port, kube::APISERVER_PORT));
    eprintln!(
        "k8s bench: booting the raw image (TCG, {} vCPUs, {} MiB)…",
        config.cpus, config.memory_mib
    );
    let mut vm = Vm::start(&config)?;
    vm.expect(MAINTENANCE_BANNER, config.boot_timeout())?;
    vm.wait_for_version(Duration::from_secs(60))?;
    let dir = tempfile::tempdir()?;
    let node = Node::configure(dir.path(), "bench", &vm.apid_node())?;
    let kubectl = Kubectl::new(&images.dir, &node.kubeconfig);

    eprintln!("k8s bench: bootstrap…");
    let t0 = Instant::now();
    node.bootstrap()?;
    kube::eventually("kubeconfig", STEP, Duration::from_secs(2), || {
        node.fetch_kubeconfig(&kubectl, api_port)
    })?;
    kube::eventually("node Ready", STEP, Duration::from_secs(2), || {
        anyhow::ensure!(!kubectl.ready_nodes()?.is_empty(), "no Ready node");
        Ok(())
    })?;
    let to_ready = t0.elapsed();
    eprintln!(
        "k8s bench: node Ready after {:.0} s; waiting for DNS…",
        to_ready.as_secs_f64()
    );
    kubectl.apply(&kube::test_workload())?;
    kubectl.wait_pods_ready("default", &["client"], STEP, &mut |m| {
        eprintln!("k8s bench: {m}")
    })?;
    kubectl.exec_until_ok(
        "client",
        &["resolve", "kubernetes.default.svc.cluster.local"],
        STEP,
    )?;
    let to_dns = t0.elapsed();
    kubectl.wait_pods_ready("kube-system", kube::SYSTEM_PODS, STEP, &mut |m| {
        eprintln!("k8s bench: {m}")
    })?;

    // Two status lines after everything runs: the second is ~10 s later.
    vm.expect(STATUS_LINE, Duration::from_secs(60))?;
    let line = vm.expect(STATUS_LINE, Duration::from_secs(60))?;
    let c = Regex::new(STATUS_LINE)?
        .captures(&line)
        .context("status line")?;
    let machined_mib = c[1].parse::<f64>()? / 1024.0;
    let apid_mib = c[2].parse::<f64>()? / 1024.0;

    let size = |p: std::path::PathBuf| {
        std::fs::metadata(&p)
            .map(|m| m.len() as f64 / 1e6)
            .unwrap_or(0.0)
    };
    let bringup = node
        .ctl(&["events", "-o", "json"])
        .and_then(|j| timeline::parse(&j).map_err(anyhow::Error::msg))?;
    let raw_allocated = {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(images.raw()?)?.blocks() as f64 * 512.0 / 1e6
    };
    println!();
    println!(
        "Kubernetes on one node: QEMU TCG, {} vCPUs, {} MiB",
        config.cpus, config.memory_mib
    );
    println!(
        "  {:<44} {:>10}",
        "bootstrap to node Ready",
        format!("{:.0} s", to_ready.as_secs_f64())
    );
    println!(
        "  {:<44} {:>10}",
        "bootstrap to cluster DNS answering in a Pod",
        format!("{:.0} s", to_dns.as_secs_f64())
    );
    println!(
        "  {:<44} {:>10}  target <= {RSS_TARGET_MIB} MiB: {}",
        "RSS machined, cluster running",
        format!("{machined_mib:.1} MiB"),
        if machined_mib <= RSS_TARGET_MIB {
            "ok"
        } else {
            "MISSED"
        }
    );
    println!(
        "  {:<44} {:>10}",
        "RSS apid, cluster running",
        format!("{apid_mib:.1} MiB")
    );
    println!(
        "  {:<44} {:>10}",
        "payload.sqsh",
        format!("{:.1} MB", size(images.dir.join("payload.sqsh")))
    );
    println!(
        "  {:<44} {:>10}",
        "ISO with the payload",
        format!("{:.1} MB", size(images.iso()?))
    );
    println!(
        "  {:<44} {:>10}",
        "raw disk with the payload (allocated)",
        format!("{raw_allocated:.1} MB")
    );
    // The node's own account of where the time went (seconds since boot,
    // and the gap to the phase before): the critical path of the bring-up.
    println!("  bring-up timeline (seconds since boot, gap):");
    print!("{}", timeline::render(&bringup));
    Ok(())
}
