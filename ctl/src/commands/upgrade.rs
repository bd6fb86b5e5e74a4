//! `cairnctl upgrade --image <dir>`: stream a new kernel, initramfs (and
//! Kubernetes payload) to nodes over the Upgrade RPC, each with its
//! sha256 and, when the image was signed (`<file>.sig` beside it, or in
//! `--signature DIR`), its signature; the node writes them to its
//! inactive slot and boots it once. Nodes that list trusted keys refuse
//! unsigned or otherwise signed assets.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use api::machine::upgrade_request::Part;
use api::machine::{UpgradeHeader, UpgradeRequest};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use sha2::{Digest, Sha256};

use super::apply_config::parse_duration;
use super::reboot::went_down;
use crate::global::GlobalArgs;
use crate::session::{self, Session};
use crate::wait;

/// Bytes per message (apid forwards messages up to 4 MiB).
const CHUNK: usize = 1 << 20;

#[derive(clap::Args, Debug)]
#[command(after_help = "\
Examples:
  cairnctl -n 10.5.0.2 upgrade --image _out/
  cairnctl -n 10.5.0.2 upgrade --image /srv/cairn-v0.2.0 --stage
  cairnctl -n 10.5.0.2,10.5.0.3 upgrade --image _out/ --wait

The directory holds vmlinuz and initramfs.img, and payload.sqsh when the image
has a Kubernetes payload (an image build's output directory does); a Cairn ISO
works too (its /boot files are sent). Signatures (vmlinuz.sig, ...; `make image
SIGNING_KEY=...` writes them) are sent when they sit beside the files (for an
ISO: beside the ISO) or in --signature DIR. The node
writes them to the slot it is not running, then boots that slot once; it
becomes the default only when the node comes up healthy on it, else the old
slot boots again by itself (`cairnctl get meta` says why). Needs an admin
certificate.")]
pub struct Args {
    /// Directory with vmlinuz, initramfs.img and optionally payload.sqsh,
    /// or a Cairn ISO.
    #[arg(long, value_name = "DIR|ISO")]
    pub image: PathBuf,
    /// Write the new slot but boot it only at the next reboot.
    #[arg(long)]
    pub stage: bool,
    /// Wait until the nodes are back and print their versions.
    #[arg(long, conflicts_with = "stage")]
    pub wait: bool,
    /// With --wait: how long a node may take to come back.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "15m")]
    pub timeout: Duration,
    /// Directory holding the assets' signatures (vmlinuz.sig,
    /// initramfs.img.sig, payload.sqsh.sig); by default the image's.
    #[arg(long, value_name = "DIR")]
    pub signature: Option<PathBuf>,
}

/// One file to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Asset {
    /// The Upgrade RPC's asset name: kernel, initramfs, payload.
    pub name: &'static str,
    pub path: PathBuf,
    pub size: u64,
    pub sha256: String,
    /// The asset's signature file, when there is one.
    pub signature: Option<Vec<u8>>,
}

/// Reads `<file>.sig` for each asset from `dir`: the detached signatures
/// the image build wrote. A file that is not a signature is an error here,
/// before anything is sent.
pub fn attach_signatures(assets: &mut [Asset], dir: &Path) -> anyhow::Result<()> {
    for a in assets {
        let Some(file) = a.path.file_name() else {
            continue;
        };
        let mut name = file.to_os_string();
        name.push(".sig");
        let path = dir.join(name);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => anyhow::bail!("reading {}: {e}", path.display()),
        };
        config::signing::Signature::parse(&bytes)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        a.signature = Some(bytes);
    }
    Ok(())
}

/// How the assets are signed, for people: `signed by key <id>`,
/// `unsigned`, or a list when they differ.
pub fn describe_signatures(assets: &[Asset]) -> String {
    let ids: Vec<String> = assets
        .iter()
        .map(|a| match &a.signature {
            Some(s) => config::signing::Signature::parse(s)
                .map(|s| format!("signed by key {}", s.key_id))
                .unwrap_or_else(|_| "badly signed".into()),
            None => "unsigned".into(),
        })
        .collect();
    match ids.first() {
        Some(first) if ids.iter().all(|i| i == first) => first.clone(),
        _ => assets
            .iter()
            .zip(&ids)
            .map(|(a, i)| format!("{} {i}", a.name))
            .collect::<Vec<_>>()
            .join(", "),
    }
}

