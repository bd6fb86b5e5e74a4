//! The node's container images for `cairnctl image list|import|remove`.
//!
//! An import is received into a private temporary directory on EPHEMERAL,
//! counted against the size its header announced (and a hard limit and the
//! free space), hashed as it arrives, and handed to containerd only after
//! the trailing sha256 matches: a cut stream, a short or long one, or a
//! wrong digest leaves no file (the directory is removed on every path) and
//! no image. The containerd import itself writes blobs under a lease of its
//! own and creates the image records last, so a failure there leaves
//! nothing that an image names either.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use api::machine::image_import_request::Part;
use api::machine::{
    ImageImportRequest, ImageImportResponse, ImageInfo, ImageListResponse, ImageRemoveResponse,
};
use containerd_client::services::v1::content_client::ContentClient;
use containerd_client::services::v1::images_client::ImagesClient;
use containerd_client::services::v1::{
    DeleteImageRequest, GetImageRequest, ListImagesRequest, ReadContentRequest,
};
use futures::{Stream, StreamExt};
use sha2::{Digest, Sha256};
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

use crate::containerd::import::{origin_of, ImportError, Origin};
use crate::containerd::ContainerdError;

/// Where imports are received (on EPHEMERAL, never in memory).
pub const IMPORT_DIR: &str = "/var/lib/machined/image-import";
/// The largest archive an import takes.
pub const MAX_IMPORT: u64 = 8 << 30;
/// Free space an import leaves on EPHEMERAL beyond twice its size (the
/// received archive and containerd's copy).
const RESERVE: u64 = 256 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("containerd is not running on this node (it starts once the node has a config and the payload is mounted)")]
    NoContainerd,
    #[error(transparent)]
    Containerd(#[from] ContainerdError),
    #[error("the import failed: {0}")]
    Import(#[from] ImportError),
    #[error("an import starts with a header naming the archive's size")]
    NoHeader,
    #[error("the archive is {size} bytes; an import takes at most {max}")]
    TooLarge { size: u64, max: u64 },
    #[error("the archive is {size} bytes and the node has {free} bytes free on /var (an import needs twice its size and 256 MiB)")]
    NoSpace { size: u64, free: u64 },
    #[error("the stream ended after {got} of {want} bytes without a sha256; nothing was imported")]
    Incomplete { got: u64, want: u64 },
    #[error(
        "the stream carried more than the {want} bytes its header announced; nothing was imported"
    )]
    Overrun { want: u64 },
    #[error("the archive's sha256 is {got}, the client said {want}; nothing was imported")]
    DigestMismatch { want: String, got: String },
    #[error("the stream was cut after {got} bytes ({status}); nothing was imported")]
    Cut { got: u64, status: String },
    #[error("unexpected message in the import stream: {0}")]
    Protocol(&'static str),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("no image {0:?}; `cairnctl image list -k` lists them")]
    NotFound(String),
    #[error("{0} is one of the system's images and cannot be removed")]
    System(String),
    #[error("{0} is in the boot medium's image cache (make image IMAGE_CACHE=) and comes back at every boot; it cannot be removed")]
    Cached(String),
}

fn to_status(e: ImageError) -> Status {
    let msg = e.to_string();
    match e {
        ImageError::NoContainerd => Status::failed_precondition(msg),
        ImageError::Containerd(_) => Status::unavailable(msg),
        ImageError::Import(ImportError::SystemImage { .. } | ImportError::CachedImage { .. }) => {
            Status::permission_denied(msg)
        }
        ImageError::Import(ImportError::Format { .. }) => Status::invalid_argument(msg),
        ImageError::Import(ImportError::Read { .. } | ImportError::Call { .. }) => {
            Status::internal(msg)
        }
        ImageError::NoHeader
        | ImageError::Incomplete { .. }
        | ImageError::Overrun { .. }
        | ImageError::DigestMismatch { .. }
        | ImageError::Protocol(_) => Status::invalid_argument(msg),
        ImageError::Cut { .. } => Status::aborted(msg),
        ImageError::TooLarge { .. } | ImageError::NoSpace { .. } => Status::resource_exhausted(msg),
        ImageError::Io { .. } => Status::internal(msg),
        ImageError::NotFound(_) => Status::not_found(msg),
        ImageError::System(_) | ImageError::Cached(_) => Status::permission_denied(msg),
    }
}

