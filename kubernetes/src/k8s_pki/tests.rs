use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt as _;
use std::process::Command;

use x509_parser::prelude::{FromDer, X509Certificate};

use super::*;
use config::generate::sample_controlplane as generated;

fn facts() -> NodeFacts {
    NodeFacts {
        hostname: "cp-1".into(),
        addresses: vec!["10.5.0.2".parse().unwrap(), "fd00::2".parse().unwrap()],
    }
}

fn identity(pem: &str) -> reuse::Identity {
    let crt = pem.parse::<config::types::PemCertificate>().unwrap();
    let (_, c) = X509Certificate::from_der(crt.der()).unwrap();
    reuse::Identity::of_cert(&c)
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// `openssl verify -CAfile ca leaf`, when openssl is installed.
fn openssl_verify(ca: &Path, leaf: &Path, purpose: &str) {
    let out = match runtime::exec::output_blocking(
        Command::new("openssl")
            .args(["verify", "-purpose", purpose, "-CAfile"])
            .arg(ca)
            .arg(leaf),
    ) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("SKIP openssl verify: openssl not runnable: {e}");
            return;
        }
    };
    assert!(
        out.status.success(),
        "openssl verify {}: {}{}",
        leaf.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn read(dir: &Path, constant: &str) -> String {
    std::fs::read_to_string(at(dir, constant)).unwrap()
}

#[test]
fn control_plane_secrets_chain_to_their_cas_with_the_right_names() {
    let (cfg, _) = generated();
    let tmp = tempfile::tempdir().unwrap();
    let dirs = SecretDirs::under(tmp.path());
    let done = issue_into(&cfg, &facts(), &dirs).unwrap();
    assert!(done.changed());
    assert!(done.unchanged.is_empty());

    for d in [&dirs.kubernetes, &dirs.etcd] {
        assert_eq!(
            std::fs::metadata(d).unwrap().permissions().mode() & 0o777,
            0o700
        );
        for f in std::fs::read_dir(d).unwrap() {
            let f = f.unwrap();
            assert_eq!(
                f.metadata().unwrap().permissions().mode() & 0o777,
                0o600,
                "{:?}",
                f.path()
            );
        }
    }
    let k = &dirs.kubernetes;
    let e = &dirs.etcd;
    for name in [
        k8s::CA_CERT,
        k8s::CA_KEY,
        k8s::APISERVER_CERT,
        k8s::APISERVER_KEY,
        k8s::APISERVER_KUBELET_CLIENT_CERT,
        k8s::APISERVER_KUBELET_CLIENT_KEY,
        k8s::FRONT_PROXY_CA_CERT,
        k8s::FRONT_PROXY_CLIENT_CERT,
        k8s::FRONT_PROXY_CLIENT_KEY,
        k8s::SA_KEY,
        k8s::SA_PUB,
        k8s::APISERVER_ETCD_CLIENT_CERT,
        k8s::APISERVER_ETCD_CLIENT_KEY,
        k8s::ETCD_CA_CERT,
        k8s::ENCRYPTION_CONFIG,
        k8s::ADMIN_KUBECONFIG,
        k8s::CONTROLLER_MANAGER_KUBECONFIG,
        k8s::SCHEDULER_KUBECONFIG,
        k8s::KUBELET_KUBECONFIG,
    ] {
        assert!(at(k, name).exists(), "{name} missing");
    }
    assert!(!at(k, k8s::BOOTSTRAP_KUBELET_KUBECONFIG).exists());

    // The apiserver's serving certificate.
    let api = identity(&read(k, k8s::APISERVER_CERT));
    assert!(api.server && !api.client);
    assert_eq!(
        api.dns_names,
        set(&[
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
            "localhost",
            "cp-1"
        ])
    );
    let ips: BTreeSet<String> = api.ips.iter().map(|i| i.to_string()).collect();
    assert_eq!(
        ips,
        set(&["10.5.0.2", "fd00::2", "127.0.0.1", "::1", "10.96.0.1"])
    );

    // Client certificates: names and groups.
    let kc = identity(&read(k, k8s::APISERVER_KUBELET_CLIENT_CERT));
    assert!(kc.client && !kc.server);
    assert_eq!(kc.organizations, set(&["system:masters"]));
    let ec = identity(&read(k, k8s::APISERVER_ETCD_CLIENT_CERT));
    assert_eq!(ec.common_name, "kube-apiserver-etcd-client");

    // Kubeconfigs.
    let admin = read(k, k8s::ADMIN_KUBECONFIG);
    assert!(admin.contains("server: https://10.5.0.2:6443"), "{admin}");
    let (crt, _) = kubeconfig::client_cert(admin.as_bytes()).unwrap();
    let a = identity(&crt);
    assert_eq!(
        (a.common_name.as_str(), a.organizations.clone()),
        ("admin", set(&["system:masters"]))
    );
    let kubelet = read(k, k8s::KUBELET_KUBECONFIG);
    assert!(kubelet.contains("server: https://127.0.0.1:6443"));
    let (crt, _) = kubeconfig::client_cert(kubelet.as_bytes()).unwrap();
    let kl = identity(&crt);
    assert_eq!(
        (kl.common_name.as_str(), kl.organizations.clone()),
        ("system:node:cp-1", set(&["system:nodes"]))
    );
    for (path, cn) in [
        (
            k8s::CONTROLLER_MANAGER_KUBECONFIG,
            "system:kube-controller-manager",
        ),
        (k8s::SCHEDULER_KUBECONFIG, "system:kube-scheduler"),
    ] {
        let (crt, _) = kubeconfig::client_cert(read(k, path).as_bytes()).unwrap();
        assert_eq!(identity(&crt).common_name, cn);
    }

    // etcd.
    let server = identity(&read(e, k8s::etcd::SERVER_CERT));
    assert!(server.server && server.client);
    assert_eq!(server.dns_names, set(&["cp-1", "localhost"]));
    let ips: BTreeSet<String> = server.ips.iter().map(|i| i.to_string()).collect();
    assert_eq!(ips, set(&["10.5.0.2", "fd00::2", "127.0.0.1", "::1"]));
    assert_eq!(read(e, k8s::etcd::CA_CERT), read(k, k8s::ETCD_CA_CERT));

    // The service-account public key belongs to the private key.
    let sa_pub = read(k, k8s::SA_PUB);
    assert!(sa_pub.starts_with("-----BEGIN PUBLIC KEY-----"));

    // Every leaf verifies against its CA, for its purpose.
    let kca = at(k, k8s::CA_CERT);
    openssl_verify(&kca, &at(k, k8s::APISERVER_CERT), "sslserver");
    openssl_verify(
        &kca,
        &at(k, k8s::APISERVER_KUBELET_CLIENT_CERT),
        "sslclient",
    );
    openssl_verify(
        &at(k, k8s::FRONT_PROXY_CA_CERT),
        &at(k, k8s::FRONT_PROXY_CLIENT_CERT),
        "sslclient",
    );
    let eca = at(e, k8s::etcd::CA_CERT);
    openssl_verify(&eca, &at(k, k8s::APISERVER_ETCD_CLIENT_CERT), "sslclient");
    openssl_verify(&eca, &at(e, k8s::etcd::SERVER_CERT), "sslserver");
    openssl_verify(&eca, &at(e, k8s::etcd::PEER_CERT), "sslclient");
    openssl_verify(&eca, &at(e, k8s::etcd::CLIENT_CERT), "sslclient");
    // A certificate from the wrong CA does not verify (the check can fail).
    let wrong = runtime::exec::output_blocking(
        Command::new("openssl")
            .args(["verify", "-CAfile"])
            .arg(&eca)
            .arg(at(k, k8s::APISERVER_CERT)),
    );
    if let Ok(o) = wrong {
        assert!(!o.status.success());
    }
}

#[test]
fn issuing_again_rewrites_only_what_changed() {
    let (cfg, _) = generated();
    let tmp = tempfile::tempdir().unwrap();
    let dirs = SecretDirs::under(tmp.path());
    let first = issue_into(&cfg, &facts(), &dirs).unwrap();
    let before = read(&dirs.kubernetes, k8s::ADMIN_KUBECONFIG);

    let again = issue_into(&cfg, &facts(), &dirs).unwrap();
    assert!(!again.changed(), "rewrote {:?}", again.written);
    assert_eq!(again.unchanged.len(), first.written.len());

    // A new address: the serving certificates change, clients do not.
    let mut moved = facts();
    moved.addresses.push("192.168.1.9".parse().unwrap());
    let third = issue_into(&cfg, &moved, &dirs).unwrap();
    let names: BTreeSet<String> = third
        .written
        .iter()
        .map(|p| p.strip_prefix(tmp.path()).unwrap().display().to_string())
        .collect();
    assert_eq!(
        names,
        set(&[
            "kubernetes/apiserver.crt",
            "kubernetes/apiserver.key",
            "etcd/server.crt",
            "etcd/server.key",
            "etcd/peer.crt",
            "etcd/peer.key",
        ])
    );
    assert_eq!(read(&dirs.kubernetes, k8s::ADMIN_KUBECONFIG), before);
    assert!(identity(&read(&dirs.kubernetes, k8s::APISERVER_CERT))
        .ips
        .contains(&"192.168.1.9".parse().unwrap()));

    // A new Kubernetes CA: everything it signed is re-issued.
    let mut rotated = cfg.clone();
    rotated.cluster.ca = config::pki::create_kubernetes_ca().unwrap().into();
    let fourth = issue_into(&rotated, &moved, &dirs).unwrap();
    assert!(fourth
        .written
        .contains(&at(&dirs.kubernetes, k8s::ADMIN_KUBECONFIG)));
    assert!(fourth
        .written
        .contains(&at(&dirs.kubernetes, k8s::APISERVER_CERT)));
    assert!(!fourth
        .written
        .contains(&at(&dirs.etcd, k8s::etcd::SERVER_CERT)));
    openssl_verify(
        &at(&dirs.kubernetes, k8s::CA_CERT),
        &at(&dirs.kubernetes, k8s::APISERVER_CERT),
        "sslserver",
    );
}

#[test]
fn workers_get_the_ca_and_a_bootstrap_kubeconfig_only() {
    let (cfg, _) = generated();
    let mut worker = cfg.clone();
    worker.machine.machine_type = MachineType::Worker;
    worker.cluster.ca = worker.cluster.ca.without_key();
    let tmp = tempfile::tempdir().unwrap();
    let dirs = SecretDirs::under(tmp.path());
    let done = issue_into(&worker, &facts(), &dirs).unwrap();
    assert_eq!(
        done.written,
        vec![
            at(&dirs.kubernetes, k8s::CA_CERT),
            at(&dirs.kubernetes, k8s::BOOTSTRAP_KUBELET_KUBECONFIG)
        ]
    );
    let boot = read(&dirs.kubernetes, k8s::BOOTSTRAP_KUBELET_KUBECONFIG);
    assert!(boot.contains(&format!("token: {}", cfg.cluster.token.as_str())));
    assert!(!dirs.etcd.exists());
}

#[test]
fn a_control_plane_without_a_ca_key_names_the_field() {
    let (mut cfg, _) = generated();
    cfg.cluster.aggregator_ca = None;
    let tmp = tempfile::tempdir().unwrap();
    let err = issue_into(&cfg, &facts(), &SecretDirs::under(tmp.path())).unwrap_err();
    assert!(err.to_string().contains("cluster.aggregatorCa"), "{err}");
}

#[test]
fn encryption_config_carries_the_key_and_an_identity_fallback() {
    let text = encryption_config("a2V5");
    let v: serde_json::Value = serde_yaml::from_str(&text).unwrap();
    assert_eq!(v["kind"], "EncryptionConfiguration");
    let providers = &v["resources"][0]["providers"];
    assert_eq!(providers[0]["secretbox"]["keys"][0]["secret"], "a2V5");
    assert!(providers[1]["identity"].is_object());
    assert_eq!(
        first_service_ip("fd00:10:96::/112".parse().unwrap()).to_string(),
        "fd00:10:96::1"
    );
}

fn test_node() -> runtime::Runtime {
    let node = runtime::Runtime::new(runtime::supervisor::Supervisor::new());
    node.set_hostname("cp-1");
    node
}

fn address(ip: &str, link: &str, index: u32) -> runtime::resources::specs::AddressSpec {
    runtime::resources::specs::AddressSpec {
        address: format!("{ip}/24"),
        link: link.into(),
        link_index: index,
        family: if ip.contains(':') { "inet6" } else { "inet4" }.into(),
        scope: "global".into(),
        dynamic: false,
    }
}

#[test]
fn facts_come_from_the_address_resources_without_pod_links() {
    let node = test_node();
    let w = node
        .store
        .writer("test", &[runtime::resources::kind::ADDRESSES])
        .unwrap();
    w.put("eth0/fd00::2", address("fd00::2", "eth0", 2))
        .unwrap();
    w.put("eth0/10.5.0.2", address("10.5.0.2", "eth0", 2))
        .unwrap();
    w.put("cni0/10.244.0.1", address("10.244.0.1", "cni0", 5))
        .unwrap();
    let mut lo = address("127.0.0.1", "lo", 1);
    lo.scope = "host".into();
    w.put("lo/127.0.0.1", lo).unwrap();
    let f = NodeFacts::of(&node);
    assert_eq!(f.hostname, "cp-1");
    assert_eq!(
        f.addresses,
        vec![
            "10.5.0.2".parse::<IpAddr>().unwrap(),
            "fd00::2".parse().unwrap()
        ]
    );
}

/// The running config arrives, then a new address: the secrets follow,
/// and so does the `secrets` resource the static Pods watch.
#[tokio::test]
async fn keep_issued_follows_config_and_addresses() {
    let node = test_node();
    let tmp = tempfile::tempdir().unwrap();
    let dirs = SecretDirs::under(tmp.path());
    let writer = node
        .store
        .writer("pki", &[runtime::resources::kind::SECRETS])
        .unwrap();
    tokio::spawn(keep_issued_in(node.clone(), dirs.clone(), Some(writer)));
    tokio::task::yield_now().await;
    let (cfg, _) = generated();
    node.set_running_config(cfg, "test");
    let api = at(&dirs.kubernetes, k8s::APISERVER_CERT);
    let until = |what: &'static str, f: Box<dyn Fn() -> bool>| async move {
        for _ in 0..100 {
            if f() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("{what} did not happen within 10s");
    };
    let p = api.clone();
    until("issue after the config", Box::new(move || p.exists())).await;
    let published = |node: &runtime::Runtime| {
        node.store
            .spec::<SecretsSpec>(SecretsSpec::ID)
            .expect("the keeper publishes the secrets")
    };
    let (n, d) = (node.clone(), dirs.clone());
    until(
        "the secrets resource after the first issue",
        Box::new(move || published(&n) == SecretsSpec::of(&d)),
    )
    .await;
    let first = published(&node);
    assert!(
        first.kubernetes_files > 5 && first.etcd_files > 3,
        "{first:?}"
    );
    let w = node
        .store
        .writer("test", &[runtime::resources::kind::ADDRESSES])
        .unwrap();
    w.put("eth0/10.5.0.7", address("10.5.0.7", "eth0", 2))
        .unwrap();
    let p = api.clone();
    until(
        "re-issue for the new address",
        Box::new(move || {
            std::fs::read_to_string(&p)
                .is_ok_and(|t| identity(&t).ips.contains(&"10.5.0.7".parse().unwrap()))
        }),
    )
    .await;
    let (n, d) = (node.clone(), dirs.clone());
    until(
        "the secrets resource after the re-issue",
        Box::new(move || published(&n) == SecretsSpec::of(&d)),
    )
    .await;
    assert_ne!(published(&node).kubernetes_digest, first.kubernetes_digest);
}