/// The assets in `dir`, with their sizes and digests.
pub fn image_assets(dir: &Path) -> anyhow::Result<Vec<Asset>> {
    if !dir.is_dir() {
        anyhow::bail!(
            "--image {}: expected a directory holding vmlinuz and initramfs.img (e.g. an image build's _out/) \
             or a Cairn ISO",
            dir.display()
        );
    }
    let mut assets = Vec::new();
    for (name, file, required) in [
        ("kernel", "vmlinuz", true),
        ("initramfs", "initramfs.img", true),
        ("payload", "payload.sqsh", false),
    ] {
        let path = dir.join(file);
        if !path.is_file() {
            if required {
                anyhow::bail!("--image {}: no {file} there", dir.display());
            }
            continue;
        }
        let (size, sha256) = digest(&path)?;
        assets.push(Asset {
            name,
            path,
            size,
            sha256,
            signature: None,
        });
    }
    Ok(assets)
}

fn digest(path: &Path) -> anyhow::Result<(u64, String)> {
    let mut f = std::fs::File::open(path)
        .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let mut size = 0u64;
    loop {
        let n = f
            .read(&mut buf)
            .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        size += n as u64;
    }
    Ok((size, hex::encode(h.finalize())))
}

/// The version an image build wrote next to its files (`version`), if any.
pub fn image_version(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("version"))
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_default()
}

/// The request stream for `assets`: per asset a header, chunks, sha256.
/// Files are read as the stream is polled; `progress` counts the bytes.
pub fn requests(
    assets: Vec<Asset>,
    version: String,
    stage: bool,
    progress: ProgressBar,
) -> impl futures::Stream<Item = UpgradeRequest> + Send + 'static {
    enum Step {
        Header(usize),
        Data(usize, std::fs::File),
        Done,
    }
    futures::stream::unfold(Step::Header(0), move |step| {
        let assets = assets.clone();
        let version = version.clone();
        let progress = progress.clone();
        async move {
            match step {
                Step::Header(i) => {
                    let a = assets.get(i)?;
                    let file = match std::fs::File::open(&a.path) {
                        Ok(f) => f,
                        Err(e) => {
                            progress.abandon_with_message(format!(
                                "cannot read {}: {e}",
                                a.path.display()
                            ));
                            return None;
                        }
                    };
                    progress.set_message(a.name);
                    let header = UpgradeHeader {
                        asset: a.name.into(),
                        size: a.size,
                        version,
                        stage,
                        signature: a.signature.clone(),
                    };
                    Some((
                        UpgradeRequest {
                            part: Some(Part::Header(header)),
                        },
                        Step::Data(i, file),
                    ))
                }
                Step::Data(i, mut file) => {
                    let mut buf = vec![0u8; CHUNK];
                    match file.read(&mut buf) {
                        Ok(0) => {
                            let sha = assets[i].sha256.clone();
                            let next = if i + 1 < assets.len() {
                                Step::Header(i + 1)
                            } else {
                                Step::Done
                            };
                            Some((
                                UpgradeRequest {
                                    part: Some(Part::Sha256(sha)),
                                },
                                next,
                            ))
                        }
                        Ok(n) => {
                            buf.truncate(n);
                            progress.inc(n as u64);
                            Some((
                                UpgradeRequest {
                                    part: Some(Part::Chunk(buf)),
                                },
                                Step::Data(i, file),
                            ))
                        }
                        Err(e) => {
                            progress.abandon_with_message(format!(
                                "reading {}: {e}",
                                assets[i].path.display()
                            ));
                            None
                        }
                    }
                }
                Step::Done => None,
            }
        }
    })
}