fn namespace(kubernetes: bool) -> &'static str {
    if kubernetes {
        config::constants::k8s::CONTAINERD_NAMESPACE
    } else {
        crate::containerd::SYSTEM_NAMESPACE
    }
}

async fn channel() -> Result<Channel, ImageError> {
    let socket = Path::new(config::constants::k8s::CONTAINERD_SOCKET);
    if !socket.exists() {
        return Err(ImageError::NoContainerd);
    }
    Ok(crate::containerd::connect(socket).await?)
}

fn request<T>(msg: T, namespace: &str) -> Request<T> {
    let mut r = Request::new(msg);
    if let Ok(v) = namespace.parse() {
        r.metadata_mut().insert("containerd-namespace", v);
    }
    r
}

fn call(name: &'static str) -> impl FnOnce(Status) -> ImageError {
    move |s| ImageError::Containerd(ContainerdError::call(name)(s))
}

/// A small blob's bytes (manifests and indexes).
async fn read_blob(channel: &Channel, ns: &str, digest: &str) -> Result<Vec<u8>, ImageError> {
    let mut stream = ContentClient::new(channel.clone())
        .read(request(
            ReadContentRequest {
                digest: digest.to_string(),
                offset: 0,
                size: 0,
            },
            ns,
        ))
        .await
        .map_err(call("Content.Read"))?
        .into_inner();
    let mut out = Vec::new();
    while let Some(m) = stream.message().await.map_err(call("Content.Read"))? {
        out.extend_from_slice(&m.data);
        if out.len() > 4 << 20 {
            break;
        }
    }
    Ok(out)
}

/// The bytes of everything an image references, each blob counted once.
async fn image_size(
    channel: &Channel,
    ns: &str,
    target: &containerd_client::types::Descriptor,
) -> u64 {
    let mut seen = BTreeSet::new();
    let mut total = 0u64;
    let mut todo = vec![(
        target.media_type.clone(),
        target.digest.clone(),
        target.size,
    )];
    while let Some((media_type, digest, size)) = todo.pop() {
        if !seen.insert(digest.clone()) {
            continue;
        }
        total += size.max(0) as u64;
        if !(media_type.contains("manifest") || media_type.contains("index")) {
            continue;
        }
        let Ok(bytes) = read_blob(channel, ns, &digest).await else {
            continue;
        };
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
            continue;
        };
        let children = v["manifests"]
            .as_array()
            .into_iter()
            .flatten()
            .chain(std::iter::once(&v["config"]))
            .chain(v["layers"].as_array().into_iter().flatten());
        for c in children {
            if let (Some(d), Some(s)) = (c["digest"].as_str(), c["size"].as_i64()) {
                // Only what the node has: other platforms of an index are
                // not in the store.
                let t = c["mediaType"].as_str().unwrap_or_default().to_string();
                todo.push((t, d.to_string(), s));
            }
        }
    }
    total
}

/// What `cairnctl image list` shows of `image`: its target, the size of
/// everything it references and its origin (label or target blob's).
async fn info(
    channel: &Channel,
    ns: &str,
    image: &containerd_client::services::v1::Image,
) -> Result<ImageInfo, ImageError> {
    let size = match &image.target {
        Some(t) => image_size(channel, ns, t).await,
        None => 0,
    };
    let origin = origin_of(channel, ns, image)
        .await
        .map_err(call("Content.Info"))?;
    let target = image.target.clone().unwrap_or_default();
    Ok(ImageInfo {
        name: image.name.clone(),
        digest: target.digest,
        media_type: target.media_type,
        size,
        origin: origin.map(|o| o.label().to_string()).unwrap_or_default(),
    })
}

