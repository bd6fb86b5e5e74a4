//! Image archives for `cairnctl image cache-create`: reads an OCI image
//! layout in a tar file (skopeo's `oci-archive:`, buildah, Docker 25's
//! `docker save`, images/payload/oci-image.py) or a docker-archive (older
//! `docker save`), checks every blob the archive's images reach against its
//! digest and size, and writes one OCI archive whose index names every
//! image by its full reference, the form the node's importer reads.
//!
//! Two passes over the input: the first hashes every file and keeps the
//! small ones (JSON documents), the second copies the blobs the images
//! reach. Layers are streamed, never held in memory. The output is
//! reproducible: fixed entry order, owner 0:0, mtime 0.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Files up to this size are kept from the first pass (indexes, manifests
/// and configs are a few KiB).
const SMALL: u64 = 4 << 20;

const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const INDEX_TYPES: &[&str] = &[
    OCI_INDEX,
    "application/vnd.docker.distribution.manifest.list.v2+json",
];
const MANIFEST_TYPES: &[&str] = &[
    OCI_MANIFEST,
    "application/vnd.docker.distribution.manifest.v2+json",
];
/// The annotations the node's importer reads an image's name from.
const NAME_ANNOTATION: &str = "io.containerd.image.name";
const REF_ANNOTATION: &str = "org.opencontainers.image.ref.name";

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Format { path: String, reason: String },
}

/// The two archive formats read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    OciArchive,
    DockerArchive,
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Format::OciArchive => "oci-archive",
            Format::DockerArchive => "docker-archive",
        })
    }
}

/// A content descriptor (OCI image spec).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Descriptor {
    #[serde(rename = "mediaType")]
    media_type: String,
    digest: String,
    size: u64,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    platform: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct IndexDoc {
    manifests: Vec<Descriptor>,
}

#[derive(Deserialize)]
struct ManifestDoc {
    config: Descriptor,
    #[serde(default)]
    layers: Vec<Descriptor>,
}

/// One image of a docker-archive's manifest.json.
#[derive(Deserialize)]
struct DockerImage {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers")]
    layers: Vec<String>,
}

#[derive(Deserialize)]
struct DockerConfig {
    rootfs: DockerRootfs,
}

#[derive(Deserialize)]
struct DockerRootfs {
    diff_ids: Vec<String>,
}

/// A regular file of the input archive, from the first pass.
struct ScannedFile {
    digest: String,
    size: u64,
    gzip: bool,
    bytes: Option<Vec<u8>>,
}

/// What an archive becomes: its images by full reference, the documents
/// written anew, and the input files copied as blobs.
#[derive(Debug)]
pub struct Plan {
    pub format: Format,
    /// Full references, in the archive's order.
    pub images: Vec<String>,
    /// Bytes of the blobs the images reach.
    pub size: u64,
    index: Vec<Descriptor>,
    generated: BTreeMap<String, Vec<u8>>,
    /// Input path -> digest.
    copied: BTreeMap<String, String>,
}

fn io_error(path: &Path) -> impl Fn(std::io::Error) -> ArchiveError + '_ {
    move |source| ArchiveError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn format_error(path: &Path, reason: impl Into<String>) -> ArchiveError {
    ArchiveError::Format {
        path: path.display().to_string(),
        reason: reason.into(),
    }
}

/// `./a/b` and `a/b` name the same file.
fn entry_name(path: &Path) -> String {
    let s = path.to_string_lossy();
    s.trim_start_matches("./").to_string()
}

/// The first pass: every regular file's sha256 and size; small files kept.
fn scan(path: &Path) -> Result<BTreeMap<String, ScannedFile>, ArchiveError> {
    let io = io_error(path);
    let mut archive = tar::Archive::new(File::open(path).map_err(&io)?);
    let mut files = BTreeMap::new();
    let mut buf = vec![0u8; 1 << 20];
    for entry in archive.entries().map_err(&io)? {
        let mut entry = entry.map_err(&io)?;
        if entry.header().entry_type() != tar::EntryType::Regular {
            continue;
        }
        let name = entry_name(&entry.path().map_err(&io)?);
        let size = entry.size();
        let mut hash = Sha256::new();
        let mut kept = (size <= SMALL).then(Vec::new);
        let mut head = Vec::new();
        loop {
            let n = entry.read(&mut buf).map_err(&io)?;
            if n == 0 {
                break;
            }
            hash.update(&buf[..n]);
            if head.len() < 2 {
                head.extend_from_slice(&buf[..n.min(2)]);
            }
            if let Some(k) = kept.as_mut() {
                k.extend_from_slice(&buf[..n]);
            }
        }
        files.insert(
            name,
            ScannedFile {
                digest: format!("sha256:{}", hex::encode(hash.finalize())),
                size,
                gzip: head.starts_with(&[0x1f, 0x8b]),
                bytes: kept,
            },
        );
    }
    Ok(files)
}

