//! Imports OCI image archives (tar files holding an OCI image layout) into
//! a containerd namespace through the content and images services, the
//! way `ctr images import` does, without `ctr`.
//!
//! containerd 1.6 has no transfer service, so this writes every blob to the
//! content store (with the garbage-collection labels that tie an index to
//! its manifests and a manifest to its config and layers, under a lease so
//! nothing is collected half way) and then creates the image record. An
//! image already present with the same target digest is left alone. The
//! CRI plugin unpacks an image into the snapshotter the first time a
//! container needs it.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};

use containerd_client::services::v1::content_client::ContentClient;
use containerd_client::services::v1::images_client::ImagesClient;
use containerd_client::services::v1::leases_client::LeasesClient;
use containerd_client::services::v1::{
    CreateImageRequest, CreateRequest as CreateLeaseRequest, DeleteRequest as DeleteLeaseRequest,
    GetImageRequest, Image, Info, InfoRequest, UpdateImageRequest,
    UpdateRequest as UpdateContentRequest, WriteAction, WriteContentRequest,
};
use containerd_client::types::Descriptor;
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::{Code, Request};

/// Blobs up to this size are read into memory in the first pass over an
/// archive (manifests, configs, indexes are a few KiB).
const SMALL_BLOB: u64 = 1 << 20;
/// Bytes per content Write message.
const CHUNK: usize = 1 << 20;

const INDEX_TYPES: &[&str] = &[
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];
const MANIFEST_TYPES: &[&str] = &[
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
];

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not an OCI image archive: {reason}")]
    Format { path: String, reason: String },
    #[error("{name} is one of the system's images; an import may not replace it")]
    SystemImage { name: String },
    #[error("{name} is in the boot medium's image cache; an import may not replace it")]
    CachedImage { name: String },
    #[error("{path}: containerd {call} failed: {status}")]
    Call {
        path: String,
        call: &'static str,
        status: Box<tonic::Status>,
    },
}

/// The label on every image Cairn's importer creates: `system` for the
/// payload's, `cache` for the boot medium's image cache (`make image
/// IMAGE_CACHE=`), `user` for `cairnctl image import`'s. The image cache
/// registry serves only labelled images, and `cairnctl image remove`
/// refuses `system` and `cache` ones (they come back at every boot). It is put on the image's target blob too: a
/// pull through CRI (pull policy Always, served by the image cache)
/// rewrites the image record with CRI's labels only, while content labels
/// outlive it.
pub const ORIGIN_LABEL: &str = "cairn.dev/image-cache";

/// Where an imported image came from (the value of [`ORIGIN_LABEL`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The payload's image cache.
    System,
    /// The boot medium's image cache (`cairnctl image cache-create`, `make
    /// image IMAGE_CACHE=`).
    Cache,
    /// `cairnctl image import`.
    User,
}

impl Origin {
    pub fn label(self) -> &'static str {
        match self {
            Origin::System => "system",
            Origin::Cache => "cache",
            Origin::User => "user",
        }
    }

    pub fn of(labels: &HashMap<String, String>) -> Option<Origin> {
        match labels.get(ORIGIN_LABEL).map(String::as_str) {
            Some("system") => Some(Origin::System),
            Some("cache") => Some(Origin::Cache),
            Some("user") => Some(Origin::User),
            _ => None,
        }
    }

    /// Images the boot medium carries: imported at every boot, so neither
    /// removed nor replaced by a user's import.
    pub fn is_fixed(self) -> bool {
        matches!(self, Origin::System | Origin::Cache)
    }
}

/// Where `image` came from: its own label or else its target blob's (see
/// [`ORIGIN_LABEL`]).
pub async fn origin_of(
    channel: &Channel,
    namespace: &str,
    image: &Image,
) -> Result<Option<Origin>, tonic::Status> {
    if let Some(origin) = Origin::of(&image.labels) {
        return Ok(Some(origin));
    }
    match &image.target {
        Some(target) => blob_origin(channel, namespace, &target.digest).await,
        None => Ok(None),
    }
}

