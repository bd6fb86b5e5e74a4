//! The PKI against the real programs: etcd (Debian's, on the host) and
//! kube-apiserver v1.20.2 and kubectl from the payload build's cache. Every
//! kubeconfig authenticates, the serving certificate verifies for
//! 127.0.0.1, and Secrets reach etcd encrypted with the config's key.
//! Skipped (with a message) when the binaries are not there.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;
use crate::etcd::{self, EtcdPaths};
use config::generate::sample_controlplane as generated;
use runtime::supervisor::process::ProcessRunner;
use runtime::supervisor::{Health, HealthCheck, Service, Supervisor};

/// kube-apiserver and kubectl from `make payload`'s cache, or
/// `$CAIRN_KUBE_BIN_DIR`.
fn kube_bin_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("CAIRN_KUBE_BIN_DIR") {
        return Some(d.into());
    }
    let cache = std::env::var_os("CAIRN_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache/cairn")))?;
    std::fs::read_dir(cache.join("payload"))
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.join("kube-apiserver").is_file() && p.join("kubectl").is_file())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// kubectl through the reaper (which owns waitpid in machined). Its
/// discovery cache goes next to the kubeconfig: exec::run clears HOME, and
/// kubectl would otherwise write `.kube/cache` into the source tree.
async fn kubectl(bin: &Path, kubeconfig: &Path, server: &str, args: &[&str]) -> (bool, String) {
    let program = bin.join("kubectl").display().to_string();
    let cache = kubeconfig
        .with_file_name("kubectl-cache")
        .display()
        .to_string();
    let kubeconfig = kubeconfig.display().to_string();
    let mut all = vec![
        "--kubeconfig",
        &kubeconfig,
        "--server",
        server,
        "--request-timeout",
        "10s",
        "--cache-dir",
        &cache,
    ];
    all.extend_from_slice(args);
    let out = runtime::exec::run(&program, &all).await.unwrap();
    (out.status.success(), out.output)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_apiserver_accepts_the_pki() {
    let Some(bin) = kube_bin_dir() else {
        eprintln!(
            "SKIP: no kube-apiserver/kubectl (run `make payload`, or set CAIRN_KUBE_BIN_DIR)"
        );
        return;
    };
    if !Path::new("/usr/bin/etcd").exists() {
        eprintln!(
            "SKIP: /usr/bin/etcd is not installed (images/install-deps.sh installs etcd-server)"
        );
        return;
    }
    runtime::reaper::start();
    let tmp = tempfile::tempdir().unwrap();
    let layout = EtcdPaths {
        binary: "/usr/bin/etcd".into(),
        lib_dir: None,
        data_dir: tmp.path().join("etcd"),
        secrets: SecretDirs::under(&tmp.path().join("secrets")),
        client_port: free_port(),
        peer_port: free_port(),
        time_sync_timeout: Duration::ZERO,
        cgroup: None,
        user: None,
    };
    let (cfg, _) = generated();
    let facts = NodeFacts {
        hostname: "cp-1".into(),
        addresses: vec![],
    };
    issue_into(&cfg, &facts, &layout.secrets).unwrap();
    let sup = Supervisor::new();
    let etcd = sup
        .start(etcd::service_with(etcd::EtcdSettings::new(
            &cfg, &facts, &layout,
        )))
        .unwrap();

    let k = |c: &str| at(&layout.secrets.kubernetes, c).display().to_string();
    let port = free_port();
    let server = format!("https://127.0.0.1:{port}");
    let args = vec![
        format!("--etcd-servers=https://127.0.0.1:{}", layout.client_port),
        format!("--etcd-cafile={}", k(k8s::ETCD_CA_CERT)),
        format!("--etcd-certfile={}", k(k8s::APISERVER_ETCD_CLIENT_CERT)),
        format!("--etcd-keyfile={}", k(k8s::APISERVER_ETCD_CLIENT_KEY)),
        format!("--secure-port={port}"),
        "--bind-address=127.0.0.1".into(),
        "--advertise-address=127.0.0.1".into(),
        format!("--cert-dir={}", tmp.path().join("certs").display()),
        format!("--tls-cert-file={}", k(k8s::APISERVER_CERT)),
        format!("--tls-private-key-file={}", k(k8s::APISERVER_KEY)),
        format!("--client-ca-file={}", k(k8s::CA_CERT)),
        format!(
            "--kubelet-client-certificate={}",
            k(k8s::APISERVER_KUBELET_CLIENT_CERT)
        ),
        format!(
            "--kubelet-client-key={}",
            k(k8s::APISERVER_KUBELET_CLIENT_KEY)
        ),
        format!(
            "--proxy-client-cert-file={}",
            k(k8s::FRONT_PROXY_CLIENT_CERT)
        ),
        format!("--proxy-client-key-file={}", k(k8s::FRONT_PROXY_CLIENT_KEY)),
        format!(
            "--requestheader-client-ca-file={}",
            k(k8s::FRONT_PROXY_CA_CERT)
        ),
        "--requestheader-allowed-names=front-proxy-client".into(),
        "--requestheader-username-headers=X-Remote-User".into(),
        "--requestheader-group-headers=X-Remote-Group".into(),
        "--requestheader-extra-headers-prefix=X-Remote-Extra-".into(),
        format!("--service-account-key-file={}", k(k8s::SA_PUB)),
        format!("--service-account-signing-key-file={}", k(k8s::SA_KEY)),
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
        format!("--encryption-provider-config={}", k(k8s::ENCRYPTION_CONFIG)),
        "--authorization-mode=Node,RBAC".into(),
        "--service-cluster-ip-range=10.96.0.0/12".into(),
    ];
    let runner = ProcessRunner::new(bin.join("kube-apiserver")).args(args);
    let admin = at(&layout.secrets.kubernetes, k8s::ADMIN_KUBECONFIG);
    let (probe_bin, probe_kubeconfig, probe_server) = (bin.clone(), admin, server.clone());
    let apiserver = Service::new("kube-apiserver", runner)
        .depends_on("etcd")
        .health(HealthCheck::new(
            Duration::from_secs(1),
            Duration::from_secs(15),
            move || {
                // kubectl verifies the serving certificate for 127.0.0.1
                // against the kubeconfig's CA.
                let (b, k, s) = (
                    probe_bin.clone(),
                    probe_kubeconfig.clone(),
                    probe_server.clone(),
                );
                async move {
                    match kubectl(&b, &k, &s, &["get", "--raw", "/readyz"]).await {
                        (true, out) if out.trim() == "ok" => Ok(()),
                        (_, out) => Err(out),
                    }
                }
            },
        ));
    let api = sup.start(apiserver).unwrap();
    // Bounded, and etcd and the API server are stopped whatever happens: a
    // failed check must fail the test, not leave it (and CI) waiting.
    let checks = std::panic::AssertUnwindSafe(async {
        tokio::time::timeout(
            Duration::from_secs(300),
            checks(&bin, &layout, &server, &etcd, &api),
        )
        .await
        .expect("the checks against kube-apiserver did not finish within 300 s")
    });
    let outcome = futures::FutureExt::catch_unwind(checks).await;
    sup.stop_all().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

async fn checks(
    bin: &Path,
    layout: &EtcdPaths,
    server: &str,
    etcd: &runtime::supervisor::ServiceHandle,
    api: &runtime::supervisor::ServiceHandle,
) {
    let admin = at(&layout.secrets.kubernetes, k8s::ADMIN_KUBECONFIG);
    let mut rx = api.status.subscribe();
    let ready = tokio::time::timeout(
        Duration::from_secs(120),
        rx.wait_for(|s| s.health == Health::Ok),
    )
    .await;
    if ready.is_err() {
        let (lines, _) = api.logs.tail(Some(30));
        let (elines, _) = etcd.logs.tail(Some(10));
        panic!(
            "kube-apiserver not ready: {:?}\n{}\netcd:\n{}",
            api.snapshot().health_message,
            lines.join("\n"),
            elines.join("\n")
        );
    }

    // ClusterHealth's API checks, with the admin kubeconfig: ready, and
    // no node registered (no kubelet here).
    let client = crate::cluster_health::kube_client_for(&admin, server)
        .await
        .unwrap();
    assert_eq!(
        crate::cluster_health::apiserver(&client).await,
        Ok("/readyz ok".to_string())
    );
    assert_eq!(
        crate::cluster_health::nodes(&client).await,
        Err("no nodes registered yet".to_string())
    );

    // Every kubeconfig authenticates (discovery needs an authenticated user).
    for (path, who) in [
        (k8s::ADMIN_KUBECONFIG, "admin"),
        (k8s::CONTROLLER_MANAGER_KUBECONFIG, "controller-manager"),
        (k8s::SCHEDULER_KUBECONFIG, "scheduler"),
        (k8s::KUBELET_KUBECONFIG, "kubelet"),
    ] {
        let (ok, out) = kubectl(
            bin,
            &at(&layout.secrets.kubernetes, path),
            server,
            &["get", "--raw", "/api"],
        )
        .await;
        assert!(ok && out.contains("APIVersions"), "{who}: {out}");
    }
    // admin is in system:masters; the scheduler may not read secrets.
    let (ok, out) = kubectl(
        bin,
        &admin,
        server,
        &[
            "create",
            "secret",
            "generic",
            "cairn-test",
            "--from-literal=k=plain-value",
        ],
    )
    .await;
    assert!(ok, "{out}");
    let (ok, _) = kubectl(
        bin,
        &at(&layout.secrets.kubernetes, k8s::SCHEDULER_KUBECONFIG),
        server,
        &["get", "secrets"],
    )
    .await;
    assert!(!ok, "the scheduler must not read secrets");

    // The Secret is stored encrypted with the config's secretbox key.
    let endpoint = format!("https://127.0.0.1:{}", layout.client_port);
    let files = etcd::client::ClientFiles::in_dir(&layout.secrets.etcd);
    let mut c = etcd::client::connect(&endpoint, &files, Some(Duration::from_secs(5)))
        .await
        .unwrap();
    let got = c
        .get("/registry/secrets/default/cairn-test", None)
        .await
        .unwrap();
    let value = got
        .kvs()
        .first()
        .expect("the secret is in etcd")
        .value()
        .to_vec();
    assert!(
        value.starts_with(b"k8s:enc:secretbox:v1:key1:"),
        "{:?}",
        String::from_utf8_lossy(&value[..40.min(value.len())])
    );
    assert!(!value.windows(11).any(|w| w == b"plain-value"));
}