/// The images in containerd's `system` namespace or, with `kubernetes`,
/// in `k8s.io`, sorted by name.
pub async fn list(kubernetes: bool) -> Result<Vec<ImageInfo>, ImageError> {
    list_in(&channel().await?, namespace(kubernetes)).await
}

/// The images in namespace `ns` of the containerd behind `channel`.
pub async fn list_in(channel: &Channel, ns: &str) -> Result<Vec<ImageInfo>, ImageError> {
    let images = ImagesClient::new(channel.clone())
        .list(request(ListImagesRequest { filters: vec![] }, ns))
        .await
        .map_err(call("Images.List"))?
        .into_inner()
        .images;
    let mut out = Vec::new();
    for i in &images {
        out.push(info(channel, ns, i).await?);
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Removes a user image; system images are refused.
pub async fn remove(name: &str, kubernetes: bool) -> Result<ImageRemoveResponse, ImageError> {
    remove_in(&channel().await?, namespace(kubernetes), name).await
}

/// Removes user image `name` from namespace `ns`.
pub async fn remove_in(
    channel: &Channel,
    ns: &str,
    name: &str,
) -> Result<ImageRemoveResponse, ImageError> {
    let mut images = ImagesClient::new(channel.clone());
    let image = match images
        .get(request(
            GetImageRequest {
                name: name.to_string(),
            },
            ns,
        ))
        .await
    {
        Ok(r) => r.into_inner().image,
        Err(s) if s.code() == Code::NotFound => None,
        Err(s) => return Err(call("Images.Get")(s)),
    }
    .ok_or_else(|| ImageError::NotFound(name.to_string()))?;
    let origin = origin_of(channel, ns, &image)
        .await
        .map_err(call("Content.Info"))?;
    match origin {
        Some(Origin::System) => return Err(ImageError::System(name.to_string())),
        Some(Origin::Cache) => return Err(ImageError::Cached(name.to_string())),
        _ => {}
    }
    images
        .delete(request(
            DeleteImageRequest {
                name: name.to_string(),
                sync: true,
                target: None,
            },
            ns,
        ))
        .await
        .map_err(call("Images.Delete"))?;
    tracing::info!(image = %name, "removed");
    Ok(ImageRemoveResponse {
        name: name.to_string(),
        digest: image.target.map(|t| t.digest).unwrap_or_default(),
    })
}

/// A received archive: the file, inside a directory removed on drop.
pub struct Received {
    _dir: tempfile::TempDir,
    pub path: PathBuf,
}

/// A file name the archive may keep (its stem names a tag-only image).
fn safe_file_name(name: &str) -> String {
    let base = name.rsplit('/').next().unwrap_or_default();
    let clean: String = base
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "._-".contains(*c))
        .collect();
    let clean = clean.trim_start_matches('.').to_string();
    if clean.is_empty() {
        "image.tar".to_string()
    } else {
        clean
    }
}

/// Receives an import stream into a new directory under `dir`: header,
/// chunks, sha256. `free` is the space `dir`'s filesystem has.
pub async fn receive<S>(mut stream: S, dir: &Path, free: u64) -> Result<Received, ImageError>
where
    S: Stream<Item = Result<ImageImportRequest, Status>> + Unpin,
{
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |source| ImageError::Io { path, source }
    };
    let header = match stream.next().await {
        Some(Ok(ImageImportRequest {
            part: Some(Part::Header(h)),
        })) => h,
        Some(Err(s)) => {
            return Err(ImageError::Cut {
                got: 0,
                status: s.message().to_string(),
            })
        }
        _ => return Err(ImageError::NoHeader),
    };
    let want = header.size;
    if want > MAX_IMPORT {
        return Err(ImageError::TooLarge {
            size: want,
            max: MAX_IMPORT,
        });
    }
    if want.saturating_mul(2).saturating_add(RESERVE) > free {
        return Err(ImageError::NoSpace { size: want, free });
    }
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let tmp = tempfile::Builder::new()
        .prefix("import-")
        .tempdir_in(dir)
        .map_err(io(dir))?;
    let path = tmp.path().join(safe_file_name(&header.file_name));
    let mut file = std::io::BufWriter::new(std::fs::File::create(&path).map_err(io(&path))?);
    let mut hasher = Sha256::new();
    let mut got = 0u64;
    loop {
        let part = match stream.next().await {
            None => return Err(ImageError::Incomplete { got, want }),
            Some(Err(s)) => {
                return Err(ImageError::Cut {
                    got,
                    status: s.message().to_string(),
                })
            }
            Some(Ok(m)) => m.part,
        };
        match part {
            Some(Part::Chunk(bytes)) => {
                got += bytes.len() as u64;
                if got > want {
                    return Err(ImageError::Overrun { want });
                }
                hasher.update(&bytes);
                file.write_all(&bytes).map_err(io(&path))?;
            }
            Some(Part::Sha256(expected)) => {
                if got != want {
                    return Err(ImageError::Incomplete { got, want });
                }
                let actual = hex::encode(hasher.finalize());
                if !actual.eq_ignore_ascii_case(expected.trim()) {
                    return Err(ImageError::DigestMismatch {
                        want: expected,
                        got: actual,
                    });
                }
                break;
            }
            Some(Part::Header(_)) => return Err(ImageError::Protocol("a second header")),
            None => return Err(ImageError::Protocol("an empty message")),
        }
    }
    let file = file.into_inner().map_err(|e| io(&path)(e.into_error()))?;
    file.sync_all().map_err(io(&path))?;
    Ok(Received { _dir: tmp, path })
}