/// The origin label of the blob `digest`; `None` for an unlabelled or
/// missing blob.
async fn blob_origin(
    channel: &Channel,
    namespace: &str,
    digest: &str,
) -> Result<Option<Origin>, tonic::Status> {
    let req = request(
        InfoRequest {
            digest: digest.to_string(),
        },
        namespace,
        "",
    );
    match ContentClient::new(channel.clone()).info(req).await {
        Ok(r) => Ok(r.into_inner().info.and_then(|i| Origin::of(&i.labels))),
        Err(s) if s.code() == Code::NotFound => Ok(None),
        Err(s) => Err(s),
    }
}

/// Labels the blob `digest` with `origin`; a blob that is a system or
/// cached image's target keeps its label.
async fn label_blob(
    channel: &Channel,
    namespace: &str,
    digest: &str,
    origin: Origin,
) -> Result<(), tonic::Status> {
    let current = blob_origin(channel, namespace, digest).await?;
    if current.is_some_and(|c| c == origin || c.is_fixed()) {
        return Ok(());
    }
    let req = UpdateContentRequest {
        info: Some(Info {
            digest: digest.to_string(),
            labels: HashMap::from([(ORIGIN_LABEL.to_string(), origin.label().to_string())]),
            ..Default::default()
        }),
        update_mask: Some(prost_types::FieldMask {
            paths: vec![format!("labels.{ORIGIN_LABEL}")],
        }),
    };
    ContentClient::new(channel.clone())
        .update(request(req, namespace, ""))
        .await?;
    Ok(())
}

