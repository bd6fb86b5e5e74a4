//! `cairnctl logs --cluster` against a real kube-apiserver v1.20.2 (from the
//! payload build's cache) on a real etcd (Debian's), reaching a real log
//! store through the API server's service proxy: a search prints the
//! newest records oldest first in columns, `-o json` prints the records,
//! a query the store cannot parse fails with its message, and `-f` prints a
//! record committed after the search.
//!
//! The store runs in this test process (`logstore::server::run`, what the
//! `cairn-logstore` binary runs) on this host's first global IPv4 address:
//! the API server does not proxy to loopback Endpoints. Skipped, with a
//! message, without kube-apiserver (`make payload`), etcd
//! (images/install-deps.sh) or such an address.

use std::io::{BufRead as _, Read as _, Write as _};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};
use serde_json::{json, Value};

const TOKEN: &str = "cairn-ctl-test-admin-token-0123456789";

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
        .find(|p| p.join("kube-apiserver").is_file())
}

fn host_ip() -> Option<IpAddr> {
    let out = Command::new("ip")
        .args(["-4", "-o", "addr", "show", "scope", "global"])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout).lines().find_map(|l| {
        let mut w = l.split_whitespace();
        w.position(|x| x == "inet")?;
        w.next()?.split('/').next()?.parse().ok()
    })
}

