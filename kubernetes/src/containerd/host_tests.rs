//! containerd for real: the service started by the supervisor from the
//! host's containerd (Debian's, like the payload's) in a temporary root,
//! healthy over the API, an OCI archive imported and imported again,
//! the containers listed. Skips (saying why) without root or containerd.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use containerd_client::services::v1::content_client::ContentClient;
use containerd_client::services::v1::images_client::ImagesClient;
use containerd_client::services::v1::{GetImageRequest, InfoRequest};
use sha2::{Digest, Sha256};

use super::import::{import_archive, import_dir, Origin, Outcome};
use super::*;
use runtime::supervisor::{State, Supervisor};

const HOST_CONTAINERD: &str = "/usr/bin/containerd";

/// Why this host cannot run the test, if it cannot.
fn cannot_run() -> Option<String> {
    if !nix::unistd::Uid::effective().is_root() {
        return Some("needs root".into());
    }
    if !Path::new(HOST_CONTAINERD).exists() {
        return Some(format!(
            "{HOST_CONTAINERD} is missing (images/install-deps.sh installs Debian's containerd)"
        ));
    }
    None
}

fn sha(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Writes an OCI layout archive with one image of one layer (`size`
/// bytes of file content, so large layers take the streaming path).
fn oci_archive(path: &Path, name: &str, content: &[u8]) -> String {
    let mut layer = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(content.len() as u64);
    h.set_mode(0o755);
    h.set_cksum();
    layer.append_data(&mut h, "hello", content).unwrap();
    let layer = layer.into_inner().unwrap();
    let layer_digest = sha(&layer);
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Entrypoint": ["/hello"]},
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
    }))
    .unwrap();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha(&config), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": layer.len()}],
    }))
    .unwrap();
    let manifest_digest = sha(&manifest);
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest, "size": manifest.len(),
            "annotations": {"io.containerd.image.name": name},
        }],
    }))
    .unwrap();
    let mut out = tar::Builder::new(std::fs::File::create(path).unwrap());
    let mut add = |name: String, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        out.append_data(&mut h, name, data).unwrap();
    };
    add("oci-layout".into(), br#"{"imageLayoutVersion":"1.0.0"}"#);
    // Blobs before index.json, as some writers do: the import must not
    // depend on the order.
    for blob in [&layer, &config, &manifest] {
        add(format!("blobs/sha256/{}", &sha(blob)[7..]), blob);
    }
    add("index.json".into(), &index);
    out.into_inner().unwrap().flush().unwrap();
    manifest_digest
}

fn test_layout(root: &Path) -> ContainerdPaths {
    ContainerdPaths {
        root: root.join("lib"),
        state: root.join("run"),
        socket: root.join("run/containerd.sock"),
        runc: "/usr/sbin/runc".into(),
        cni_bin_dir: root.join("cni/bin"),
        cni_conf_dir: root.join("cni/net.d"),
        cgroup: None,
    }
}

