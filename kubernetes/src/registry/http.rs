//! The read-only part of the OCI distribution API the image cache serves:
//! `GET|HEAD /v2/`, manifests by tag or digest, blobs by digest. Anything
//! unknown is a 404 with the spec's error JSON; anything that writes is a
//! 405. The answer is computed from a [`Source`] so the routing is tested
//! without containerd.

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::StreamExt;
use http::{header, HeaderValue, Method, Response, StatusCode, Uri};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full, StreamBody};

/// Manifests are read into memory to be served; none is near this.
pub const MAX_MANIFEST: u64 = 4 << 20;

/// The body of every answer.
pub type Body = UnsyncBoxBody<Bytes, std::io::Error>;
/// A blob's bytes, in chunks.
pub type BlobStream = BoxStream<'static, Result<Bytes, std::io::Error>>;

/// What a tag names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
}

/// Where the images come from.
pub trait Source: Send + Sync + 'static {
    /// The target of a whole image reference (`cairn.local/pause:v1.20.2`),
    /// if it is in the cache.
    fn resolve(&self, reference: &str) -> BoxFuture<'_, Result<Option<Target>, String>>;
    /// The size of a blob, if the store has it.
    fn size(&self, digest: &str) -> BoxFuture<'_, Result<Option<u64>, String>>;
    /// A blob's bytes.
    fn read(&self, digest: &str) -> BoxFuture<'_, Result<BlobStream, String>>;
}

const MANIFEST_TYPES: &[&str] = &[
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
];

fn body(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

fn response(
    status: StatusCode,
    headers: &[(header::HeaderName, String)],
    b: Body,
) -> Response<Body> {
    let mut r = Response::new(b);
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        "docker-distribution-api-version",
        HeaderValue::from_static("registry/2.0"),
    );
    for (k, v) in headers {
        if let Ok(v) = HeaderValue::from_str(v) {
            h.insert(k.clone(), v);
        }
    }
    r
}

/// An error answer in the distribution spec's shape.
fn error(status: StatusCode, code: &str, message: &str, head: bool) -> Response<Body> {
    let json = serde_json::json!({
        "errors": [{ "code": code, "message": message, "detail": {} }]
    })
    .to_string();
    let headers = [
        (header::CONTENT_TYPE, "application/json".to_string()),
        (header::CONTENT_LENGTH, json.len().to_string()),
    ];
    response(status, &headers, if head { empty() } else { body(json) })
}

/// Decodes `%XX` escapes (containerd escapes the `:` of a port in `ns`).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz");
            if let Ok(v) = u8::from_str_radix(hex, 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The registry a mirror request is for: containerd adds `?ns=<host>`.
fn namespace(uri: &Uri) -> Option<String> {
    uri.query()?
        .split('&')
        .find_map(|kv| kv.strip_prefix("ns="))
        .map(percent_decode)
        .filter(|ns| !ns.is_empty())
}

/// A repository name as the spec allows it (lower case components).
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.split('/').all(|c| {
            !c.is_empty()
                && c != "."
                && c != ".."
                && c.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
        })
}

fn valid_digest(d: &str) -> bool {
    d.strip_prefix("sha256:")
        .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn valid_tag(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 128
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// The image references a repository and tag can mean: with `ns`, exactly
/// `<ns>/<name>:<tag>`; without, the name as a whole reference when its
/// first component is a host, else the name under Cairn's registry and
/// under docker.io.
pub fn candidates(name: &str, tag: &str, ns: Option<&str>) -> Vec<String> {
    if let Some(ns) = ns {
        return vec![format!("{ns}/{name}:{tag}")];
    }
    let first = name.split('/').next().unwrap_or_default();
    if name.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost") {
        return vec![format!("{name}:{tag}")];
    }
    let mut out = vec![format!(
        "{}/{name}:{tag}",
        config::constants::IMAGE_REGISTRY
    )];
    if name.contains('/') {
        out.push(format!("docker.io/{name}:{tag}"));
    } else {
        out.push(format!("docker.io/library/{name}:{tag}"));
    }
    out
}

/// The media type a manifest names, or the one its shape implies.
fn manifest_type(bytes: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    if let Some(t) = v.get("mediaType").and_then(|t| t.as_str()) {
        return Some(t.to_string());
    }
    if v.get("manifests").is_some() {
        Some(MANIFEST_TYPES[0].to_string())
    } else if v.get("config").is_some() {
        Some(MANIFEST_TYPES[1].to_string())
    } else {
        None
    }
}

async fn read_all<S: Source>(source: &S, digest: &str) -> Result<Vec<u8>, String> {
    let mut stream = source.read(digest).await?;
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| e.to_string())?;
        out.extend_from_slice(&chunk);
        if out.len() as u64 > MAX_MANIFEST {
            return Err(format!("manifest {digest} is over {MAX_MANIFEST} bytes"));
        }
    }
    Ok(out)
}