fn free_port(ip: IpAddr) -> u16 {
    TcpListener::bind((ip, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Children(Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn spawn(cmd: &mut Command, log: &Path) -> Child {
    let out = std::fs::File::create(log).unwrap();
    cmd.stdout(out.try_clone().unwrap())
        .stderr(out)
        .stdin(Stdio::null())
        .spawn()
        .unwrap()
}

/// A plain HTTP request to the store; (status, body).
fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (
        status,
        text.split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default(),
    )
}

fn ingest(store: SocketAddr, records: &[Value]) {
    let body: String = records.iter().map(|r| format!("{r}\n")).collect();
    let (status, text) = http(store, "POST", "/api/v1/ingest", &body);
    assert_eq!(status, 200, "{text}");
}

fn cairnctl(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_cairnctl"))
        .args(args)
        .env("CAIRNCONFIG", "/nonexistent")
        .output()
        .unwrap()
}

#[test]
fn logs_cluster_through_a_real_api_server() {
    let Some(bin) = kube_bin_dir() else {
        eprintln!("SKIP: no kube-apiserver (run `make payload`, or set CAIRN_KUBE_BIN_DIR)");
        return;
    };
    if !Path::new("/usr/bin/etcd").exists() {
        eprintln!("SKIP: /usr/bin/etcd is not installed (images/install-deps.sh installs it)");
        return;
    }
    let Some(ip) = host_ip() else {
        eprintln!("SKIP: this host has no global IPv4 address for the store's Endpoints");
        return;
    };
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let lo: IpAddr = "127.0.0.1".parse().unwrap();

    // The store, on the host's address.
    let store = SocketAddr::new(ip, free_port(ip));
    let args = <logstore::server::Args as clap::Parser>::parse_from([
        "cairn-logstore".to_string(),
        format!("--data-dir={}", dir.join("store").display()),
        format!("--http-listen={store}"),
        "--tcp-listen=none".into(),
        "--commit-interval=50ms".into(),
        "--min-free-disk=0B".into(),
    ]);
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(logstore::server::run(args)).unwrap();
    });

    // PKI, etcd, kube-apiserver.
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::default();
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "cairn-ctl-test-ca");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_pem = ca_params.self_signed(&ca_key).unwrap().pem();
    let ca = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params.subject_alt_names.push(SanType::IpAddress(lo));
    let api_cert = params.signed_by(&key, &ca).unwrap().pem();
    let write = |name: &str, text: &str| {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let sa_key = KeyPair::generate().unwrap();
    write("ca.crt", &ca_pem);
    let mut children = Children(Vec::new());
    let (etcd_port, etcd_peer) = (free_port(lo), free_port(lo));
    children.0.push(spawn(
        Command::new("/usr/bin/etcd")
            .arg(format!("--data-dir={}", dir.join("etcd").display()))
            .arg(format!("--listen-client-urls=http://127.0.0.1:{etcd_port}"))
            .arg(format!(
                "--advertise-client-urls=http://127.0.0.1:{etcd_port}"
            ))
            .arg(format!("--listen-peer-urls=http://127.0.0.1:{etcd_peer}"))
            .arg(format!(
                "--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer}"
            ))
            .arg(format!(
                "--initial-cluster=default=http://127.0.0.1:{etcd_peer}"
            )),
        &dir.join("etcd.log"),
    ));
    let api_port = free_port(lo);
    children.0.push(spawn(
        Command::new(bin.join("kube-apiserver"))
            .arg(format!("--etcd-servers=http://127.0.0.1:{etcd_port}"))
            .arg(format!("--secure-port={api_port}"))
            .arg("--bind-address=127.0.0.1")
            .arg("--advertise-address=127.0.0.1")
            .arg(format!("--cert-dir={}", dir.join("certs").display()))
            .arg(format!(
                "--tls-cert-file={}",
                write("api.crt", &api_cert).display()
            ))
            .arg(format!(
                "--tls-private-key-file={}",
                write("api.key", &key.serialize_pem()).display()
            ))
            .arg(format!("--client-ca-file={}", dir.join("ca.crt").display()))
            .arg(format!(
                "--token-auth-file={}",
                write(
                    "tokens.csv",
                    &format!("{TOKEN},admin,admin-uid,\"system:masters\"\n")
                )
                .display()
            ))
            .arg("--authorization-mode=Node,RBAC")
            .arg(format!(
                "--service-account-key-file={}",
                write("sa.pub", &sa_key.public_key_pem()).display()
            ))
            .arg(format!(
                "--service-account-signing-key-file={}",
                write("sa.key", &sa_key.serialize_pem()).display()
            ))
            .arg("--service-account-issuer=https://kubernetes.default.svc.cluster.local")
            .arg("--service-cluster-ip-range=10.96.0.0/16")
            .arg("--enable-priority-and-fairness=false"),
        &dir.join("kube-apiserver.log"),
    ));
    let ca_file = write("ca.crt", &ca_pem);
    let kubeconfig = write(
        "kubeconfig",
        &format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: t\n  cluster:\n    server: https://127.0.0.1:{api_port}\n    certificate-authority: {}\n\
             users:\n- name: admin\n  user:\n    token: {TOKEN}\ncontexts:\n- name: t\n  context:\n    cluster: t\n    user: admin\ncurrent-context: t\n",
            ca_file.display()
        ),
    );
    let kc = kubeconfig.to_str().unwrap();
    // The test's own API calls (the Service and Endpoints) with kube.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = rt.block_on(async {
        let kc = kube::config::Kubeconfig::read_from(&kubeconfig).unwrap();
        let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .unwrap();
        kube::Client::try_from(config).unwrap()
    });
    let api = |method: &str, path: &str, body: Value| -> (u16, String) {
        let req = http::Request::builder()
            .method(method)
            .uri(path)
            .header("content-type", "application/json")
            .body(kube::client::Body::from(if body.is_null() {
                Vec::new()
            } else {
                body.to_string().into_bytes()
            }))
            .unwrap();
        rt.block_on(async {
            match client.send(req).await {
                Ok(res) => {
                    let code = res.status().as_u16();
                    let bytes = res.into_body().collect_bytes().await.unwrap_or_default();
                    (code, String::from_utf8_lossy(&bytes).into_owned())
                }
                Err(e) => (0, e.to_string()),
            }
        })
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    // The API server is ready, and has made kube-system.
    while api("GET", "/api/v1/namespaces/kube-system", Value::Null).0 != 200 {
        assert!(
            Instant::now() < deadline,
            "kube-apiserver not ready: {}",
            std::fs::read_to_string(dir.join("kube-apiserver.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    eprintln!("kube-apiserver ready after {:?}", started.elapsed());
    // Before the Service exists: a clear error.
    let out = cairnctl(&["logs", "--cluster", "x", "--kubeconfig", kc]);
    eprintln!("first cairnctl done after {:?}", started.elapsed());
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is the logging add-on on"), "{err}");

    let (code, body) = api(
        "POST",
        "/api/v1/namespaces/kube-system/services",
        json!({"metadata": {"name": "cairn-logstore"},
               "spec": {"ports": [{"name": "http", "port": 8080, "targetPort": store.port()}]}}),
    );
    assert_eq!(code, 201, "{body}");
    // The API server proxies only to an address of a Pod it knows: a Pod
    // (never scheduled: no kubelet here) whose status carries the address.
    // Its namespace's default ServiceAccount first (no controller-manager).
    let (code, body) = api(
        "POST",
        "/api/v1/namespaces/kube-system/serviceaccounts",
        json!({"metadata": {"name": "default"}}),
    );
    assert!(code == 201 || code == 409, "{body}");
    let (code, body) = api(
        "POST",
        "/api/v1/namespaces/kube-system/pods",
        json!({"metadata": {"name": "cairn-logstore-0"},
               "spec": {"automountServiceAccountToken": false,
                        "containers": [{"name": "logstore", "image": "cairn.local/cairn-logstore:test"}]}}),
    );
    assert_eq!(code, 201, "{body}");
    let status = json!({"status": {"podIP": ip.to_string(), "podIPs": [{"ip": ip.to_string()}]}});
    let req = http::Request::patch("/api/v1/namespaces/kube-system/pods/cairn-logstore-0/status")
        .header("content-type", "application/merge-patch+json")
        .body(kube::client::Body::from(status.to_string().into_bytes()))
        .unwrap();
    let code = rt.block_on(client.send(req)).unwrap().status();
    assert_eq!(code, 200);
    let (code, body) = api(
        "POST",
        "/api/v1/namespaces/kube-system/endpoints",
        json!({"metadata": {"name": "cairn-logstore"},
               "subsets": [{"addresses": [{"ip": ip.to_string(),
                                           "targetRef": {"kind": "Pod", "name": "cairn-logstore-0", "namespace": "kube-system"}}],
                            "ports": [{"name": "http", "port": store.port()}]}]}),
    );
    assert_eq!(code, 201, "{body}");
    while http(store, "GET", "/readyz", "").0 != 200 {
        assert!(Instant::now() < deadline, "the store did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The API server proxies once its cache has the Endpoints.
    let proxied = "/api/v1/namespaces/kube-system/services/cairn-logstore:http/proxy/healthz";
    loop {
        let (code, body) = api("GET", proxied, Value::Null);
        if code == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no proxy to the store: {code} {body}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!(
        "the store answers through the API server after {:?}",
        started.elapsed()
    );
    let t = |s: u32| format!("2026-12-05T07:15:{s:02}.5Z");
    ingest(
        store,
        &[
            json!({"time": t(1), "node": "cp1", "namespace": "default", "pod": "web", "container": "app", "stream": "stdout", "message": "connection refused by db"}),
            json!({"time": t(2), "node": "worker-1", "namespace": "shop", "pod": "cart", "container": "app", "stream": "stderr", "message": "connection refused again"}),
            json!({"time": t(3), "node": "cp1", "service": "kubelet", "message": "unrelated"}),
        ],
    );

    let out = cairnctl(&["logs", "--cluster", "refused", "--kubeconfig", kc]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        text,
        "2026-12-05 07:15:01.500  cp1       default/web/app  connection refused by db\n\
         2026-12-05 07:15:02.500  worker-1  shop/cart/app    [stderr] connection refused again\n"
    );
    let out = cairnctl(&[
        "logs",
        "--cluster",
        "",
        "--service",
        "kubelet",
        "-o",
        "json",
        "--kubeconfig",
        kc,
    ]);
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["message"], "unrelated");
    let out = cairnctl(&["logs", "--cluster", "(refused", "--kubeconfig", kc]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("the log store cannot run this search: q: Syntax Error"),
        "{err}"
    );

    // -f: the page, then what is committed after it, through the proxy.
    let mut follow = Command::new(env!("CARGO_BIN_EXE_cairnctl"))
        .args([
            "logs",
            "--cluster",
            "refused",
            "--namespace",
            "shop",
            "-f",
            "--kubeconfig",
            kc,
        ])
        .env("CAIRNCONFIG", "/nonexistent")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(follow.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    assert!(
        first.ends_with("[stderr] connection refused again"),
        "{first}"
    );
    ingest(
        store,
        &[
            json!({"time": t(9), "node": "worker-1", "namespace": "shop", "pod": "cart", "container": "app", "stream": "stdout", "message": "refused once more"}),
            json!({"time": t(9), "node": "worker-1", "namespace": "default", "pod": "web", "container": "app", "stream": "stdout", "message": "refused elsewhere"}),
        ],
    );
    let next = lines.next().unwrap().unwrap();
    assert!(
        next.ends_with("shop/cart/app  refused once more"),
        "{next:?}"
    );
    let _ = follow.kill();
    let _ = follow.wait();
    eprintln!("done after {:?}", started.elapsed());
}