/// Reads the archive at `path` and plans its conversion (the first pass).
pub fn plan(path: &Path) -> Result<Plan, ArchiveError> {
    let files = scan(path)?;
    if files.contains_key("index.json") {
        plan_oci(path, &files)
    } else if files.contains_key("manifest.json") {
        plan_docker(path, &files)
    } else {
        Err(format_error(
            path,
            "neither an OCI image layout (no index.json) nor a docker-archive (no manifest.json)",
        ))
    }
}

fn small<'a>(
    path: &Path,
    files: &'a BTreeMap<String, ScannedFile>,
    name: &str,
) -> Result<&'a [u8], ArchiveError> {
    let f = files
        .get(name)
        .ok_or_else(|| format_error(path, format!("{name} is missing")))?;
    f.bytes.as_deref().ok_or_else(|| {
        format_error(
            path,
            format!("{name} is {} bytes, too large for a JSON document", f.size),
        )
    })
}

fn plan_oci(path: &Path, files: &BTreeMap<String, ScannedFile>) -> Result<Plan, ArchiveError> {
    let index: IndexDoc = serde_json::from_slice(small(path, files, "index.json")?)
        .map_err(|e| format_error(path, format!("index.json: {e}")))?;
    if index.manifests.is_empty() {
        return Err(format_error(path, "index.json lists no image"));
    }
    let mut plan = Plan {
        format: Format::OciArchive,
        images: Vec::new(),
        size: 0,
        index: Vec::new(),
        generated: BTreeMap::new(),
        copied: BTreeMap::new(),
    };
    for m in &index.manifests {
        let given = m
            .annotations
            .get(NAME_ANNOTATION)
            .or_else(|| m.annotations.get(REF_ANNOTATION))
            .ok_or_else(|| {
                format_error(
                    path,
                    format!("the index entry {} has no image name annotation ({NAME_ANNOTATION} or {REF_ANNOTATION})", m.digest),
                )
            })?;
        if !given.contains('/') && !given.contains(':') {
            return Err(format_error(
                path,
                format!(
                    "the index entry {} names its image only by the tag {given:?}; \
                     save it with its full name (skopeo copy ... oci-archive:{}:registry.example/app:{given})",
                    m.digest,
                    path.display()
                ),
            ));
        }
        let name = normalize_reference(given).map_err(|e| format_error(path, e))?;
        let mut todo = vec![m.clone()];
        while let Some(d) = todo.pop() {
            let blob = blob_path(path, &d.digest)?;
            let f = files.get(&blob).ok_or_else(|| {
                format_error(
                    path,
                    format!("blob {} ({}) is missing", d.digest, d.media_type),
                )
            })?;
            if f.digest != d.digest || f.size != d.size {
                return Err(format_error(
                    path,
                    format!(
                        "{blob} is {} bytes with {}; its descriptor says {} bytes with {}",
                        f.size, f.digest, d.size, d.digest
                    ),
                ));
            }
            if INDEX_TYPES.contains(&d.media_type.as_str()) {
                let doc: IndexDoc = serde_json::from_slice(small(path, files, &blob)?)
                    .map_err(|e| format_error(path, format!("{blob}: {e}")))?;
                todo.extend(doc.manifests);
            } else if MANIFEST_TYPES.contains(&d.media_type.as_str()) {
                let doc: ManifestDoc = serde_json::from_slice(small(path, files, &blob)?)
                    .map_err(|e| format_error(path, format!("{blob}: {e}")))?;
                todo.push(doc.config);
                todo.extend(doc.layers);
            }
            if plan.copied.insert(blob, d.digest.clone()).is_none() {
                plan.size += d.size;
            }
        }
        plan.index.push(named(m, &name));
        plan.images.push(name);
    }
    Ok(plan)
}

