//! `make bench`, last part: Kubernetes on one node under QEMU TCG, against
//! its floor measured in the same run (issue 17).
//!
//! Cairn: boots the raw image, applies a generated control-plane config,
//! then measures from `cairnctl bootstrap`: the API server answering
//! `/readyz`, the node Ready, and cluster DNS answering inside a Pod
//! (kubernetes.default resolved by the test Pod); then a reboot back to
//! Ready (the Node reporting a new boot id, Ready). Also machined's RSS with
//! the cluster running, the payload's sizes and the node's bring-up
//! timeline (its critical path).
//!
//! The floor (`cairn_tests::kube_floor`): the same kernel, payload,
//! certificates, configs and flags, copied from that node, started by a
//! minimal /init with nothing of Cairn; measured from its /init. Reboot's
//! floor is the floor's boot from QEMU's start to Ready.
//!
//! `--runs N` repeats both N times and prints each run and the medians.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use cairn_tests::kube::{self, Kubectl, Node};
use cairn_tests::kube_floor::{self, Inputs};
use cairn_tests::timeline::{self, Timeline};
use cairn_tests::{ports, Firmware, Images, Vm, VmConfig, MAINTENANCE_BANNER, STATUS_LINE};
use regex::Regex;

const STEP: Duration = Duration::from_secs(1800);
/// How often both sides are polled: the same for Cairn and the floor.
const EVERY: Duration = Duration::from_secs(1);
const RSS_TARGET_MIB: f64 = 32.0;
const MEMORY_MIB: u32 = 4096;
/// The targets: Cairn within this many times its floor.
const RATIO_TARGET: f64 = 2.0;

/// One run of Cairn: seconds from `bootstrap`, and reboot → Ready.
struct CairnRun {
    api_ready: f64,
    node_ready: f64,
    dns: f64,
    reboot_ready: f64,
    machined_mib: f64,
    apid_mib: f64,
    bringup: Timeline,
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let runs = cairn_tests::runs_flag(&args)?;
    let images = Images::locate();
    // `--floor-only DIR`: the floor alone, from inputs an earlier run kept
    // (`--keep DIR`), to work on the floor without a Cairn run.
    if let Some(i) = args.iter().position(|a| a == "--floor-only") {
        let dir = Path::new(args.get(i + 1).context("--floor-only takes a directory")?);
        floor(&images, dir)?;
        return Ok(());
    }
    let keep = match args.iter().position(|a| a == "--keep") {
        Some(i) => Some(args.get(i + 1).context("--keep takes a directory")?),
        None => None,
    };
    let mut cairn = Vec::new();
    let mut floors = Vec::new();
    for run in 1..=runs {
        let temp = tempfile::tempdir()?;
        let dir = match keep {
            Some(k) => Path::new(k).join(format!("run-{run}")),
            None => temp.path().to_path_buf(),
        };
        std::fs::create_dir_all(&dir)?;
        eprintln!("k8s bench: run {run}/{runs}: Cairn");
        cairn.push(cairn_run(&images, &dir).context("Cairn")?);
        eprintln!("k8s bench: run {run}/{runs}: the floor");
        floors.push(floor(&images, &dir)?);
    }
    report(&images, &cairn, &floors)
}

/// Builds and measures the floor from the inputs in `dir/floor-inputs`.
fn floor(images: &Images, dir: &Path) -> anyhow::Result<kube_floor::Times> {
    let inputs = Inputs {
        dir: dir.join("floor-inputs"),
    };
    let work = dir.join("floor");
    std::fs::create_dir_all(&work)?;
    let media = kube_floor::build(images, &inputs, &work).context("floor media")?;
    let f = kube_floor::measure("bench-floor-k8s", images, &media, &inputs, MEMORY_MIB)
        .context("floor")?;
    eprintln!(
        "k8s bench: floor: /readyz {:.1} s, static Pods {:.1} s, Node Ready {:.1} s after /init ({:.1} s of kernel)",
        f.api_ready, f.static_pods, f.node_ready, f.kernel
    );
    Ok(f)
}