fn free_space(dir: &Path) -> u64 {
    // The nearest directory that exists: on a fresh node neither the
    // import directory nor its parent does yet (0 free refused every import).
    let probe = dir
        .ancestors()
        .find(|d| d.exists())
        .unwrap_or(Path::new("/"));
    nix::sys::statvfs::statvfs(probe)
        .map(|s| s.blocks_available() * s.fragment_size())
        .unwrap_or(0)
}

/// Receives an archive and imports it into `k8s.io` as user images.
pub async fn import<S>(stream: S) -> Result<Vec<ImageInfo>, ImageError>
where
    S: Stream<Item = Result<ImageImportRequest, Status>> + Unpin,
{
    let dir = Path::new(IMPORT_DIR);
    let channel = channel().await?;
    let received = receive(stream, dir, free_space(dir)).await?;
    let ns = config::constants::k8s::CONTAINERD_NAMESPACE;
    let imported =
        crate::containerd::import::import_archive_as(&channel, &received.path, ns, Origin::User)
            .await?;
    drop(received);
    let mut out = Vec::new();
    let mut images = ImagesClient::new(channel.clone());
    for i in imported {
        let image = images
            .get(request(
                GetImageRequest {
                    name: i.name.clone(),
                },
                ns,
            ))
            .await
            .map_err(call("Images.Get"))?
            .into_inner()
            .image;
        if let Some(image) = image {
            out.push(info(&channel, ns, &image).await?);
        }
    }
    Ok(out)
}

pub async fn handle_list(kubernetes: bool) -> Result<ImageListResponse, Status> {
    list(kubernetes)
        .await
        .map(|images| ImageListResponse { images })
        .map_err(to_status)
}

pub async fn handle_import<S>(stream: S) -> Result<ImageImportResponse, Status>
where
    S: Stream<Item = Result<ImageImportRequest, Status>> + Unpin,
{
    import(stream)
        .await
        .map(|images| ImageImportResponse { images })
        .map_err(|e| {
            tracing::warn!(error = %e, "image import refused");
            to_status(e)
        })
}

