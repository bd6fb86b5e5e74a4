//! `cairnctl image import <archive>`: streams an OCI image archive to nodes,
//! where machined checks its size and sha256 before containerd imports it
//! (a cut or corrupted stream imports nothing).

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use api::machine::image_import_request::Part;
use api::machine::{ImageImportHeader, ImageImportRequest};
use sha2::{Digest, Sha256};

use crate::global::GlobalArgs;
use crate::session::{self, Session};

use crate::output;

/// Bytes per chunk (under apid's 4 MiB message limit).
const CHUNK: usize = 1 << 20;

#[derive(clap::Args, Debug)]
#[command(after_help = "\
Examples:
  cairnctl -n 10.5.0.2 image import my-app.tar

The archive is an OCI image layout in a tar file (`skopeo copy
docker-daemon:my-app:1.0 oci-archive:my-app.tar`, `buildah push ...
oci-archive:my-app.tar`, images/payload/oci-image.py). Its index names the
images (`io.containerd.image.name` or `org.opencontainers.image.ref.name`;
a bare tag is named cairn.local/<file name>:<tag>). The images land in
containerd's k8s.io namespace, and the node's image cache serves them to
Pods with any pull policy. Needs an operator certificate.")]
pub struct Args {
    /// The OCI image archive (.tar).
    pub archive: PathBuf,
}

/// The archive's size and hex sha256.
pub fn digest(path: &Path) -> anyhow::Result<(u64, String)> {
    let mut f = std::fs::File::open(path).with_context(|| format!("open {}", path.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let mut size = 0u64;
    loop {
        let n = f
            .read(&mut buf)
            .with_context(|| format!("read {}", path.display()))?;
        if n == 0 {
            break;
        }
        size += n as u64;
        h.update(&buf[..n]);
    }
    Ok((size, hex::encode(h.finalize())))
}

/// The request stream: a header, the file in chunks, the sha256.
pub fn requests(
    path: PathBuf,
    size: u64,
    sha256: String,
) -> impl futures::Stream<Item = ImageImportRequest> + Send + 'static {
    enum Step {
        Header,
        Data(std::fs::File),
        Done,
    }
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    futures::stream::unfold(Step::Header, move |step| {
        let path = path.clone();
        let file_name = file_name.clone();
        let sha256 = sha256.clone();
        async move {
            let part = |p| ImageImportRequest { part: Some(p) };
            match step {
                Step::Header => {
                    let file = std::fs::File::open(&path).ok()?;
                    let h = ImageImportHeader { size, file_name };
                    Some((part(Part::Header(h)), Step::Data(file)))
                }
                Step::Data(mut file) => {
                    let mut buf = vec![0u8; CHUNK];
                    match file.read(&mut buf) {
                        Ok(0) => Some((part(Part::Sha256(sha256)), Step::Done)),
                        Ok(n) => {
                            buf.truncate(n);
                            Some((part(Part::Chunk(buf)), Step::Data(file)))
                        }
                        // Ending early: machined refuses an incomplete
                        // stream and imports nothing.
                        Err(_) => None,
                    }
                }
                Step::Done => None,
            }
        }
    })
}

pub async fn run(args: Args, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let (size, sha256) = digest(&args.archive)?;
    let session = Session::open(global).await?;
    let results = session
        .each(|c| {
            let stream = requests(args.archive.clone(), size, sha256.clone());
            async move {
                let c = c.without_call_timeout().await?;
                c.machine()
                    .image_import(c.request(stream))
                    .await
                    .map(|r| r.into_inner())
                    .map_err(|s| c.explain(&s, "ImageImport"))
            }
        })
        .await;
    for (node, r) in session::successes(&results) {
        for i in &r.images {
            println!(
                "{node}: imported {} {} ({})",
                i.name,
                i.digest,
                output::bytes(i.size)
            );
        }
    }
    Ok(session::report_errors(&results))
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    #[tokio::test]
    async fn header_chunks_then_digest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.tar");
        let data = vec![7u8; CHUNK + 10];
        std::fs::write(&path, &data).unwrap();
        let (size, sha) = digest(&path).unwrap();
        assert_eq!(size, data.len() as u64);
        assert_eq!(sha, hex::encode(Sha256::digest(&data)));
        let parts: Vec<ImageImportRequest> = requests(path, size, sha.clone()).collect().await;
        let kinds: Vec<&str> = parts
            .iter()
            .map(|p| match p.part.as_ref().unwrap() {
                Part::Header(h) => {
                    assert_eq!((h.size, h.file_name.as_str()), (size, "app.tar"));
                    "h"
                }
                Part::Chunk(_) => "c",
                Part::Sha256(s) => {
                    assert_eq!(s, &sha);
                    "s"
                }
            })
            .collect();
        assert_eq!(kinds, vec!["h", "c", "c", "s"]);
    }
}
