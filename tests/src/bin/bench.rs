//! `make bench`: boot time, memory and image sizes under QEMU TCG, from
//! one run, printed as a table with the targets beside the figures.
//!
//! - boot to API, direct kernel boot: from starting QEMU to the first
//!   Version answered through apid;
//! - the floor: the same kernel and boot path with a static /init that
//!   reboots at once (QEMU exits), from starting QEMU to its exit;
//! - boot to API from the ISO with SeaBIOS;
//! - RSS of machined, apid and init at idle, from machined's console status
//!   line (the image has no shell to ask);
//! - sizes of vmlinuz, initramfs, ISO and raw disk.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context};
use cairn_tests::{cpio, Boot, Firmware, Images, Vm, VmConfig, STATUS_LINE};
use regex::Regex;

const MIB: f64 = 1024.0 * 1024.0;
const MB: f64 = 1_000_000.0;

fn main() -> anyhow::Result<()> {
    // `--runs N`: boot the floor and the direct boot N times each and show
    // the median (TCG timings vary with the host's load).
    let args: Vec<String> = std::env::args().collect();
    let runs = cairn_tests::runs_flag(&args)?;
    let images = Images::locate();
    for f in [
        images.kernel()?,
        images.initramfs()?,
        images.iso()?,
        images.raw()?,
    ] {
        anyhow::ensure!(f.is_file(), "{} missing", f.display());
    }
    eprintln!(
        "bench: images in {}; every boot runs under TCG, one after another",
        images.dir.display()
    );

    let mut floors = Vec::new();
    let mut directs = Vec::new();
    let mut rss = None;
    for run in 1..=runs {
        eprintln!("bench: run {run}/{runs}: floor (same kernel, /init that reboots at once)…");
        floors.push(floor_boot(&images).context("floor boot")?);
        eprintln!("bench: run {run}/{runs}: direct kernel boot to API, then idle RSS…");
        let (direct, r) = direct_boot(&images).context("direct kernel boot")?;
        directs.push(direct);
        rss = Some(r);
    }
    let (floor, direct) = (median(floors), median(directs));
    let rss = rss.expect("at least one run");

    eprintln!("bench: ISO (SeaBIOS) boot to API…");
    let iso = iso_boot(&images).context("ISO boot")?;

    let size = |p: PathBuf| -> anyhow::Result<u64> {
        Ok(std::fs::metadata(&p)
            .with_context(|| format!("{}", p.display()))?
            .len())
    };
    let vmlinuz = size(images.kernel()?)?;
    let initramfs = size(images.initramfs()?)?;
    let iso_size = size(images.iso()?)?;
    let raw = size(images.raw()?)?;
    let raw_allocated = allocated(&images.raw()?)?;
    // The Kubernetes payload (on BOOT and the ISO), when the image has one.
    let payload = std::fs::metadata(images.dir.join("payload.sqsh"))
        .map(|m| m.len())
        .ok();

    let mut t = Table::default();
    println!();
    let runs_text = if runs == 1 {
        "one run".to_string()
    } else {
        format!("median of {runs} runs")
    };
    println!("Cairn boot benchmark: QEMU TCG, 2 vCPUs, 2048 MiB, {runs_text}");
    let ratio = direct.as_secs_f64() / floor.as_secs_f64();
    let boot_ok = ratio <= 1.5;
    t.row(
        "boot to API, direct kernel boot",
        &secs(direct),
        &format!(
            "<= 1.5 x floor ({:.2} s): {ratio:.2} x",
            1.5 * floor.as_secs_f64()
        ),
        Some(boot_ok),
    );
    t.row("  floor: same kernel, init reboots", &secs(floor), "", None);
    t.row("boot to API, ISO with SeaBIOS", &secs(iso), "", None);
    let together = rss.machined + rss.apid;
    let rss_ok = together as f64 <= 16.0 * 1024.0;
    t.row(
        "RSS machined + apid, idle",
        &kib(together),
        "<= 16 MiB",
        Some(rss_ok),
    );
    t.row("  machined", &kib(rss.machined), "", None);
    t.row("  apid", &kib(rss.apid), "", None);
    t.row("  init", &rss.init, "", None);
    let boot_files = vmlinuz + initramfs;
    let size_ok = boot_files as f64 <= 40.0 * MB;
    t.row(
        "vmlinuz + initramfs",
        &mb(boot_files),
        "<= 40 MB",
        Some(size_ok),
    );
    t.row("  vmlinuz", &mb(vmlinuz), "", None);
    t.row("  initramfs.img", &mb(initramfs), "", None);
    t.row(
        if payload.is_some() {
            "ISO (with the payload)"
        } else {
            "ISO"
        },
        &mb(iso_size),
        "",
        None,
    );
    if let Some(p) = payload {
        t.row(
            "  payload.sqsh (Kubernetes, on BOOT and the ISO)",
            &mb(p),
            "",
            None,
        );
        t.row(
            "  ISO without the payload",
            &mb(iso_size.saturating_sub(p)),
            "",
            None,
        );
    }
    t.row(
        "raw disk (size / allocated)",
        &format!("{} / {}", mb(raw), mb(raw_allocated)),
        "",
        None,
    );
    t.print();
    let met = [boot_ok, rss_ok, size_ok].iter().filter(|ok| **ok).count();
    println!("\ntargets met: {met} of 3");
    Ok(())
}