pub async fn handle_remove(name: &str, kubernetes: bool) -> Result<ImageRemoveResponse, Status> {
    remove(name, kubernetes).await.map_err(to_status)
}

#[cfg(test)]
mod tests {
    use super::*;
    use api::machine::ImageImportHeader;

    fn msg(part: Part) -> Result<ImageImportRequest, Status> {
        Ok(ImageImportRequest { part: Some(part) })
    }

    fn header(size: u64) -> Result<ImageImportRequest, Status> {
        msg(Part::Header(ImageImportHeader {
            size,
            file_name: "../app.tar".into(),
        }))
    }

    fn leftovers(dir: &Path) -> Vec<PathBuf> {
        match std::fs::read_dir(dir) {
            Ok(rd) => rd.map(|e| e.unwrap().path()).collect(),
            Err(_) => Vec::new(),
        }
    }

    #[tokio::test]
    async fn a_whole_stream_with_its_digest_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let data = b"0123456789".to_vec();
        let sum = hex::encode(Sha256::digest(&data));
        let stream = futures::stream::iter(vec![
            header(10),
            msg(Part::Chunk(data[..4].to_vec())),
            msg(Part::Chunk(data[4..].to_vec())),
            msg(Part::Sha256(sum)),
        ]);
        let r = receive(stream, dir.path(), u64::MAX).await.unwrap();
        assert_eq!(std::fs::read(&r.path).unwrap(), data);
        assert_eq!(r.path.file_name().unwrap(), "app.tar");
        drop(r);
        assert!(leftovers(dir.path()).is_empty());
    }

    #[tokio::test]
    async fn anything_short_of_a_whole_checked_stream_leaves_nothing() {
        let data = b"0123456789".to_vec();
        let sum = hex::encode(Sha256::digest(&data));
        let cases: Vec<(&str, Vec<Result<ImageImportRequest, Status>>)> = vec![
            (
                "cut",
                vec![
                    header(10),
                    msg(Part::Chunk(data[..4].to_vec())),
                    Err(Status::cancelled("client went away")),
                ],
            ),
            (
                "ended",
                vec![header(10), msg(Part::Chunk(data[..4].to_vec()))],
            ),
            (
                "short",
                vec![
                    header(10),
                    msg(Part::Chunk(data[..4].to_vec())),
                    msg(Part::Sha256(sum.clone())),
                ],
            ),
            (
                "long",
                vec![
                    header(4),
                    msg(Part::Chunk(data.clone())),
                    msg(Part::Sha256(sum.clone())),
                ],
            ),
            (
                "digest",
                vec![
                    header(10),
                    msg(Part::Chunk(data.clone())),
                    msg(Part::Sha256("00".repeat(32))),
                ],
            ),
            ("no header", vec![msg(Part::Chunk(data.clone()))]),
            ("too large", vec![header(MAX_IMPORT + 1)]),
        ];
        for (what, msgs) in cases {
            let dir = tempfile::tempdir().unwrap();
            let err = receive(futures::stream::iter(msgs), dir.path(), u64::MAX)
                .await
                .err()
                .unwrap_or_else(|| panic!("{what}: accepted"));
            assert!(leftovers(dir.path()).is_empty(), "{what}: {err}");
        }
        let dir = tempfile::tempdir().unwrap();
        let err = receive(futures::stream::iter(vec![header(10)]), dir.path(), 100)
            .await
            .err()
            .unwrap();
        assert!(matches!(err, ImageError::NoSpace { .. }), "{err}");
        assert_eq!(to_status(err).code(), Code::ResourceExhausted);
    }

    #[test]
    fn file_names_stay_inside_the_directory() {
        assert_eq!(safe_file_name("../../etc/x.tar"), "x.tar");
        assert_eq!(safe_file_name(".."), "image.tar");
        assert_eq!(safe_file_name("my app.tar"), "myapp.tar");
    }
}