pub async fn run(args: Args, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    // An ISO: its boot files, copied out to a temporary directory.
    let extracted = if args.image.is_file() {
        Some(iso::extract(&args.image)?)
    } else {
        None
    };
    let dir = extracted
        .as_ref()
        .map_or(args.image.as_path(), |d| d.path());
    let mut assets = image_assets(dir)?;
    let sig_dir = match (&args.signature, &extracted) {
        (Some(d), _) => d.clone(),
        (None, Some(_)) => args
            .image
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default(),
        (None, None) => args.image.clone(),
    };
    if args.signature.as_ref().is_some_and(|d| !d.is_dir()) {
        anyhow::bail!(
            "--signature {}: expected the directory holding vmlinuz.sig and initramfs.img.sig",
            sig_dir.display()
        );
    }
    attach_signatures(&mut assets, &sig_dir)?;
    let version = image_version(dir);
    let total: u64 = assets.iter().map(|a| a.size).sum();
    let names: Vec<String> = assets
        .iter()
        .map(|a| format!("{} ({})", a.name, crate::output::bytes(a.size)))
        .collect();
    eprintln!(
        "upgrade: {}{} from {} ({})",
        names.join(", "),
        if version.is_empty() {
            String::new()
        } else {
            format!(", version {version}")
        },
        args.image.display(),
        describe_signatures(&assets)
    );
    let session = Session::open(global).await?;
    let bars = MultiProgress::new();
    let style = ProgressStyle::with_template(
        "{prefix} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {msg}",
    )
    .expect("a valid template")
    .progress_chars("=> ");
    let results = session
        .each(|c| {
            let bar = bars.add(
                ProgressBar::new(total)
                    .with_style(style.clone())
                    .with_prefix(c.node.to_string()),
            );
            let stream = requests(assets.clone(), version.clone(), args.stage, bar.clone());
            async move {
                let c = c.without_call_timeout().await?;
                let response = c.machine().upgrade(c.request(stream)).await;
                bar.finish_and_clear();
                match response {
                    Ok(r) => Ok(Some(r.into_inner().message)),
                    // The node rebooting as it answers.
                    Err(s) if went_down(&s) => Ok(None),
                    Err(s) => Err(c.explain(&s, "Upgrade")),
                }
            }
        })
        .await;
    for (node, message) in session::successes(&results) {
        match message {
            Some(m) => eprintln!("{node}: {m}"),
            None => eprintln!("{node}: upgraded; rebooting"),
        }
    }
    let mut code = session::report_errors(&results);
    if args.wait {
        let accepted = session.accepted(&results);
        let waited = wait::until_rebooted(&accepted, args.timeout).await;
        if session::report_errors(&waited) != ExitCode::SUCCESS {
            code = ExitCode::FAILURE;
        }
        for c in &accepted {
            match c.probe_version(Duration::from_secs(10)).await {
                Ok(v) => eprintln!(
                    "{}: running {} in slot {}",
                    c.node, v.version, v.booted_slot
                ),
                Err(e) => eprintln!("{}: {e}", c.node),
            }
        }
    }
    Ok(code)
}

/// Reading the boot files out of a Cairn ISO (ISO 9660 with Rock Ridge
/// names, as images/grub.sh builds it). Hand-written: only directory
/// records and the Rock Ridge NM entry are needed, a few dozen lines.
pub mod iso {
    use std::fs::File;
    use std::os::unix::fs::FileExt;
    use std::path::{Path, PathBuf};

    const SECTOR: u64 = 2048;

    #[derive(Debug, Clone)]
    struct Entry {
        name: String,
        lba: u64,
        size: u64,
        dir: bool,
    }

    fn read(f: &File, at: u64, len: usize) -> std::io::Result<Vec<u8>> {
        let mut buf = vec![0u8; len];
        f.read_exact_at(&mut buf, at)?;
        Ok(buf)
    }

    /// The Rock Ridge name in a record's system use area, if any.
    fn rock_ridge_name(mut su: &[u8]) -> Option<String> {
        while su.len() >= 4 {
            let len = su[2] as usize;
            if len < 4 || len > su.len() {
                break;
            }
            if &su[..2] == b"NM" && len > 5 {
                return Some(String::from_utf8_lossy(&su[5..len]).into_owned());
            }
            su = &su[len..];
        }
        None
    }