/// What happened to one image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Imported,
    /// Present already with the same digest.
    Present,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imported {
    pub name: String,
    pub digest: String,
    pub outcome: Outcome,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Desc {
    media_type: String,
    digest: String,
    size: i64,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
struct IndexDoc {
    manifests: Vec<Desc>,
}

#[derive(Debug, Deserialize)]
struct ManifestDoc {
    config: Desc,
    layers: Vec<Desc>,
}

/// Path of an entry in the archive, without a leading `./`.
fn entry_name(e: &tar::Entry<'_, std::fs::File>) -> Option<String> {
    let p = e
        .path()
        .ok()?
        .to_string_lossy()
        .trim_start_matches("./")
        .to_string();
    Some(p)
}

fn blob_digest(name: &str) -> Option<String> {
    name.strip_prefix("blobs/")
        .and_then(|rest| rest.split_once('/'))
        .map(|(alg, hex)| format!("{alg}:{hex}"))
}

/// The archive's index.json and every small blob.
struct FirstPass {
    index: Vec<u8>,
    small: HashMap<String, Vec<u8>>,
}

fn first_pass(path: &Path) -> Result<FirstPass, ImportError> {
    let shown = path.display().to_string();
    let io = |source| ImportError::Read {
        path: shown.clone(),
        source,
    };
    let mut archive = tar::Archive::new(std::fs::File::open(path).map_err(io)?);
    let mut index = None;
    let mut small = HashMap::new();
    for entry in archive.entries_with_seek().map_err(io)? {
        let mut entry = entry.map_err(io)?;
        let Some(name) = entry_name(&entry) else {
            continue;
        };
        if name == "index.json" {
            let mut buf = Vec::new();
            entry.read_to_end(&mut buf).map_err(io)?;
            index = Some(buf);
        } else if let Some(digest) = blob_digest(&name) {
            if entry.header().size().map_err(io)? <= SMALL_BLOB {
                let mut buf = Vec::new();
                entry.read_to_end(&mut buf).map_err(io)?;
                small.insert(digest, buf);
            }
        }
    }
    let index = index.ok_or_else(|| ImportError::Format {
        path: shown.clone(),
        reason: "no index.json".into(),
    })?;
    Ok(FirstPass { index, small })
}

/// One image of the archive: its name and target, and every blob it needs
/// with the labels to write it with.
struct Plan {
    images: Vec<(String, Desc)>,
    /// digest -> (size, labels); children first is not needed (labels
    /// only name digests).
    blobs: BTreeMap<String, (i64, HashMap<String, String>)>,
}

/// The name an image gets from its index entry: `io.containerd.image.name`,
/// or `org.opencontainers.image.ref.name` when that is a whole reference,
/// or `cairn.local/<archive name>:<ref.name>` when it is only a tag.
fn image_name(desc: &Desc, archive: &Path) -> Option<String> {
    if let Some(n) = desc.annotations.get("io.containerd.image.name") {
        return Some(n.clone());
    }
    let r = desc.annotations.get("org.opencontainers.image.ref.name")?;
    if r.contains('/') {
        return Some(r.clone());
    }
    let stem = archive.file_stem()?.to_string_lossy();
    Some(format!(
        "{}/{stem}:{r}",
        ::config::constants::IMAGE_REGISTRY
    ))
}

fn plan(path: &Path, first: &FirstPass) -> Result<Plan, ImportError> {
    let format = |reason: String| ImportError::Format {
        path: path.display().to_string(),
        reason,
    };
    let index: IndexDoc =
        serde_json::from_slice(&first.index).map_err(|e| format(format!("index.json: {e}")))?;
    let mut blobs = BTreeMap::new();
    let mut images = Vec::new();
    for m in &index.manifests {
        let name = image_name(m, path).ok_or_else(|| {
            format(format!(
                "the index entry {} has no image name annotation",
                m.digest
            ))
        })?;
        images.push((name, m.clone()));
        let mut todo = vec![m.clone()];
        while let Some(d) = todo.pop() {
            let mut labels = HashMap::new();
            let is_index = INDEX_TYPES.contains(&d.media_type.as_str());
            let is_manifest = MANIFEST_TYPES.contains(&d.media_type.as_str());
            if is_index || is_manifest {
                let bytes = first.small.get(&d.digest).ok_or_else(|| {
                    format(format!(
                        "blob {} ({}) is missing or too large",
                        d.digest, d.media_type
                    ))
                })?;
                if is_index {
                    let doc: IndexDoc = serde_json::from_slice(bytes)
                        .map_err(|e| format(format!("{}: {e}", d.digest)))?;
                    for (i, c) in doc.manifests.iter().enumerate() {
                        labels.insert(
                            format!("containerd.io/gc.ref.content.m.{i}"),
                            c.digest.clone(),
                        );
                        todo.push(c.clone());
                    }
                } else {
                    let doc: ManifestDoc = serde_json::from_slice(bytes)
                        .map_err(|e| format(format!("{}: {e}", d.digest)))?;
                    labels.insert(
                        "containerd.io/gc.ref.content.config".into(),
                        doc.config.digest.clone(),
                    );
                    blobs
                        .entry(doc.config.digest.clone())
                        .or_insert((doc.config.size, HashMap::new()));
                    for (i, l) in doc.layers.iter().enumerate() {
                        labels.insert(
                            format!("containerd.io/gc.ref.content.l.{i}"),
                            l.digest.clone(),
                        );
                        blobs
                            .entry(l.digest.clone())
                            .or_insert((l.size, HashMap::new()));
                    }
                }
            }
            blobs.insert(d.digest.clone(), (d.size, labels));
        }
    }
    Ok(Plan { images, blobs })
}

/// Adds the namespace and the lease to a request.
fn request<T>(msg: T, namespace: &str, lease: &str) -> Request<T> {
    let mut req = Request::new(msg);
    let md = req.metadata_mut();
    if let Ok(v) = namespace.parse() {
        md.insert("containerd-namespace", v);
    }
    if let Ok(v) = lease.parse() {
        md.insert("containerd-lease", v);
    }
    req
}

/// Writes one blob from `data` chunks; commits with `labels`.
async fn write_blob(
    channel: Channel,
    namespace: &str,
    lease: &str,
    digest: &str,
    size: i64,
    labels: HashMap<String, String>,
    mut data: mpsc::Receiver<Vec<u8>>,
) -> Result<(), tonic::Status> {
    let (tx, rx) = mpsc::channel::<WriteContentRequest>(4);
    let reference = format!("cairn-import-{digest}");
    let mut call = ContentClient::new(channel);
    let call = tokio::spawn({
        let req = request(ReceiverStream::new(rx), namespace, lease);
        async move {
            let mut responses = call.write(req).await?.into_inner();
            while responses.message().await?.is_some() {}
            Ok::<(), tonic::Status>(())
        }
    });
    let mut offset: i64 = 0;
    let gone = || tonic::Status::aborted("containerd closed the write stream");
    while let Some(chunk) = data.recv().await {
        let len = chunk.len() as i64;
        let msg = WriteContentRequest {
            action: WriteAction::Write as i32,
            r#ref: reference.clone(),
            total: size,
            expected: digest.to_string(),
            offset,
            data: chunk,
            labels: HashMap::new(),
        };
        if tx.send(msg).await.is_err() {
            break;
        }
        offset += len;
    }
    let commit = WriteContentRequest {
        action: WriteAction::Commit as i32,
        r#ref: reference,
        total: size,
        expected: digest.to_string(),
        offset,
        data: Vec::new(),
        labels,
    };
    let sent = tx.send(commit).await;
    drop(tx);
    let result = call
        .await
        .map_err(|e| tonic::Status::internal(e.to_string()))?;
    match result {
        Err(s) if s.code() == Code::AlreadyExists => Ok(()),
        Err(s) => Err(s),
        Ok(()) if sent.is_err() => Err(gone()),
        Ok(()) => Ok(()),
    }
}

/// Whether the content store has `digest` already.
async fn has_blob(channel: &Channel, namespace: &str, digest: &str) -> Result<bool, tonic::Status> {
    let req = request(
        InfoRequest {
            digest: digest.to_string(),
        },
        namespace,
        "",
    );
    match ContentClient::new(channel.clone()).info(req).await {
        Ok(_) => Ok(true),
        Err(s) if s.code() == Code::NotFound => Ok(false),
        Err(s) => Err(s),
    }
}

/// Imports every image of the archive at `path` into `namespace` as
/// system images (the payload's).
pub async fn import_archive(
    channel: &Channel,
    path: &Path,
    namespace: &str,
) -> Result<Vec<Imported>, ImportError> {
    import_archive_as(channel, path, namespace, Origin::System).await
}

/// The image names an archive's index gives, without importing anything.
pub fn archive_image_names(path: &Path) -> Result<Vec<String>, ImportError> {
    let first = first_pass(path)?;
    let index: IndexDoc =
        serde_json::from_slice(&first.index).map_err(|e| ImportError::Format {
            path: path.display().to_string(),
            reason: format!("index.json: {e}"),
        })?;
    index
        .manifests
        .iter()
        .map(|m| {
            image_name(m, path).ok_or_else(|| ImportError::Format {
                path: path.display().to_string(),
                reason: format!("the index entry {} has no image name annotation", m.digest),
            })
        })
        .collect()
}

/// Imports every image of the archive at `path` into `namespace`, labelled
/// with `origin`. A user import never replaces a system image. The blobs
/// are written under a lease of this import alone, so if the import stops
/// half way (a cut stream, a bad blob) containerd collects them and no
/// image names them.
pub async fn import_archive_as(
    channel: &Channel,
    path: &Path,
    namespace: &str,
    origin: Origin,
) -> Result<Vec<Imported>, ImportError> {
    let shown = path.display().to_string();
    let call = |call: &'static str| {
        let path = shown.clone();
        move |status| ImportError::Call {
            path,
            call,
            status: Box::new(status),
        }
    };
    let owned = path.to_path_buf();
    let first = tokio::task::spawn_blocking(move || first_pass(&owned))
        .await
        .map_err(|e| ImportError::Read {
            path: shown.clone(),
            source: std::io::Error::other(e),
        })??;
    let plan = plan(path, &first)?;

    // Images already there with the same digest are done.
    let mut images = ImagesClient::new(channel.clone());
    let mut todo = Vec::new();
    let mut done = Vec::new();
    for (name, desc) in &plan.images {
        let existing = match images
            .get(request(
                GetImageRequest { name: name.clone() },
                namespace,
                "",
            ))
            .await
        {
            Ok(r) => r.into_inner().image,
            Err(s) if s.code() == Code::NotFound => None,
            Err(s) => return Err(call("Images.Get")(s)),
        };
        let existing_origin = match &existing {
            Some(i) => origin_of(channel, namespace, i)
                .await
                .map_err(call("Content.Info"))?,
            None => None,
        };
        match (origin, existing_origin) {
            (Origin::User, Some(Origin::System)) => {
                return Err(ImportError::SystemImage { name: name.clone() })
            }
            (Origin::User, Some(Origin::Cache)) => {
                return Err(ImportError::CachedImage { name: name.clone() })
            }
            _ => {}
        }
        let same = existing
            .as_ref()
            .and_then(|i| i.target.as_ref())
            .is_some_and(|t| t.digest == desc.digest)
            && existing_origin == Some(origin);
        if same {
            done.push(Imported {
                name: name.clone(),
                digest: desc.digest.clone(),
                outcome: Outcome::Present,
            });
        } else {
            todo.push((name.clone(), desc.clone(), existing.is_some()));
        }
    }
    if todo.is_empty() {
        return Ok(done);
    }

    // A lease keeps the blobs from garbage collection until the images
    // reference them.
    // A lease of this import alone: another import finishing first must
    // not release this one's blobs.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let lease = format!("cairn-import-{}-{nanos}", std::process::id());
    let mut leases = LeasesClient::new(channel.clone());
    let lease_req = CreateLeaseRequest {
        id: lease.clone(),
        labels: HashMap::new(),
    };
    match leases.create(request(lease_req, namespace, "")).await {
        Ok(_) => {}
        Err(s) if s.code() == Code::AlreadyExists => {}
        Err(s) => return Err(call("Leases.Create")(s)),
    }
    let result = write_blobs_and_images(
        channel,
        path,
        namespace,
        &lease,
        &plan,
        first.small,
        &todo,
        origin,
    )
    .await;
    let _ = leases
        .delete(request(
            DeleteLeaseRequest {
                id: lease.clone(),
                sync: false,
            },
            namespace,
            "",
        ))
        .await;
    result?;
    done.extend(todo.into_iter().map(|(name, desc, _)| Imported {
        name,
        digest: desc.digest,
        outcome: Outcome::Imported,
    }));
    Ok(done)
}

#[allow(clippy::too_many_arguments)]
async fn write_blobs_and_images(
    channel: &Channel,
    path: &Path,
    namespace: &str,
    lease: &str,
    plan: &Plan,
    small: HashMap<String, Vec<u8>>,
    todo: &[(String, Desc, bool)],
    origin: Origin,
) -> Result<(), ImportError> {
    let shown = path.display().to_string();
    let call = |call: &'static str| {
        let path = shown.clone();
        move |status| ImportError::Call {
            path,
            call,
            status: Box::new(status),
        }
    };
    let mut missing = BTreeMap::new();
    for (digest, (size, labels)) in &plan.blobs {
        if !has_blob(channel, namespace, digest)
            .await
            .map_err(call("Content.Info"))?
        {
            missing.insert(digest.clone(), (*size, labels.clone()));
        }
    }
    // Small blobs from memory.
    for (digest, bytes) in &small {
        let Some((size, labels)) = missing.remove(digest) else {
            continue;
        };
        let (tx, rx) = mpsc::channel(1);
        let _ = tx.send(bytes.clone()).await;
        drop(tx);
        write_blob(channel.clone(), namespace, lease, digest, size, labels, rx)
            .await
            .map_err(call("Content.Write"))?;
    }
    // Large blobs streamed from a second pass over the archive.
    if !missing.is_empty() {
        let wanted: Vec<String> = missing.keys().cloned().collect();
        let (tx, mut rx) = mpsc::channel::<(String, mpsc::Receiver<Vec<u8>>)>(1);
        let owned: PathBuf = path.to_path_buf();
        let reader = tokio::task::spawn_blocking(move || stream_blobs(&owned, &wanted, tx));
        while let Some((digest, data)) = rx.recv().await {
            let Some((size, labels)) = missing.remove(&digest) else {
                continue;
            };
            write_blob(
                channel.clone(),
                namespace,
                lease,
                &digest,
                size,
                labels,
                data,
            )
            .await
            .map_err(call("Content.Write"))?;
        }
        reader.await.map_err(|e| ImportError::Read {
            path: shown.clone(),
            source: std::io::Error::other(e),
        })??;
        if let Some(d) = missing.keys().next() {
            return Err(ImportError::Format {
                path: shown.clone(),
                reason: format!("blob {d} is not in the archive"),
            });
        }
    }
    let mut images = ImagesClient::new(channel.clone());
    for (name, desc, exists) in todo {
        let image = Image {
            name: name.clone(),
            labels: HashMap::from([
                ("io.cri-containerd.image".to_string(), "managed".to_string()),
                (ORIGIN_LABEL.to_string(), origin.label().to_string()),
            ]),
            target: Some(Descriptor {
                media_type: desc.media_type.clone(),
                digest: desc.digest.clone(),
                size: desc.size,
                annotations: HashMap::new(),
            }),
            created_at: None,
            updated_at: None,
        };
        if *exists {
            let req = UpdateImageRequest {
                image: Some(image),
                update_mask: None,
                source_date_epoch: None,
            };
            images
                .update(request(req, namespace, lease))
                .await
                .map_err(call("Images.Update"))?;
        } else {
            let req = CreateImageRequest {
                image: Some(image),
                source_date_epoch: None,
            };
            images
                .create(request(req, namespace, lease))
                .await
                .map_err(call("Images.Create"))?;
        }
        label_blob(channel, namespace, &desc.digest, origin)
            .await
            .map_err(call("Content.Update"))?;
        tracing::info!(image = %name, digest = %desc.digest, "imported");
    }
    Ok(())
}