fn unavailable(e: &str, head: bool) -> Response<Body> {
    tracing::warn!(error = %e, "image cache: the store did not answer");
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "UNAVAILABLE",
        "the image store did not answer",
        head,
    )
}

async fn manifest<S: Source>(
    source: &S,
    name: &str,
    reference: &str,
    ns: Option<&str>,
    head: bool,
) -> Response<Body> {
    let unknown = || {
        error(
            StatusCode::NOT_FOUND,
            "MANIFEST_UNKNOWN",
            &format!("manifest unknown: {name}:{reference} is not in the node's image cache"),
            head,
        )
    };
    let target = if valid_digest(reference) {
        match source.size(reference).await {
            Ok(Some(size)) if size <= MAX_MANIFEST => {
                let bytes = match read_all(source, reference).await {
                    Ok(b) => b,
                    Err(e) => return unavailable(&e, head),
                };
                let Some(media_type) = manifest_type(&bytes) else {
                    return unknown();
                };
                return manifest_response(
                    &Target {
                        media_type,
                        digest: reference.to_string(),
                        size,
                    },
                    bytes,
                    head,
                );
            }
            Ok(_) => return unknown(),
            Err(e) => return unavailable(&e, head),
        }
    } else if valid_tag(reference) {
        let mut found = None;
        for c in candidates(name, reference, ns) {
            match source.resolve(&c).await {
                Ok(Some(t)) => {
                    found = Some(t);
                    break;
                }
                Ok(None) => {}
                Err(e) => return unavailable(&e, head),
            }
        }
        match found {
            Some(t) => t,
            None => return unknown(),
        }
    } else {
        return error(
            StatusCode::BAD_REQUEST,
            "MANIFEST_INVALID",
            "the reference is neither a tag nor a sha256 digest",
            head,
        );
    };
    if head {
        return manifest_response(&target, Vec::new(), true);
    }
    match read_all(source, &target.digest).await {
        Ok(bytes) => manifest_response(&target, bytes, false),
        Err(e) => unavailable(&e, head),
    }
}

fn manifest_response(target: &Target, bytes: Vec<u8>, head: bool) -> Response<Body> {
    let headers = [
        (header::CONTENT_TYPE, target.media_type.clone()),
        (header::CONTENT_LENGTH, target.size.to_string()),
        (
            header::HeaderName::from_static("docker-content-digest"),
            target.digest.clone(),
        ),
        (header::ETAG, format!("\"{}\"", target.digest)),
    ];
    response(
        StatusCode::OK,
        &headers,
        if head { empty() } else { body(bytes) },
    )
}

async fn blob<S: Source>(source: &S, digest: &str, head: bool) -> Response<Body> {
    let unknown = || {
        error(
            StatusCode::NOT_FOUND,
            "BLOB_UNKNOWN",
            &format!("blob unknown: {digest} is not in the node's image cache"),
            head,
        )
    };
    if !valid_digest(digest) {
        return error(
            StatusCode::BAD_REQUEST,
            "DIGEST_INVALID",
            "a blob is named by a sha256 digest",
            head,
        );
    }
    let size = match source.size(digest).await {
        Ok(Some(s)) => s,
        Ok(None) => return unknown(),
        Err(e) => return unavailable(&e, head),
    };
    let headers = [
        (header::CONTENT_TYPE, "application/octet-stream".to_string()),
        (header::CONTENT_LENGTH, size.to_string()),
        (
            header::HeaderName::from_static("docker-content-digest"),
            digest.to_string(),
        ),
        (header::ETAG, format!("\"{digest}\"")),
    ];
    if head {
        return response(StatusCode::OK, &headers, empty());
    }
    match source.read(digest).await {
        Ok(stream) => {
            let frames = stream.map(|r| r.map(hyper::body::Frame::data));
            response(
                StatusCode::OK,
                &headers,
                StreamBody::new(frames).boxed_unsync(),
            )
        }
        Err(e) => unavailable(&e, head),
    }
}