    fn list(f: &File, lba: u64, size: u64) -> std::io::Result<Vec<Entry>> {
        let data = read(f, lba * SECTOR, size as usize)?;
        let mut out = Vec::new();
        let mut i = 0;
        while i < data.len() {
            let len = data[i] as usize;
            if len == 0 {
                // Records do not cross sectors: go to the next one.
                i = (i / SECTOR as usize + 1) * SECTOR as usize;
                continue;
            }
            let Some(r) = data.get(i..i + len) else { break };
            if r.len() < 34 {
                break;
            }
            let name_len = r[32] as usize;
            let raw = &r[33..(33 + name_len).min(r.len())];
            let su = r
                .get(33 + name_len + (1 - name_len % 2)..)
                .unwrap_or_default();
            let name = rock_ridge_name(su).unwrap_or_else(|| {
                let n = String::from_utf8_lossy(raw).to_lowercase();
                n.split(';')
                    .next()
                    .unwrap_or_default()
                    .trim_end_matches('.')
                    .to_string()
            });
            if raw != [0] && raw != [1] {
                out.push(Entry {
                    name,
                    lba: u64::from(u32::from_le_bytes(r[2..6].try_into().unwrap())),
                    size: u64::from(u32::from_le_bytes(r[10..14].try_into().unwrap())),
                    dir: r[25] & 2 != 0,
                });
            }
            i += len;
        }
        Ok(out)
    }

    fn find(f: &File, path: &str) -> std::io::Result<Option<Entry>> {
        let pvd = read(f, 16 * SECTOR, SECTOR as usize)?;
        if &pvd[1..6] != b"CD001" {
            return Err(std::io::Error::other("not an ISO 9660 image"));
        }
        let root = &pvd[156..190];
        let mut at = Entry {
            name: String::new(),
            lba: u64::from(u32::from_le_bytes(root[2..6].try_into().unwrap())),
            size: u64::from(u32::from_le_bytes(root[10..14].try_into().unwrap())),
            dir: true,
        };
        for part in path.split('/').filter(|p| !p.is_empty()) {
            if !at.dir {
                return Ok(None);
            }
            match list(f, at.lba, at.size)?
                .into_iter()
                .find(|e| e.name == part)
            {
                Some(e) => at = e,
                None => return Ok(None),
            }
        }
        Ok(Some(at))
    }

    /// A directory removed when dropped.
    pub struct Scratch(PathBuf);