/// Walks the archive and hands every wanted blob over in chunks.
fn stream_blobs(
    path: &Path,
    wanted: &[String],
    tx: mpsc::Sender<(String, mpsc::Receiver<Vec<u8>>)>,
) -> Result<(), ImportError> {
    let shown = path.display().to_string();
    let io = |source| ImportError::Read {
        path: shown.clone(),
        source,
    };
    let mut archive = tar::Archive::new(std::fs::File::open(path).map_err(io)?);
    for entry in archive.entries_with_seek().map_err(io)? {
        let mut entry = entry.map_err(io)?;
        let Some(digest) = entry_name(&entry).and_then(|n| blob_digest(&n)) else {
            continue;
        };
        if !wanted.contains(&digest) {
            continue;
        }
        let (ctx, crx) = mpsc::channel(2);
        if tx.blocking_send((digest, crx)).is_err() {
            return Ok(());
        }
        loop {
            let mut buf = vec![0u8; CHUNK];
            let mut filled = 0;
            while filled < CHUNK {
                match entry.read(&mut buf[filled..]).map_err(io)? {
                    0 => break,
                    n => filled += n,
                }
            }
            if filled == 0 {
                break;
            }
            buf.truncate(filled);
            if ctx.blocking_send(buf).is_err() {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// Imports every `*.tar` in `dir` (sorted by name), labelled `origin`; an
/// archive that fails is reported and the others still go in.
pub async fn import_dir(
    channel: &Channel,
    dir: &Path,
    namespace: &str,
    origin: Origin,
) -> Vec<Result<Vec<Imported>, ImportError>> {
    match archives_in(dir) {
        Ok(archives) => import_archives(channel, &archives, namespace, origin).await,
        Err(e) => vec![Err(e)],
    }
}

/// The `*.tar` archives in `dir`, sorted by name.
pub fn archives_in(dir: &Path) -> Result<Vec<PathBuf>, ImportError> {
    let mut archives: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|source| ImportError::Read {
            path: dir.display().to_string(),
            source,
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "tar"))
        .collect();
    archives.sort();
    Ok(archives)
}

/// Imports `archives` one after another, labelled `origin`; an archive
/// that fails is reported and the others still go in.
pub async fn import_archives(
    channel: &Channel,
    archives: &[PathBuf],
    namespace: &str,
    origin: Origin,
) -> Vec<Result<Vec<Imported>, ImportError>> {
    let mut out = Vec::new();
    for a in archives {
        out.push(import_archive_as(channel, a, namespace, origin).await);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_annotations() {
        let d = |k: &str, v: &str| Desc {
            media_type: MANIFEST_TYPES[0].into(),
            digest: "sha256:00".into(),
            size: 1,
            annotations: BTreeMap::from([(k.to_string(), v.to_string())]),
        };
        let a = Path::new("/system/payload/images/pause.tar");
        assert_eq!(
            image_name(
                &d("io.containerd.image.name", "cairn.local/pause:v1.20.2"),
                a
            )
            .unwrap(),
            "cairn.local/pause:v1.20.2"
        );
        assert_eq!(
            image_name(
                &d("org.opencontainers.image.ref.name", "cairn.local/x:1"),
                a
            )
            .unwrap(),
            "cairn.local/x:1"
        );
        assert_eq!(
            image_name(&d("org.opencontainers.image.ref.name", "v1.20.2"), a).unwrap(),
            "cairn.local/pause:v1.20.2"
        );
        assert_eq!(image_name(&d("other", "x"), a), None);
        assert_eq!(
            blob_digest("blobs/sha256/abc").as_deref(),
            Some("sha256:abc")
        );
        assert_eq!(blob_digest("index.json"), None);
    }
}