fn plan_docker(path: &Path, files: &BTreeMap<String, ScannedFile>) -> Result<Plan, ArchiveError> {
    let images: Vec<DockerImage> = serde_json::from_slice(small(path, files, "manifest.json")?)
        .map_err(|e| format_error(path, format!("manifest.json: {e}")))?;
    if images.is_empty() {
        return Err(format_error(path, "manifest.json lists no image"));
    }
    let mut plan = Plan {
        format: Format::DockerArchive,
        images: Vec::new(),
        size: 0,
        index: Vec::new(),
        generated: BTreeMap::new(),
        copied: BTreeMap::new(),
    };
    let copy = |plan: &mut Plan, name: &str| -> Result<(String, u64, bool), ArchiveError> {
        let name = name.trim_start_matches("./");
        let f = files
            .get(name)
            .ok_or_else(|| format_error(path, format!("{name} is missing")))?;
        if plan
            .copied
            .insert(name.to_string(), f.digest.clone())
            .is_none()
        {
            plan.size += f.size;
        }
        Ok((f.digest.clone(), f.size, f.gzip))
    };
    for image in &images {
        let tags = image.repo_tags.clone().unwrap_or_default();
        if tags.is_empty() {
            return Err(format_error(
                path,
                format!(
                    "the image {} has no tag; tag it before `docker save` (docker tag <id> registry.example/app:1.0)",
                    image.config
                ),
            ));
        }
        let config: DockerConfig =
            serde_json::from_slice(small(path, files, image.config.trim_start_matches("./"))?)
                .map_err(|e| format_error(path, format!("{}: {e}", image.config)))?;
        if config.rootfs.diff_ids.len() != image.layers.len() {
            return Err(format_error(
                path,
                format!(
                    "{} lists {} layers, its config {} diff_ids",
                    image.config,
                    image.layers.len(),
                    config.rootfs.diff_ids.len()
                ),
            ));
        }
        let (config_digest, config_size, _) = copy(&mut plan, &image.config)?;
        let mut layers = Vec::new();
        for (layer, diff_id) in image.layers.iter().zip(&config.rootfs.diff_ids) {
            let (digest, size, gzip) = copy(&mut plan, layer)?;
            // An uncompressed layer is its own diff: the config's diff_id
            // must be its sha256, or containerd's unpack fails later.
            if !gzip && &digest != diff_id {
                return Err(format_error(
                    path,
                    format!("layer {layer} has {digest}; the image config's diff_id is {diff_id}"),
                ));
            }
            layers.push(serde_json::json!({
                "mediaType": if gzip { OCI_LAYER_GZIP } else { OCI_LAYER },
                "digest": digest,
                "size": size,
            }));
        }
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": config_size},
            "layers": layers,
        }))
        .expect("a manifest serializes");
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(&manifest)));
        let desc = Descriptor {
            media_type: OCI_MANIFEST.into(),
            digest: digest.clone(),
            size: manifest.len() as u64,
            annotations: BTreeMap::new(),
            platform: None,
        };
        if !plan.generated.contains_key(&digest) {
            plan.size += manifest.len() as u64;
            plan.generated.insert(digest, manifest);
        }
        for tag in tags {
            let name = normalize_reference(&tag).map_err(|e| format_error(path, e))?;
            plan.index.push(named(&desc, &name));
            plan.images.push(name);
        }
    }
    Ok(plan)
}

/// `desc` annotated with the image's full name, as the importer reads it.
fn named(desc: &Descriptor, name: &str) -> Descriptor {
    let mut d = desc.clone();
    d.annotations
        .insert(NAME_ANNOTATION.to_string(), name.to_string());
    d.annotations
        .insert(REF_ANNOTATION.to_string(), name.to_string());
    d
}

/// `blobs/sha256/<hex>` for a sha256 digest.
fn blob_path(path: &Path, digest: &str) -> Result<String, ArchiveError> {
    match digest.strip_prefix("sha256:") {
        Some(hex) if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) => {
            Ok(format!("blobs/sha256/{hex}"))
        }
        _ => Err(format_error(
            path,
            format!("{digest:?} is not a sha256 digest (the only algorithm supported)"),
        )),
    }
}

