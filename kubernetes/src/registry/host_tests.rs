//! The image cache for real: the host's containerd (Debian's 1.6, like the
//! payload's) with an image imported by Cairn's importer, the cache serving
//! it, and `ctr images pull` with the hosts directory machined writes
//! pulling `cairn.local/...:latest` (a name that resolves nowhere) into
//! another namespace, so every manifest and blob comes over the cache's
//! HTTP. A name the cache lacks falls through to the next host. Skips
//! (saying why) without root, containerd, ctr or python3.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use std::process::Command;

use super::*;
use crate::containerd::import::import_archive;

fn cannot_run() -> Option<String> {
    if !nix::unistd::Uid::effective().is_root() {
        return Some("needs root".into());
    }
    for p in ["/usr/bin/containerd", "/usr/bin/ctr", "/usr/bin/python3"] {
        if !Path::new(p).exists() {
            return Some(format!("{p} is missing"));
        }
    }
    None
}

#[tokio::test]
async fn containerd_pulls_a_cached_latest_image_through_the_cache() {
    if let Some(why) = cannot_run() {
        eprintln!("SKIPPED containerd_pulls_a_cached_latest_image_through_the_cache: {why}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let socket = root.join("containerd.sock");
    let config = root.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "version = 2\nroot = \"{}\"\nstate = \"{}\"\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n[grpc]\naddress = \"{}\"\n",
            root.join("lib").display(),
            root.join("run").display(),
            socket.display()
        ),
    )
    .unwrap();
    let mut containerd = runtime::reaper::spawn(
        Command::new("/usr/bin/containerd")
            .arg("--config")
            .arg(&config)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null()),
    )
    .unwrap();
    let mut up = false;
    for _ in 0..100 {
        if crate::containerd::version(&socket).await.is_ok() {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(up, "containerd did not answer");

    // An image as the payload builds them, imported as a system image.
    let rootfs = root.join("rootfs");
    std::fs::create_dir_all(&rootfs).unwrap();
    std::fs::write(rootfs.join("hello"), vec![42u8; 3 << 20]).unwrap();
    let archive = root.join("hosttest.tar");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../images/payload/oci-image.py");
    let built = runtime::exec::run(
        "/usr/bin/python3",
        &[
            script.to_str().unwrap(),
            "--ref",
            "cairn.local/hosttest:latest",
            "--rootfs",
            rootfs.to_str().unwrap(),
            "--out",
            archive.to_str().unwrap(),
            "--entrypoint",
            "/hello",
            "--epoch",
            "0",
        ],
    )
    .await
    .unwrap();
    assert!(built.status.success(), "{}", built.output);
    let channel = crate::containerd::connect(&socket).await.unwrap();
    import_archive(&channel, &archive, "k8s.io").await.unwrap();

    // The cache on a free loopback port, and the hosts directory.
    let listener = listen("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let cache = Containerd {
        socket: socket.clone(),
        namespace: "k8s.io".into(),
    };
    let server = tokio::spawn(serve(listener, Arc::new(cache)));
    let hosts = root.join("hosts.d");
    let settings = crate::containerd::Settings {
        sandbox_image: "cairn.local/pause:x".into(),
        mirrors: Default::default(),
    };
    crate::containerd::config::write_hosts(&hosts, &settings, Some(&format!("http://{addr}")))
        .unwrap();

    let ctr = |args: Vec<String>| async move {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        runtime::exec::run("/usr/bin/ctr", &args).await.unwrap()
    };
    let base = |ns: &str| {
        vec![
            "-a".to_string(),
            socket.display().to_string(),
            "-n".to_string(),
            ns.to_string(),
        ]
    };
    let mut pull = base("pulltest");
    pull.extend([
        "images".into(),
        "pull".into(),
        "--hosts-dir".into(),
        hosts.display().to_string(),
        "cairn.local/hosttest:latest".into(),
    ]);
    let out = ctr(pull.clone()).await;
    assert!(
        out.status.success(),
        "ctr pull through the cache: {}",
        out.output
    );
    let mut check = base("pulltest");
    check.extend([
        "images".into(),
        "check".into(),
        "name==cairn.local/hosttest:latest".into(),
    ]);
    let out = ctr(check).await;
    assert!(
        out.output.contains("complete"),
        "the pulled image is not complete: {}",
        out.output
    );

    // A name the cache does not have: the cache answers 404 and containerd
    // tries the next host (the registry itself, which does not resolve).
    let mut missing = pull.clone();
    *missing.last_mut().unwrap() = "cairn.local/not-cached:latest".into();
    let out = ctr(missing).await;
    assert!(!out.status.success());
    assert!(
        out.output
            .contains("https://cairn.local/v2/not-cached/manifests/latest"),
        "containerd did not fall through to the registry: {}",
        out.output
    );

    // A user image received as cairnctl sends it, imported, listed with its
    // origin and size, served by the cache, removed; the system image is
    // neither replaced by a user import nor removed.
    let user_rootfs = root.join("user-rootfs");
    std::fs::create_dir_all(&user_rootfs).unwrap();
    std::fs::write(user_rootfs.join("app"), b"user app").unwrap();
    let user_archive = root.join("user.tar");
    let built = runtime::exec::run(
        "/usr/bin/python3",
        &[
            script.to_str().unwrap(),
            "--ref",
            "cairn.local/user-app:1.0",
            "--rootfs",
            user_rootfs.to_str().unwrap(),
            "--out",
            user_archive.to_str().unwrap(),
            "--entrypoint",
            "/app",
            "--epoch",
            "0",
        ],
    )
    .await
    .unwrap();
    assert!(built.status.success(), "{}", built.output);
    let bytes = std::fs::read(&user_archive).unwrap();
    let sum = {
        use sha2::Digest as _;
        hex::encode(sha2::Sha256::digest(&bytes))
    };
    use api::machine::image_import_request::Part;
    use api::machine::{ImageImportHeader, ImageImportRequest};
    let part = |p| Ok(ImageImportRequest { part: Some(p) });
    let stream = futures::stream::iter(vec![
        part(Part::Header(ImageImportHeader {
            size: bytes.len() as u64,
            file_name: "user.tar".into(),
        })),
        part(Part::Chunk(bytes[..1000].to_vec())),
        part(Part::Chunk(bytes[1000..].to_vec())),
        part(Part::Sha256(sum)),
    ]);
    let received = crate::images::receive(stream, &root.join("imports"), u64::MAX)
        .await
        .unwrap();
    crate::containerd::import::import_archive_as(
        &channel,
        &received.path,
        "k8s.io",
        crate::containerd::import::Origin::User,
    )
    .await
    .unwrap();
    drop(received);
    let listed = crate::images::list_in(&channel, "k8s.io").await.unwrap();
    let find = |name: &str| listed.iter().find(|i| i.name == name).cloned();
    let user = find("cairn.local/user-app:1.0").expect("the user image is listed");
    assert_eq!(user.origin, "user");
    assert!(user.digest.starts_with("sha256:"));
    assert!(user.size > 1000, "{user:?}");
    let system = find("cairn.local/hosttest:latest").expect("the system image is listed");
    assert_eq!(system.origin, "system");
    assert!(system.size > 3 << 20, "{system:?}");
    let mut pull_user = pull.clone();
    *pull_user.last_mut().unwrap() = "cairn.local/user-app:1.0".into();
    let out = ctr(pull_user).await;
    assert!(
        out.status.success(),
        "ctr pull of the user image: {}",
        out.output
    );

    // A user archive naming the system image is refused.
    let hijack = crate::containerd::import::import_archive_as(
        &channel,
        &archive,
        "k8s.io",
        crate::containerd::import::Origin::User,
    )
    .await;
    assert!(
        matches!(
            hijack,
            Err(crate::containerd::import::ImportError::SystemImage { .. })
        ),
        "{hijack:?}"
    );
    let refused = crate::images::remove_in(&channel, "k8s.io", "cairn.local/hosttest:latest").await;
    assert!(
        matches!(refused, Err(crate::images::ImageError::System(_))),
        "{refused:?}"
    );
    crate::images::remove_in(&channel, "k8s.io", "cairn.local/user-app:1.0")
        .await
        .unwrap();
    let listed = crate::images::list_in(&channel, "k8s.io").await.unwrap();
    assert!(listed.iter().all(|i| i.name != "cairn.local/user-app:1.0"));
    assert!(listed
        .iter()
        .any(|i| i.name == "cairn.local/hosttest:latest"));

    server.abort();
    let _ = containerd.child.kill();
    let _ = tokio::time::timeout(Duration::from_secs(10), containerd.exit).await;
}