#[tokio::test]
async fn containerd_runs_supervised_and_imports_oci_archives() {
    if let Some(why) = cannot_run() {
        eprintln!("SKIPPED containerd_runs_supervised_and_imports_oci_archives: {why}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let layout = test_layout(dir.path());
    let config_path: PathBuf = dir.path().join("etc/config.toml");
    let settings = Settings {
        sandbox_image: pause_image(),
        mirrors: Default::default(),
    };
    let sup = Supervisor::new();
    let h = sup
        .start(service_with(
            HOST_CONTAINERD.into(),
            config_path.clone(),
            layout.clone(),
            {
                let text = super::config::render(&layout, &settings);
                std::sync::Arc::new(move || Ok(text.clone()))
            },
        ))
        .unwrap();
    let mut rx = h.status.subscribe();
    // Drop the watch guard at once: holding it blocks the service's writes.
    let up = tokio::time::timeout(Duration::from_secs(60), async {
        rx.wait_for(|s| s.is_up()).await.map(drop)
    })
    .await;
    let status = h.snapshot();
    assert!(
        up.is_ok() && status.is_up(),
        "containerd did not become healthy: {status:?}\nlog:\n{}",
        h.logs.contents()
    );
    assert!(std::fs::read_to_string(&config_path)
        .unwrap()
        .contains("version = 2"));
    let v = version(&layout.socket).await.unwrap();
    assert!(v.starts_with("1.") || v.starts_with('v'), "version {v}");

    let channel = connect(&layout.socket).await.unwrap();
    let images_dir = dir.path().join("images");
    std::fs::create_dir_all(&images_dir).unwrap();
    // 3 MiB: bigger than one Write message and than the in-memory limit.
    let big: Vec<u8> = (0..3 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let d1 = oci_archive(
        &images_dir.join("hello.tar"),
        "cairn.local/hello:test",
        &big,
    );
    let d2 = oci_archive(
        &images_dir.join("small.tar"),
        "cairn.local/small:test",
        b"tiny",
    );
    std::fs::write(images_dir.join("README"), "not an archive").unwrap();

    let first = import_dir(
        &channel,
        &images_dir,
        k8s::CONTAINERD_NAMESPACE,
        Origin::System,
    )
    .await;
    let first: Vec<_> = first.into_iter().map(|r| r.unwrap()).collect();
    assert_eq!(first.len(), 2);
    assert_eq!(first[0][0].name, "cairn.local/hello:test");
    assert_eq!(first[0][0].digest, d1);
    assert_eq!(first[0][0].outcome, Outcome::Imported);
    assert_eq!(first[1][0].digest, d2);

    let ns = |msg| {
        let mut r = tonic::Request::new(msg);
        r.metadata_mut()
            .insert("containerd-namespace", "k8s.io".parse().unwrap());
        r
    };
    let img = ImagesClient::new(channel.clone())
        .get(ns(GetImageRequest {
            name: "cairn.local/hello:test".into(),
        }))
        .await
        .unwrap()
        .into_inner()
        .image
        .unwrap();
    assert_eq!(img.target.unwrap().digest, d1);
    // The manifest carries the GC references to its config and layer.
    let mut req = tonic::Request::new(InfoRequest { digest: d1.clone() });
    req.metadata_mut()
        .insert("containerd-namespace", "k8s.io".parse().unwrap());
    let info = ContentClient::new(channel.clone())
        .info(req)
        .await
        .unwrap()
        .into_inner()
        .info
        .unwrap();
    assert!(
        info.labels
            .contains_key("containerd.io/gc.ref.content.config"),
        "{:?}",
        info.labels
    );
    assert!(
        info.labels.contains_key("containerd.io/gc.ref.content.l.0"),
        "{:?}",
        info.labels
    );

    // Again: nothing to do.
    let again = import_archive(
        &channel,
        &images_dir.join("hello.tar"),
        k8s::CONTAINERD_NAMESPACE,
    )
    .await
    .unwrap();
    assert_eq!(again[0].outcome, Outcome::Present);
    // Other contents under the same name replace the image.
    let d3 = oci_archive(
        &images_dir.join("hello.tar"),
        "cairn.local/hello:test",
        b"changed",
    );
    let changed = import_archive(
        &channel,
        &images_dir.join("hello.tar"),
        k8s::CONTAINERD_NAMESPACE,
    )
    .await
    .unwrap();
    assert_eq!(
        (changed[0].outcome.clone(), changed[0].digest.clone()),
        (Outcome::Imported, d3)
    );

    // A broken archive is an error naming it.
    std::fs::write(images_dir.join("broken.tar"), b"garbage").unwrap();
    let e = import_archive(&channel, &images_dir.join("broken.tar"), "k8s.io")
        .await
        .unwrap_err();
    assert!(e.to_string().contains("broken.tar"), "{e}");

    // No containers yet, in either namespace.
    assert!(list::containers(&channel, "k8s.io")
        .await
        .unwrap()
        .is_empty());
    assert!(list::containers(&channel, SYSTEM_NAMESPACE)
        .await
        .unwrap()
        .is_empty());

    sup.stop_all().await;
    assert_eq!(h.snapshot().state, State::Stopped);
}
