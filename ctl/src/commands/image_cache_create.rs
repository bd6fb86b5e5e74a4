//! `cairnctl image cache-create --images <archives> -o <dir>`: builds an
//! image cache from image archives the user has, for `make image
//! IMAGE_CACHE=<dir>` to put on the boot medium. Needs no node.
//!
//! The directory holds one OCI archive per input (checked blob by blob,
//! images named by their full references) and `refs.txt`, one
//! `<file> <reference>` line per image, the payload's format. It is written
//! beside its destination and renamed into place: an interrupted run leaves
//! no half cache.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context as _};
use serde::Serialize;

use crate::oci_archive::{self, Format};
use crate::output::{self, Table};

#[derive(clap::Args, Debug)]
#[command(after_help = "\
Examples:
  cairnctl image cache-create --images web.tar,api.tar -o _out/my-cache
  make image IMAGE_CACHE=_out/my-cache

Archives are OCI image layouts in a tar file (skopeo copy ...
oci-archive:web.tar:registry.example/web:1.0, buildah push, docker save of
Docker 25 or later) or docker-archives (docker save of older Docker). Every
image needs its full name in the archive (a RepoTag, or the index's
io.containerd.image.name / org.opencontainers.image.ref.name). Nodes
booted from the image import the cache at every boot, and serve it to
Pods through the node's image cache registry with any pull policy, without
network.")]
pub struct Args {
    /// The image archives, comma-separated or repeated.
    #[arg(long, value_delimiter = ',', required = true, value_name = "ARCHIVE")]
    pub images: Vec<PathBuf>,
    /// The cache directory to create (it must not exist, or be empty).
    #[arg(short = 'o', long = "output", value_name = "DIR")]
    pub output: PathBuf,
    /// How to print the cache's contents (`-o` names the directory here).
    #[arg(long, value_enum, default_value_t = output::Format::Table)]
    pub format: output::Format,
}

#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
struct Entry {
    archive: String,
    format: Format,
    file: String,
    images: Vec<String>,
    size: u64,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let out = &args.output;
    check_destination(out)?;
    let staging = oci_archive::staging_dir(out);
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging).with_context(|| format!("creating {}", staging.display()))?;
    let result = build(&args.images, &staging, args.format == output::Format::Table);
    let entries = match result {
        Ok(e) => e,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(e);
        }
    };
    if out.is_dir() {
        std::fs::remove_dir(out)
            .with_context(|| format!("removing the empty {}", out.display()))?;
    }
    std::fs::rename(&staging, out)
        .with_context(|| format!("renaming {} to {}", staging.display(), out.display()))?;
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::File::open(parent).and_then(|d| d.sync_all()).ok();
    }
    output::print_records(
        args.format,
        || {
            let mut table = Table::new(["FILE", "FROM", "FORMAT", "SIZE", "IMAGES"]);
            for e in &entries {
                table.row([
                    e.file.clone(),
                    e.archive.clone(),
                    e.format.to_string(),
                    output::bytes(e.size),
                    e.images.join(", "),
                ]);
            }
            table
        },
        &entries,
    )?;
    if args.format == output::Format::Table {
        let images: usize = entries.iter().map(|e| e.images.len()).sum();
        let size: u64 = entries.iter().map(|e| e.size).sum();
        println!(
            "\n{images} images, {} in {}; `make image IMAGE_CACHE={}` puts them on the boot medium",
            output::bytes(size),
            out.display(),
            out.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The destination must not exist, or be an empty directory.
fn check_destination(out: &Path) -> anyhow::Result<()> {
    match std::fs::read_dir(out) {
        Ok(mut rd) => {
            if rd.next().is_some() {
                bail!(
                    "--output {}: the directory exists and is not empty; remove it or name another",
                    out.display()
                );
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => {
            bail!("--output {}: a file of that name exists", out.display())
        }
        Err(e) => Err(e).with_context(|| format!("--output {}", out.display())),
    }
}

/// Converts every archive into `dir` and writes `refs.txt`.
fn build(archives: &[PathBuf], dir: &Path, progress: bool) -> anyhow::Result<Vec<Entry>> {
    let mut entries = Vec::new();
    let mut seen = std::collections::BTreeMap::new();
    let say = |m: String| {
        if progress {
            eprintln!("{m}");
        }
    };
    for (i, archive) in archives.iter().enumerate() {
        let shown = archive.display().to_string();
        say(format!("reading  {shown}"));
        let plan = oci_archive::plan(archive).with_context(|| format!("--images {shown}"))?;
        for image in &plan.images {
            if let Some(other) = seen.insert(image.clone(), shown.clone()) {
                bail!("--images: {image} is in both {other} and {shown}");
            }
        }
        let file = oci_archive::file_name(i + 1, &plan.images[0]);
        say(format!(
            "writing  {file} ({}, {}, {})",
            plan.format,
            output::bytes(plan.size),
            plan.images.join(", ")
        ));
        oci_archive::write(archive, &plan, &dir.join(&file))
            .with_context(|| format!("--images {shown}"))?;
        entries.push(Entry {
            archive: shown,
            format: plan.format,
            file,
            images: plan.images,
            size: plan.size,
        });
    }
    let mut refs = String::new();
    for e in &entries {
        for image in &e.images {
            refs.push_str(&format!("{} {image}\n", e.file));
        }
    }
    let path = dir.join("refs.txt");
    let mut f =
        std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
    f.write_all(refs.as_bytes())
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_non_empty_destination_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("keep"), b"x").unwrap();
        let e = check_destination(dir.path()).unwrap_err().to_string();
        assert!(e.contains("--output") && e.contains("not empty"), "{e}");
        assert!(dir.path().join("keep").exists());
        assert!(check_destination(&dir.path().join("new")).is_ok());
        let e = check_destination(&dir.path().join("keep"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("a file of that name"), "{e}");
    }

    #[test]
    fn a_bad_archive_leaves_no_cache() {
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("bad.tar");
        std::fs::write(&bad, b"not a tar at all").unwrap();
        let out = dir.path().join("cache");
        let e = run(Args {
            images: vec![bad],
            output: out.clone(),
            format: output::Format::Json,
        })
        .unwrap_err();
        assert!(format!("{e:#}").contains("--images"), "{e:#}");
        assert!(!out.exists());
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(left.len(), 1, "only bad.tar remains: {left:?}");
    }
}
