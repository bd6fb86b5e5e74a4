use super::*;

fn sha(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// A tar file of `(name, bytes)` entries.
fn tar_of(path: &Path, entries: &[(&str, &[u8])]) {
    let mut b = tar::Builder::new(File::create(path).unwrap());
    for (name, bytes) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_size(bytes.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, name, *bytes).unwrap();
    }
    b.finish().unwrap();
}

/// A layer: an uncompressed tar holding one file.
fn layer(content: &[u8]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(content.len() as u64);
    h.set_mode(0o755);
    h.set_cksum();
    b.append_data(&mut h, "app", content).unwrap();
    b.into_inner().unwrap()
}

fn config_for(layers: &[&[u8]]) -> Vec<u8> {
    let diff_ids: Vec<_> = layers.iter().map(|l| sha(l)).collect();
    serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Entrypoint": ["/app"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .unwrap()
}

/// What older `docker save` writes: `<id>/layer.tar`, `<id>.json`,
/// manifest.json with RepoTags.
fn docker_archive(path: &Path, tags: &[&str], layers: &[&[u8]]) {
    let config = config_for(layers);
    let config_name = format!("{}.json", &sha(&config)[7..]);
    let layer_names: Vec<String> = (0..layers.len())
        .map(|i| format!("l{i}/layer.tar"))
        .collect();
    let manifest = serde_json::to_vec(&serde_json::json!([{
        "Config": config_name, "RepoTags": tags, "Layers": layer_names,
    }]))
    .unwrap();
    let mut entries: Vec<(&str, &[u8])> = vec![
        ("manifest.json", &manifest),
        (&config_name, &config),
        ("repositories", b"{}"),
    ];
    for (name, bytes) in layer_names.iter().zip(layers) {
        entries.push((name, bytes));
    }
    tar_of(path, &entries);
}

/// An OCI layout whose index entry carries `annotations`.
fn oci_archive(path: &Path, annotations: serde_json::Value, layer_bytes: &[u8]) -> String {
    let config = config_for(&[layer_bytes]);
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": sha(&config), "size": config.len()},
        "layers": [{"mediaType": OCI_LAYER, "digest": sha(layer_bytes), "size": layer_bytes.len()}],
    }))
    .unwrap();
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": sha(&manifest),
                       "size": manifest.len(), "annotations": annotations}],
    }))
    .unwrap();
    let blob = |b: &[u8]| format!("blobs/sha256/{}", &sha(b)[7..]);
    let (m, c, l) = (blob(&manifest), blob(&config), blob(layer_bytes));
    tar_of(
        path,
        &[
            ("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#),
            ("index.json", &index),
            (&m, &manifest),
            (&c, &config),
            (&l, layer_bytes),
        ],
    );
    sha(&manifest)
}

/// Converts `input` and checks the result as the node's importer would:
/// an OCI layout whose every reachable blob matches its digest.
fn convert(dir: &Path, input: &Path) -> (Plan, Plan) {
    let plan = plan(input).unwrap();
    let out = dir.join("out.tar");
    write(input, &plan, &out).unwrap();
    let again = super::plan(&out).unwrap();
    (plan, again)
}

#[test]
fn a_docker_archive_becomes_an_oci_layout_with_full_names() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("app.tar");
    let (l1, l2) = (layer(b"one"), layer(b"two"));
    docker_archive(
        &input,
        &["app:1.0", "registry.example:5000/team/app:2"],
        &[&l1, &l2],
    );
    let (plan, out) = convert(dir.path(), &input);
    assert_eq!(plan.format, Format::DockerArchive);
    assert_eq!(
        plan.images,
        [
            "docker.io/library/app:1.0",
            "registry.example:5000/team/app:2"
        ]
    );
    assert_eq!(out.format, Format::OciArchive);
    assert_eq!(out.images, plan.images);
    // config, two layers, the manifest; `repositories` is not carried.
    assert_eq!(out.copied.len(), 4);
    assert!(out.copied.values().any(|d| *d == sha(&l1)));
    assert!(out.copied.values().any(|d| *d == sha(&l2)));
    assert_eq!(out.size, plan.size);
    // Reproducible: the same input gives the same bytes.
    let first = std::fs::read(dir.path().join("out.tar")).unwrap();
    write(&input, &plan, &dir.path().join("again.tar")).unwrap();
    assert_eq!(first, std::fs::read(dir.path().join("again.tar")).unwrap());
}