/// Boots Cairn, brings Kubernetes up, collects the floor's inputs from the
/// node, reboots it and measures its way back to Ready.
fn cairn_run(images: &Images, dir: &Path) -> anyhow::Result<CairnRun> {
    let mut config = VmConfig::disk("bench-kubernetes", images, Firmware::SeaBios)?;
    config.disk_gib = Some(kube::NODE_DISK_GIB);
    config.memory_mib = MEMORY_MIB;
    let api_port = ports::free_port()?;
    config.forwards.push((api_port, kube::APISERVER_PORT));
    eprintln!(
        "k8s bench: booting the raw image (TCG, {} vCPUs, {} MiB)…",
        config.cpus, config.memory_mib
    );
    let mut vm = Vm::start(&config)?;
    vm.expect(MAINTENANCE_BANNER, config.boot_timeout())?;
    vm.wait_for_version(Duration::from_secs(60))?;
    let node = Node::configure(dir, "bench", &vm.apid_node())?;
    let kubectl = Kubectl::new(&images.dir, &node.kubeconfig);

    eprintln!("k8s bench: bootstrap…");
    let t0 = Instant::now();
    node.bootstrap()?;
    kube::eventually("kubeconfig", STEP, EVERY, || {
        node.fetch_kubeconfig(&kubectl, api_port)
    })?;
    kube::eventually("/readyz", STEP, EVERY, || {
        kubectl.ok(&["get", "--raw", "/readyz"]).map(drop)
    })?;
    let api_ready = t0.elapsed().as_secs_f64();
    kube::eventually("node Ready", STEP, EVERY, || {
        anyhow::ensure!(!kubectl.ready_nodes()?.is_empty(), "no Ready node");
        Ok(())
    })?;
    let node_ready = t0.elapsed().as_secs_f64();
    eprintln!("k8s bench: /readyz after {api_ready:.0} s, node Ready after {node_ready:.0} s; waiting for DNS…");
    kubectl.apply(&kube::test_workload())?;
    kubectl.wait_pods_ready("default", &["client"], STEP, &mut |m| {
        eprintln!("k8s bench: {m}")
    })?;
    kubectl.exec_until_ok(
        "client",
        &["resolve", "kubernetes.default.svc.cluster.local"],
        STEP,
    )?;
    let dns = t0.elapsed().as_secs_f64();
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
    let bringup = node
        .ctl(&["events", "-o", "json"])
        .and_then(|j| timeline::parse(&j).map_err(anyhow::Error::msg))?;

    eprintln!("k8s bench: copying the floor's inputs from the node…");
    Inputs::collect(&node, &dir.join("floor-inputs")).context("floor inputs")?;

    eprintln!("k8s bench: reboot…");
    let boot_id = |kubectl: &Kubectl| -> anyhow::Result<String> {
        let v = kubectl.json(&["get", "nodes"])?;
        v["items"][0]["status"]["nodeInfo"]["bootID"]
            .as_str()
            .map(str::to_string)
            .context("no bootID")
    };
    let before = boot_id(&kubectl)?;
    let t1 = Instant::now();
    node.ctl(&["reboot"])?;
    kube::eventually("Ready after the reboot", STEP, EVERY, || {
        anyhow::ensure!(boot_id(&kubectl)? != before, "the old boot");
        anyhow::ensure!(!kubectl.ready_nodes()?.is_empty(), "not Ready");
        Ok(())
    })?;
    let reboot_ready = t1.elapsed().as_secs_f64();
    eprintln!("k8s bench: Ready {reboot_ready:.0} s after the reboot");
    vm.kill();
    Ok(CairnRun {
        api_ready,
        node_ready,
        dns,
        reboot_ready,
        machined_mib,
        apid_mib,
        bringup,
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn report(images: &Images, cairn: &[CairnRun], floors: &[kube_floor::Times]) -> anyhow::Result<()> {
    let size = |p: std::path::PathBuf| {
        std::fs::metadata(&p)
            .map(|m| m.len() as f64 / 1e6)
            .unwrap_or(0.0)
    };
    let raw_allocated = {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(images.raw()?)?.blocks() as f64 * 512.0 / 1e6
    };
    let runs = cairn.len();
    let of = |f: fn(&CairnRun) -> f64| median(cairn.iter().map(f).collect());
    let floor_of = |f: fn(&kube_floor::Times) -> f64| median(floors.iter().map(f).collect());
    println!();
    println!(
        "Kubernetes on one node: QEMU TCG, 2 vCPUs, {MEMORY_MIB} MiB, {}",
        if runs == 1 {
            "one run".to_string()
        } else {
            format!("median of {runs} runs")
        }
    );
    println!(
        "  {:<40} {:>8} {:>8} {:>7}  target",
        "", "Cairn", "floor", "ratio"
    );
    let row = |what: &str, c: f64, f: f64, target: bool| {
        let ratio = c / f;
        let verdict = match (target, ratio <= RATIO_TARGET) {
            (false, _) => String::new(),
            (true, true) => format!("<= {RATIO_TARGET} x: ok"),
            (true, false) => format!("<= {RATIO_TARGET} x: MISSED"),
        };
        println!(
            "  {:<40} {:>8} {:>8} {:>7}  {verdict}",
            what,
            format!("{c:.0} s"),
            format!("{f:.0} s"),
            format!("{ratio:.2} x")
        );
    };
    row(
        "bootstrap → API /readyz",
        of(|c| c.api_ready),
        floor_of(|f| f.api_ready),
        false,
    );
    row(
        "bootstrap → node Ready",
        of(|c| c.node_ready),
        floor_of(|f| f.node_ready),
        true,
    );
    // The floor runs no add-on: its Ready node is the earliest any Pod,
    // cluster DNS included, could answer.
    row(
        "bootstrap → DNS answering (floor: Ready)",
        of(|c| c.dns),
        floor_of(|f| f.node_ready),
        false,
    );
    row(
        "reboot → node Ready (floor: a cold boot)",
        of(|c| c.reboot_ready),
        floor_of(|f| f.kernel + f.node_ready),
        true,
    );
    println!(
        "  {:<40} {:>8}",
        "floor: static Pods running",
        format!("{:.0} s", floor_of(|f| f.static_pods))
    );
    if runs > 1 {
        println!(
            "  each run (Cairn readyz / Ready / DNS / reboot; floor readyz / Ready / kernel):"
        );
        for (i, (c, f)) in cairn.iter().zip(floors).enumerate() {
            println!(
                "    {}: {:.0} / {:.0} / {:.0} / {:.0} s; {:.0} / {:.0} / {:.1} s",
                i + 1,
                c.api_ready,
                c.node_ready,
                c.dns,
                c.reboot_ready,
                f.api_ready,
                f.node_ready,
                f.kernel
            );
        }
    }
    let machined_mib = of(|c| c.machined_mib);
    println!(
        "  {:<40} {:>8}  target <= {RSS_TARGET_MIB} MiB: {}",
        "RSS machined, cluster running",
        format!("{machined_mib:.1} MiB"),
        if machined_mib <= RSS_TARGET_MIB {
            "ok"
        } else {
            "MISSED"
        }
    );
    println!(
        "  {:<40} {:>8}",
        "RSS apid, cluster running",
        format!("{:.1} MiB", of(|c| c.apid_mib))
    );
    println!(
        "  {:<40} {:>8}",
        "payload.sqsh",
        format!("{:.1} MB", size(images.dir.join("payload.sqsh")))
    );
    println!(
        "  {:<40} {:>8}",
        "ISO with the payload",
        format!("{:.1} MB", size(images.iso()?))
    );
    println!(
        "  {:<40} {:>8}",
        "raw disk with the payload (allocated)",
        format!("{raw_allocated:.1} MB")
    );
    // The node's own account of where the time went (seconds since boot,
    // and the gap to the phase before): the critical path of the bring-up.
    println!("  bring-up timeline of the last run (seconds since boot, gap):");
    if let Some(last) = cairn.last() {
        print!("{}", timeline::render(&last.bringup));
    }
    Ok(())
}