    impl Scratch {
        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// Copies the ISO's kernel, initramfs and payload into a scratch
    /// directory under the names `image_assets` looks for.
    pub fn extract(iso: &Path) -> anyhow::Result<Scratch> {
        let ctx = |e: std::io::Error| anyhow::anyhow!("--image {}: {e}", iso.display());
        let f = File::open(iso).map_err(ctx)?;
        let dir =
            Scratch(std::env::temp_dir().join(format!("cairnctl-upgrade-{}", std::process::id())));
        std::fs::create_dir_all(dir.path()).map_err(ctx)?;
        for (from, to) in [
            ("boot/vmlinuz", "vmlinuz"),
            ("boot/initramfs.img", "initramfs.img"),
            ("A/payload.sqsh", "payload.sqsh"),
            ("boot/payload.sqsh", "payload.sqsh"),
        ] {
            let Some(e) = find(&f, from).map_err(ctx)? else {
                continue;
            };
            let out = File::create(dir.path().join(to)).map_err(ctx)?;
            let mut done = 0;
            while done < e.size {
                let n = (e.size - done).min(1 << 20);
                let buf = read(&f, e.lba * SECTOR + done, n as usize).map_err(ctx)?;
                out.write_all_at(&buf, done).map_err(ctx)?;
                done += n;
            }
        }
        if !dir.path().join("vmlinuz").exists() {
            anyhow::bail!(
                "--image {}: no /boot/vmlinuz in this ISO; is it a Cairn ISO?",
                iso.display()
            );
        }
        Ok(dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    /// An ISO built the way images/grub.sh builds one (xorriso -r), when
    /// xorriso is installed.
    #[test]
    fn reads_boot_files_out_of_an_iso() {
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path().join("tree");
        std::fs::create_dir_all(tree.join("boot")).unwrap();
        std::fs::write(tree.join("boot/vmlinuz"), vec![7u8; 5000]).unwrap();
        std::fs::write(tree.join("boot/initramfs.img"), b"initramfs-bytes").unwrap();
        let iso = dir.path().join("x.iso");
        let built = std::process::Command::new("xorriso")
            .args(["-as", "mkisofs", "-quiet", "-r", "-o"])
            .arg(&iso)
            .arg(&tree)
            .output();
        match built {
            Ok(o) if o.status.success() => {}
            _ => {
                eprintln!("skipping: xorriso is not installed");
                return;
            }
        }
        let out = iso::extract(&iso).unwrap();
        assert_eq!(
            std::fs::read(out.path().join("vmlinuz")).unwrap(),
            vec![7u8; 5000]
        );
        assert_eq!(
            std::fs::read(out.path().join("initramfs.img")).unwrap(),
            b"initramfs-bytes"
        );
        assert!(!out.path().join("payload.sqsh").exists());
        let not_iso = dir.path().join("tree/boot/vmlinuz");
        assert!(iso::extract(&not_iso).is_err());
    }

    #[test]
    fn signatures_beside_the_files_or_in_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("vmlinuz"), b"k").unwrap();
        std::fs::write(dir.path().join("initramfs.img"), b"i").unwrap();
        let (private, public) = config::signing::generate().unwrap();
        let mut assets = image_assets(dir.path()).unwrap();
        attach_signatures(&mut assets, dir.path()).unwrap();
        assert_eq!(describe_signatures(&assets), "unsigned");

        for a in &assets {
            let sha: [u8; 32] = hex::decode(&a.sha256).unwrap().try_into().unwrap();
            let sig = config::signing::sign(&private, &sha).unwrap();
            let mut p = a.path.clone().into_os_string();
            p.push(".sig");
            std::fs::write(p, sig).unwrap();
        }
        let mut assets = image_assets(dir.path()).unwrap();
        attach_signatures(&mut assets, dir.path()).unwrap();
        assert_eq!(
            describe_signatures(&assets),
            format!("signed by key {}", public.id())
        );
        // What is sent verifies against the asset's own digest.
        for a in &assets {
            let sha: [u8; 32] = hex::decode(&a.sha256).unwrap().try_into().unwrap();
            config::signing::verify(&sha, a.signature.as_deref(), std::slice::from_ref(&public))
                .unwrap();
        }

        // One missing, one elsewhere (--signature DIR).
        let elsewhere = tempfile::tempdir().unwrap();
        std::fs::copy(
            dir.path().join("vmlinuz.sig"),
            elsewhere.path().join("vmlinuz.sig"),
        )
        .unwrap();
        let mut assets = image_assets(dir.path()).unwrap();
        attach_signatures(&mut assets, elsewhere.path()).unwrap();
        assert_eq!(
            describe_signatures(&assets),
            format!("kernel signed by key {}, initramfs unsigned", public.id())
        );

        // Not a signature: refused before anything is sent.
        std::fs::write(dir.path().join("initramfs.img.sig"), "hello").unwrap();
        let e = attach_signatures(&mut assets, dir.path())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("initramfs.img.sig: the signature is not a Cairn upgrade signature"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn streams_header_chunks_and_digest_per_asset() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("vmlinuz"), vec![1u8; CHUNK + 10]).unwrap();
        std::fs::write(dir.path().join("initramfs.img"), b"init").unwrap();
        std::fs::write(dir.path().join("version"), "v9.9.9 abc\n").unwrap();
        let assets = image_assets(dir.path()).unwrap();
        assert_eq!(
            assets.iter().map(|a| a.name).collect::<Vec<_>>(),
            ["kernel", "initramfs"]
        );
        assert_eq!(image_version(dir.path()), "v9.9.9");
        let bar = ProgressBar::hidden();
        let msgs: Vec<UpgradeRequest> = requests(assets.clone(), "v9".into(), false, bar.clone())
            .collect()
            .await;
        let kinds: Vec<&str> = msgs
            .iter()
            .map(|m| match m.part.as_ref().unwrap() {
                Part::Header(_) => "h",
                Part::Chunk(_) => "c",
                Part::Sha256(_) => "s",
            })
            .collect();
        assert_eq!(kinds, ["h", "c", "c", "s", "h", "c", "s"]);
        assert_eq!(bar.position(), (CHUNK + 10 + 4) as u64);
        let Part::Sha256(s) = msgs[6].part.as_ref().unwrap() else {
            panic!()
        };
        assert_eq!(*s, hex::encode(Sha256::digest(b"init")));
        let err = image_assets(&dir.path().join("nope"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("expected a directory"), "{err}");
        std::fs::remove_file(dir.path().join("initramfs.img")).unwrap();
        assert!(image_assets(dir.path())
            .unwrap_err()
            .to_string()
            .contains("no initramfs.img"));
    }
}