#[test]
fn an_oci_archive_keeps_its_manifest_and_gets_full_names() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("web.tar");
    let manifest = oci_archive(
        &input,
        serde_json::json!({REF_ANNOTATION: "me/web:3"}),
        &layer(b"web"),
    );
    let (plan, out) = convert(dir.path(), &input);
    assert_eq!(plan.format, Format::OciArchive);
    assert_eq!(out.images, ["docker.io/me/web:3"]);
    assert_eq!(out.index[0].digest, manifest);
    assert_eq!(
        out.index[0].annotations[NAME_ANNOTATION],
        "docker.io/me/web:3"
    );
}

#[test]
fn broken_archives_are_refused_naming_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let err = |p: &Path| plan(p).unwrap_err().to_string();

    let bare_tag = dir.path().join("bare.tar");
    oci_archive(
        &bare_tag,
        serde_json::json!({REF_ANNOTATION: "v1"}),
        &layer(b"x"),
    );
    let e = err(&bare_tag);
    assert!(e.contains("only by the tag \"v1\""), "{e}");

    let untagged = dir.path().join("untagged.tar");
    docker_archive(&untagged, &[], &[&layer(b"x")]);
    assert!(err(&untagged).contains("has no tag"), "{}", err(&untagged));

    // A layer whose bytes are not the ones its digest names.
    let l = layer(b"good");
    let config = config_for(&[&l]);
    let config_name = format!("{}.json", &sha(&config)[7..]);
    let manifest = serde_json::to_vec(&serde_json::json!([{
        "Config": config_name, "RepoTags": ["x:1"], "Layers": ["l/layer.tar"],
    }]))
    .unwrap();
    let tampered = dir.path().join("tampered.tar");
    let evil = layer(b"evil");
    tar_of(
        &tampered,
        &[
            ("manifest.json", &manifest),
            (&config_name, &config),
            ("l/layer.tar", &evil),
        ],
    );
    let e = err(&tampered);
    assert!(e.contains("diff_id"), "{e}");

    let missing = dir.path().join("missing.tar");
    tar_of(&missing, &[("index.json", br#"{"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000","size":3,"annotations":{"io.containerd.image.name":"a.io/x:1"}}]}"#)]);
    let e = err(&missing);
    assert!(e.contains("is missing"), "{e}");

    let neither = dir.path().join("neither.tar");
    tar_of(&neither, &[("hello", b"world")]);
    assert!(err(&neither).contains("neither an OCI image layout"));

    let not_tar = dir.path().join("not.tar");
    std::fs::write(&not_tar, vec![7u8; 1500]).unwrap();
    assert!(plan(&not_tar).is_err());
}

#[test]
fn references_are_normalized_as_containerd_stores_them() {
    let n = |r: &str| normalize_reference(r);
    assert_eq!(n("nginx").unwrap(), "docker.io/library/nginx:latest");
    assert_eq!(n("me/app:1").unwrap(), "docker.io/me/app:1");
    assert_eq!(n("localhost/app:1").unwrap(), "localhost/app:1");
    assert_eq!(
        n("registry.example:5000/a/b:v2").unwrap(),
        "registry.example:5000/a/b:v2"
    );
    assert_eq!(n("cairn.local/x:1").unwrap(), "cairn.local/x:1");
    assert!(n("Upper/app:1").is_err());
    assert!(n("app:").is_err());
    assert!(n("a//b").is_err());
    assert_eq!(file_name(1, "docker.io/library/app:1.0"), "01-app.tar");
    assert_eq!(file_name(12, "registry.example:5000/a/b:v2"), "12-b.tar");
}