/// Boots the kernel with a one-file initramfs whose /init reboots at once.
fn floor_boot(images: &Images) -> anyhow::Result<Duration> {
    let dir = tempfile::tempdir()?;
    let src = cairn_tests::images::workspace_root().join("tests/floor-init/floor-init.c");
    let init = dir.path().join("init");
    let out = Command::new("gcc")
        .args(["-static", "-Os", "-s", "-o"])
        .arg(&init)
        .arg(&src)
        .output()
        .context("running gcc")?;
    if !out.status.success() {
        bail!(
            "gcc -static {}: {}",
            src.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let cpio_path = dir.path().join("floor.cpio");
    std::fs::write(
        &cpio_path,
        cpio::Writer::new()
            .file("init", 0o755, &std::fs::read(&init)?)
            .finish(),
    )?;

    let mut config = VmConfig::direct("bench-floor", images, "")?;
    if let Boot::Direct { initrd, .. } = &mut config.boot {
        *initrd = cpio_path;
    }
    config.no_reboot = true;
    let mut vm = Vm::start(&config)?;
    let status = vm.wait_exit(config.boot_timeout())?;
    let elapsed = vm.started.elapsed();
    anyhow::ensure!(status.success(), "QEMU exited with {status}");
    Ok(elapsed)
}

struct Rss {
    machined: u64,
    apid: u64,
    init: String,
}

/// Boot to the first answered Version, then read RSS from the second status
/// line (about 10 s after the API came up: idle).
fn direct_boot(images: &Images) -> anyhow::Result<(Duration, Rss)> {
    let config = VmConfig::direct("bench-direct", images, "")?;
    let mut vm = Vm::start(&config)?;
    vm.wait_for_version(config.boot_timeout())?;
    let ready = vm.started.elapsed();
    let re = Regex::new(STATUS_LINE).unwrap();
    vm.expect(STATUS_LINE, Duration::from_secs(30))?;
    let line = vm.expect(STATUS_LINE, Duration::from_secs(30))?;
    let c = re.captures(&line).context("status line")?;
    let rss = Rss {
        machined: c[1].parse()?,
        apid: c[2].parse()?,
        init: match c[3].parse::<u64>() {
            Ok(k) => kib(k),
            Err(_) => c[3].to_string(),
        },
    };
    Ok((ready, rss))
}

fn iso_boot(images: &Images) -> anyhow::Result<Duration> {
    let config = VmConfig::iso("bench-iso", images, Firmware::SeaBios)?;
    let mut vm = Vm::start(&config)?;
    vm.wait_for_version(config.boot_timeout())?;
    Ok(vm.started.elapsed())
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn allocated(p: &Path) -> anyhow::Result<u64> {
    use std::os::unix::fs::MetadataExt;
    Ok(std::fs::metadata(p)?.blocks() * 512)
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

fn kib(k: u64) -> String {
    format!("{:.1} MiB", k as f64 * 1024.0 / MIB)
}

fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / MB)
}

/// Rows of (what, figure, target, met?), printed with aligned columns.
#[derive(Default)]
struct Table {
    rows: Vec<[String; 4]>,
}

impl Table {
    fn row(&mut self, what: &str, figure: &str, target: &str, ok: Option<bool>) {
        let verdict = match ok {
            Some(true) => "ok",
            Some(false) => "MISSED",
            None => "",
        };
        self.rows
            .push([what.into(), figure.into(), target.into(), verdict.into()]);
    }

    fn print(&self) {
        let header = ["", "figure", "target", ""].map(String::from);
        let all: Vec<&[String; 4]> = std::iter::once(&header).chain(&self.rows).collect();
        let w = |i: usize| all.iter().map(|r| r[i].len()).max().unwrap_or(0);
        let (w0, w1, w2) = (w(0), w(1), w(2));
        for r in all {
            let line = format!("  {:<w0$}  {:>w1$}  {:<w2$}  {}", r[0], r[1], r[2], r[3]);
            println!("{}", line.trim_end());
        }
    }
}