/// The answer to one request.
pub async fn handle<S: Source>(source: &S, method: &Method, uri: &Uri) -> Response<Body> {
    let head = method == Method::HEAD;
    if method != Method::GET && !head {
        return error(
            StatusCode::METHOD_NOT_ALLOWED,
            "UNSUPPORTED",
            "the node's image cache is read-only",
            false,
        );
    }
    let path = uri.path();
    if path == "/v2" || path == "/v2/" {
        let headers = [
            (header::CONTENT_TYPE, "application/json".to_string()),
            (header::CONTENT_LENGTH, "2".to_string()),
        ];
        return response(
            StatusCode::OK,
            &headers,
            if head { empty() } else { body("{}") },
        );
    }
    let unknown_name = || {
        error(
            StatusCode::NOT_FOUND,
            "NAME_UNKNOWN",
            "repository name not known to the node's image cache",
            head,
        )
    };
    let Some(rest) = path.strip_prefix("/v2/") else {
        return unknown_name();
    };
    let ns = namespace(uri);
    if let Some((name, reference)) = rest.rsplit_once("/manifests/") {
        if !valid_name(name) {
            return unknown_name();
        }
        return manifest(source, name, reference, ns.as_deref(), head).await;
    }
    if let Some((name, digest)) = rest.rsplit_once("/blobs/") {
        if !valid_name(name) {
            return unknown_name();
        }
        return blob(source, digest, head).await;
    }
    unknown_name()
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};
    use std::collections::HashMap;

    fn sha(b: &[u8]) -> String {
        format!("sha256:{}", hex::encode(Sha256::digest(b)))
    }

    #[derive(Default)]
    struct Fake {
        images: HashMap<String, Target>,
        blobs: HashMap<String, Vec<u8>>,
    }

    impl Source for Fake {
        fn resolve(&self, r: &str) -> BoxFuture<'_, Result<Option<Target>, String>> {
            let t = self.images.get(r).cloned();
            Box::pin(async move { Ok(t) })
        }
        fn size(&self, d: &str) -> BoxFuture<'_, Result<Option<u64>, String>> {
            let s = self.blobs.get(d).map(|b| b.len() as u64);
            Box::pin(async move { Ok(s) })
        }
        fn read(&self, d: &str) -> BoxFuture<'_, Result<BlobStream, String>> {
            let b = self.blobs.get(d).cloned();
            Box::pin(async move {
                let b = b.ok_or("missing")?;
                // Two chunks, as a stream would give them.
                let (x, y) = b.split_at(b.len() / 2);
                let chunks = vec![Ok(Bytes::from(x.to_vec())), Ok(Bytes::from(y.to_vec()))];
                Ok(futures::stream::iter(chunks).boxed())
            })
        }
    }

    fn fake() -> (Fake, String, String) {
        let layer = b"layer bytes".to_vec();
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": MANIFEST_TYPES[1],
            "config": {"digest": sha(b"{}"), "size": 2},
            "layers": [{"digest": sha(&layer), "size": layer.len()}],
        })
        .to_string()
        .into_bytes();
        let md = sha(&manifest);
        let ld = sha(&layer);
        let mut f = Fake::default();
        f.images.insert(
            "cairn.local/app:latest".into(),
            Target {
                media_type: MANIFEST_TYPES[1].into(),
                digest: md.clone(),
                size: manifest.len() as u64,
            },
        );
        f.blobs.insert(md.clone(), manifest);
        f.blobs.insert(ld.clone(), layer);
        (f, md, ld)
    }

    async fn get(f: &Fake, method: Method, uri: &str) -> (StatusCode, http::HeaderMap, Vec<u8>) {
        let r = handle(f, &method, &uri.parse().unwrap()).await;
        let status = r.status();
        let headers = r.headers().clone();
        let bytes = r.into_body().collect().await.unwrap().to_bytes().to_vec();
        (status, headers, bytes)
    }

    #[tokio::test]
    async fn base_answers_with_the_api_version() {
        let (f, _, _) = fake();
        let (s, h, b) = get(&f, Method::GET, "/v2/").await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(h["docker-distribution-api-version"], "registry/2.0");
        assert_eq!(b, b"{}");
        let (s, _, b) = get(&f, Method::HEAD, "/v2/").await;
        assert_eq!((s, b.len()), (StatusCode::OK, 0));
    }

    #[tokio::test]
    async fn a_mirror_request_finds_the_image_by_its_registry_and_tag() {
        let (f, md, _) = fake();
        for uri in [
            "/v2/app/manifests/latest?ns=cairn.local",
            "/v2/app/manifests/latest",
        ] {
            let (s, h, b) = get(&f, Method::GET, uri).await;
            assert_eq!(s, StatusCode::OK, "{uri}");
            assert_eq!(h[header::CONTENT_TYPE], MANIFEST_TYPES[1]);
            assert_eq!(h["docker-content-digest"], md.as_str());
            assert_eq!(sha(&b), md);
            assert_eq!(h[header::CONTENT_LENGTH], b.len().to_string().as_str());
        }
        let (s, h, b) = get(&f, Method::HEAD, "/v2/app/manifests/latest?ns=cairn.local").await;
        assert_eq!(s, StatusCode::OK);
        assert!(b.is_empty());
        assert_eq!(h["docker-content-digest"], md.as_str());
        // By digest, the media type comes from the manifest itself.
        let (s, h, _) = get(&f, Method::GET, &format!("/v2/app/manifests/{md}")).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(h[header::CONTENT_TYPE], MANIFEST_TYPES[1]);
    }

    #[tokio::test]
    async fn other_registries_and_tags_are_unknown_with_error_json() {
        let (f, _, _) = fake();
        for uri in [
            "/v2/app/manifests/latest?ns=docker.io",
            "/v2/app/manifests/v2?ns=cairn.local",
            "/v2/other/manifests/latest",
        ] {
            let (s, h, b) = get(&f, Method::GET, uri).await;
            assert_eq!(s, StatusCode::NOT_FOUND, "{uri}");
            assert_eq!(h[header::CONTENT_TYPE], "application/json");
            let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
            assert_eq!(v["errors"][0]["code"], "MANIFEST_UNKNOWN");
        }
        let (s, _, b) = get(&f, Method::GET, "/v2/Bad..Name/manifests/x").await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["errors"][0]["code"], "NAME_UNKNOWN");
        let (s, _, b) = get(&f, Method::GET, &format!("/v2/app/blobs/{}", sha(b"x"))).await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["errors"][0]["code"], "BLOB_UNKNOWN");
    }

    #[tokio::test]
    async fn blobs_stream_with_their_digest_and_length() {
        let (f, _, ld) = fake();
        let (s, h, b) = get(
            &f,
            Method::GET,
            &format!("/v2/app/blobs/{ld}?ns=cairn.local"),
        )
        .await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(b, b"layer bytes");
        assert_eq!(h["docker-content-digest"], ld.as_str());
        assert_eq!(h[header::CONTENT_LENGTH], "11");
        let (s, h, b) = get(&f, Method::HEAD, &format!("/v2/app/blobs/{ld}")).await;
        assert_eq!((s, b.len()), (StatusCode::OK, 0));
        assert_eq!(h[header::CONTENT_LENGTH], "11");
    }

    #[tokio::test]
    async fn writes_are_refused() {
        let (f, _, _) = fake();
        for m in [Method::PUT, Method::POST, Method::DELETE, Method::PATCH] {
            let (s, _, b) = get(&f, m, "/v2/app/manifests/latest").await;
            assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED);
            let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
            assert_eq!(v["errors"][0]["code"], "UNSUPPORTED");
        }
    }

    #[test]
    fn candidates_follow_containerd_names() {
        assert_eq!(
            candidates("library/nginx", "1", Some("docker.io")),
            vec!["docker.io/library/nginx:1"]
        );
        assert_eq!(
            candidates("x", "1", Some("localhost:5000")),
            vec!["localhost:5000/x:1"]
        );
        assert_eq!(candidates("quay.io/a/b", "1", None), vec!["quay.io/a/b:1"]);
        assert_eq!(
            candidates("pause", "1", None),
            vec!["cairn.local/pause:1", "docker.io/library/pause:1"]
        );
        assert_eq!(percent_decode("localhost%3A5000"), "localhost:5000");
        assert_eq!(percent_decode("a%"), "a%");
    }
}