/// Writes the OCI archive `plan` describes to `out` (the second pass over
/// `input`), synced to disk.
pub fn write(input: &Path, plan: &Plan, out: &Path) -> Result<(), ArchiveError> {
    let out_io = io_error(out);
    let mut builder = tar::Builder::new(File::create(out).map_err(&out_io)?);
    let append = |builder: &mut tar::Builder<File>,
                  name: &str,
                  size: u64,
                  data: &mut dyn Read|
     -> Result<(), ArchiveError> {
        let mut header = tar::Header::new_ustar();
        header.set_size(size);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        header.set_entry_type(tar::EntryType::Regular);
        builder
            .append_data(&mut header, name, data)
            .map_err(&out_io)
    };
    let layout = br#"{"imageLayoutVersion":"1.0.0"}"#;
    append(
        &mut builder,
        "oci-layout",
        layout.len() as u64,
        &mut &layout[..],
    )?;
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": plan.index,
    }))
    .expect("an index serializes");
    append(
        &mut builder,
        "index.json",
        index.len() as u64,
        &mut &index[..],
    )?;
    for (digest, bytes) in &plan.generated {
        let name = blob_path(out, digest)?;
        append(&mut builder, &name, bytes.len() as u64, &mut &bytes[..])?;
    }
    let in_io = io_error(input);
    let mut archive = tar::Archive::new(File::open(input).map_err(&in_io)?);
    let mut written = BTreeSet::new();
    for entry in archive.entries().map_err(&in_io)? {
        let mut entry = entry.map_err(&in_io)?;
        if entry.header().entry_type() != tar::EntryType::Regular {
            continue;
        }
        let name = entry_name(&entry.path().map_err(&in_io)?);
        let Some(digest) = plan.copied.get(&name) else {
            continue;
        };
        if !written.insert(digest.clone()) {
            continue;
        }
        let size = entry.size();
        let mut hashed = HashingReader::new(&mut entry);
        append(&mut builder, &blob_path(out, digest)?, size, &mut hashed)?;
        // The file changed between the passes.
        if &hashed.digest() != digest {
            return Err(format_error(
                input,
                format!("{name} changed while it was read"),
            ));
        }
    }
    let missing: Vec<_> = plan
        .copied
        .values()
        .filter(|d| !written.contains(*d))
        .collect();
    if !missing.is_empty() {
        return Err(format_error(
            input,
            format!("blobs vanished between the two reads: {missing:?}"),
        ));
    }
    let mut file = builder.into_inner().map_err(&out_io)?;
    file.flush().map_err(&out_io)?;
    file.sync_all().map_err(&out_io)
}

struct HashingReader<R> {
    inner: R,
    hash: Sha256,
}

impl<R: Read> HashingReader<R> {
    fn new(inner: R) -> Self {
        Self {
            inner,
            hash: Sha256::new(),
        }
    }

    fn digest(self) -> String {
        format!("sha256:{}", hex::encode(self.hash.finalize()))
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
}

/// A reference in the form containerd stores it: `nginx` is
/// `docker.io/library/nginx:latest`, `me/app:1` is `docker.io/me/app:1`;
/// a name with a registry host (a `.` or `:` in its first part, or
/// `localhost`) is kept. Upper case and empty parts are refused.
pub fn normalize_reference(reference: &str) -> Result<String, String> {
    let bad = |why: &str| Err(format!("{reference:?} is not an image reference: {why}"));
    let (name_tag, digest) = match reference.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (reference, None),
    };
    let (name, tag) = match name_tag.rsplit_once(':') {
        Some((n, t)) if !t.contains('/') => (n, Some(t)),
        _ => (name_tag, None),
    };
    if name.is_empty() || name.split('/').any(str::is_empty) {
        return bad("an empty name or path part");
    }
    let first = name.split('/').next().unwrap_or_default();
    let has_host =
        name.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    let path = if has_host {
        &name[first.len() + 1..]
    } else {
        name
    };
    if !path
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-/".contains(&b))
    {
        return bad("a repository name has lower-case letters, digits and . _ - / only");
    }
    if let Some(t) = tag {
        if t.is_empty()
            || t.len() > 128
            || !t
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        {
            return bad("a tag has letters, digits and . _ - only, at most 128");
        }
    }
    let full = match (has_host, name.contains('/')) {
        (true, _) => name.to_string(),
        (false, true) => format!("docker.io/{name}"),
        (false, false) => format!("docker.io/library/{name}"),
    };
    Ok(match (tag, digest) {
        (Some(t), Some(d)) => format!("{full}:{t}@{d}"),
        (Some(t), None) => format!("{full}:{t}"),
        (None, Some(d)) => format!("{full}@{d}"),
        (None, None) => format!("{full}:latest"),
    })
}

/// A file name for the converted archive of `image`: its repository's last
/// part, prefixed with the archive's position so the import order is the
/// command line's.
pub fn file_name(position: usize, image: &str) -> String {
    let repo = image.split(['@']).next().unwrap_or(image);
    let repo = match repo.rsplit_once(':') {
        Some((r, t)) if !t.contains('/') => r,
        _ => repo,
    };
    let last = repo.rsplit('/').next().unwrap_or("image");
    format!("{position:02}-{last}.tar")
}

/// Where `cache-create` writes a cache before renaming it into place.
pub fn staging_dir(out: &Path) -> PathBuf {
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "image-cache".into());
    out.with_file_name(format!(".{name}.partial-{}", std::process::id()))
}

#[cfg(test)]
#[path = "oci_archive_tests.rs"]
mod tests;
