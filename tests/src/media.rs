//! Boot media altered for a test, from the built ones.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};

/// A copy of the raw disk image `raw` in `dir` whose BOOT partition lacks
/// `A/payload.sqsh`: a node that boots it has no Kubernetes payload until
/// another medium (the ISO, put in its drive) brings one. The copy keeps
/// the image sparse; debugfs (e2fsprogs, which the image build needs
/// already) removes the file inside the ext4 filesystem at BOOT's offset.
pub fn raw_without_payload(raw: &Path, dir: &Path) -> anyhow::Result<PathBuf> {
    let copy = dir.join("without-payload.raw");
    run(Command::new("cp")
        .arg("--sparse=always")
        .arg(raw)
        .arg(&copy))?;
    let table = run(Command::new("sfdisk").arg("-J").arg(&copy))?;
    let table: serde_json::Value =
        serde_json::from_str(&table).context("sfdisk -J printed no JSON")?;
    let sector = table["partitiontable"]["sectorsize"]
        .as_u64()
        .unwrap_or(512);
    let boot = table["partitiontable"]["partitions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["name"] == "BOOT")
        .and_then(|p| p["start"].as_u64())
        .with_context(|| format!("{} has no BOOT partition", raw.display()))?;
    let fs = format!("{}?offset={}", copy.display(), boot * sector);
    run(Command::new("debugfs")
        .args(["-w", "-R", "rm /A/payload.sqsh"])
        .arg(&fs))?;
    let listing = run(Command::new("debugfs").args(["-R", "ls /A"]).arg(&fs))?;
    if listing.contains("payload.sqsh") {
        bail!("debugfs left A/payload.sqsh on BOOT: {listing}");
    }
    Ok(copy)
}

/// Runs `cmd`; its standard output, or an error with its standard error.
fn run(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd
        .output()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
