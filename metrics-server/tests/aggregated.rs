//! cairn-metrics-server behind a real kube-apiserver v1.20.2 (from the
//! payload build's cache) on a real etcd (Debian's), on this host, through
//! the aggregation layer:
//!
//! - the add-on's own RBAC objects and APIService (`addons::metrics_server`)
//!   are applied, the serving certificate is minted by `addons::tls` from
//!   the cluster CA of config's golden control-plane config (the same code
//!   machined uses), and the server runs as its ServiceAccount (a
//!   TokenRequest token), so least privilege is what is tested;
//! - three fake kubelets serve the v1.20 `/metrics/resource` format over
//!   HTTPS and demand the ServiceAccount's token: two with certificates of
//!   a test "kubelet CA" the server is told to trust, one with a
//!   certificate of another CA, whose figures must never show up;
//! - the payload's kubectl 1.20 prints the figures with `kubectl top nodes`
//!   and `kubectl top pods -A`; a user without rights gets the API server's
//!   403 for `top`; a request straight to the server without the front
//!   proxy's certificate gets 401;
//! - the payload's kube-controller-manager (only the HPA controller)
//!   reads the Pod's CPU and sets an autoscaling/v1 HPA's current
//!   utilization (50m used of 100m requested: 50%).
//!
//! The API server reaches the metrics server through the Service's
//! Endpoints (`--enable-aggregator-routing`, no kube-proxy here), which
//! must name a non-loopback address: this host's first global IPv4
//! address (`ip -4 addr`). Skipped, with a message, without kube-apiserver,
//! kubectl, etcd or such an address. Prints the server's RSS.

use std::net::{IpAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::Full;
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::{Endpoints, Node, Pod, Service, ServiceAccount};
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};
use serde_json::{json, Value};

const ADMIN_TOKEN: &str = "cairn-metrics-test-admin-token-0123456789";
const NOBODY_TOKEN: &str = "cairn-metrics-test-nobody-token-0123456789";

fn cache_dir() -> Option<PathBuf> {
    std::env::var_os("CAIRN_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache/cairn")))
}

/// kube-apiserver, kube-controller-manager and kubectl from `make
/// payload`'s cache (a finished build, not a `.tmp` one), or
/// `$CAIRN_KUBE_BIN_DIR`.
fn kube_bin_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("CAIRN_KUBE_BIN_DIR") {
        return Some(d.into());
    }
    std::fs::read_dir(cache_dir()?.join("payload"))
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| !p.to_string_lossy().ends_with(".tmp"))
        .find(|p| {
            ["kube-apiserver", "kube-controller-manager", "kubectl"]
                .iter()
                .all(|b| p.join(b).is_file())
        })
}

/// This host's first global IPv4 address.
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

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Child processes killed when the test ends, however it ends.
struct Children(Vec<(String, Child)>);

impl Drop for Children {
    fn drop(&mut self) {
        for (_, c) in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Children {
    fn spawn(&mut self, name: &str, cmd: &mut Command, dir: &Path) -> u32 {
        let out = std::fs::File::create(dir.join(format!("{name}.log"))).unwrap();
        let child = cmd
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        let pid = child.id();
        self.0.push((name.into(), child));
        pid
    }

    /// Fails with `name`'s log if it has exited.
    fn alive(&mut self, dir: &Path) {
        for (name, c) in &mut self.0 {
            if let Ok(Some(status)) = c.try_wait() {
                panic!("{name} exited ({status}):\n{}", tail(dir, name));
            }
        }
    }
}

fn tail(dir: &Path, name: &str) -> String {
    let log = std::fs::read_to_string(dir.join(format!("{name}.log"))).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// A test CA that issues serving and client certificates.
struct Ca {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    fn new(cn: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).unwrap();
        Ca {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// (cert, key) for `cn` with SANs `names` (IPs or DNS names).
    fn issue(&self, cn: &str, names: &[&str], client: bool) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, cn);
        for n in names {
            params.subject_alt_names.push(match n.parse::<IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName((*n).try_into().unwrap()),
            });
        }
        if client {
            params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        }
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let start = Instant::now();
    loop {
        match f().await {
            Ok(()) => return,
            Err(e) if start.elapsed() > timeout => panic!("{what} within {timeout:?}: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(300)).await,
        }
    }
}

fn kube_client(url: &str, ca_pem: &str, token: &str) -> kube::Client {
    let mut config = kube::Config::new(url.parse().unwrap());
    let ca = rustls::pki_types::pem::PemObject::from_pem_slice(ca_pem.as_bytes())
        .map(|c: rustls::pki_types::CertificateDer| c.to_vec())
        .unwrap();
    config.root_cert = Some(vec![ca]);
    config.auth_info.token = Some(token.to_string().into());
    kube::Client::try_from(config).unwrap()
}

fn kubeconfig(dir: &Path, name: &str, url: &str, ca: &Path, token: &str) -> PathBuf {
    write(
        dir,
        name,
        &format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: {url}\n    certificate-authority: {}\nusers:\n- name: u\n  user:\n    token: {token}\ncontexts:\n- name: test\n  context:\n    cluster: test\n    user: u\ncurrent-context: test\n",
            ca.display()
        ),
    )
}

/// Milliseconds since the Unix epoch: the kubelet's sample timestamps.
fn epoch_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
}

/// The resource metrics a v1.20 kubelet serves, for one node with one Pod
/// `web-<node>` (container `app`): the node uses 250m and 512Mi, the
/// container 50m and 20Mi. Counters grow with the time since `start_ms`,
/// read from the same clock as the samples' timestamps (an `Instant` for one
/// and the wall clock for the other made the rate 49.95m now and then).
fn resource_metrics(node: &str, start_ms: u128) -> String {
    let now_ms = epoch_ms();
    let ms = now_ms.saturating_sub(start_ms) as u64;
    let node_cpu = ms as f64 * 0.00025;
    let app_cpu = ms as f64 * 0.00005;
    format!(
        "# HELP container_cpu_usage_seconds_total [ALPHA] Cumulative cpu time consumed by the container in core-seconds\n\
         # TYPE container_cpu_usage_seconds_total counter\n\
         container_cpu_usage_seconds_total{{container=\"app\",namespace=\"default\",pod=\"web-{node}\"}} {app_cpu} {now_ms}\n\
         # HELP container_memory_working_set_bytes [ALPHA] Current working set of the container in bytes\n\
         # TYPE container_memory_working_set_bytes gauge\n\
         container_memory_working_set_bytes{{container=\"app\",namespace=\"default\",pod=\"web-{node}\"}} 2.097152e+07 {now_ms}\n\
         # HELP node_cpu_usage_seconds_total [ALPHA] Cumulative cpu time consumed by the node in core-seconds\n\
         # TYPE node_cpu_usage_seconds_total counter\n\
         node_cpu_usage_seconds_total {node_cpu} {now_ms}\n\
         # HELP node_memory_working_set_bytes [ALPHA] Current working set of the node in bytes\n\
         # TYPE node_memory_working_set_bytes gauge\n\
         node_memory_working_set_bytes 5.36870912e+08 {now_ms}\n\
         # HELP scrape_error [ALPHA] 1 if there was an error while getting container metrics, 0 otherwise\n\
         # TYPE scrape_error gauge\n\
         scrape_error 0\n"
    )
}

/// A fake kubelet on 127.0.0.1: HTTPS with (`cert`, `key`), answering
/// `/metrics/resource` to the bearer `token` only. Returns its port.
async fn fake_kubelet(
    node: &'static str,
    cert: &str,
    key: &str,
    token: Arc<std::sync::Mutex<String>>,
) -> u16 {
    use rustls::pki_types::pem::PemObject as _;
    let chain: Vec<rustls::pki_types::CertificateDer<'static>> =
        rustls::pki_types::CertificateDer::pem_slice_iter(cert.as_bytes())
            .collect::<Result<_, _>>()
            .unwrap();
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let start = epoch_ms();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            let token = token.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let want = format!("Bearer {}", token.lock().unwrap());
                        let authorized = req
                            .headers()
                            .get("authorization")
                            .is_some_and(|v| v.as_bytes() == want.as_bytes());
                        let (code, body) = if !authorized {
                            (401, "Unauthorized".to_string())
                        } else if req.uri().path() == "/metrics/resource" {
                            (200, resource_metrics(node, start))
                        } else {
                            (404, "404 page not found".to_string())
                        };
                        async move {
                            let mut r = hyper::Response::new(Full::new(bytes::Bytes::from(body)));
                            *r.status_mut() = http::StatusCode::from_u16(code).unwrap();
                            Ok::<_, std::convert::Infallible>(r)
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    port
}

/// GET `path` from `addr` over TLS trusting `ca_pem`, with no client
/// certificate: the status code.
async fn status_without_client_cert(
    addr: &str,
    server_name: &str,
    ca_pem: &str,
    path: &str,
) -> u16 {
    use rustls::pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(server_name.to_string().try_into().unwrap(), tcp)
        .await
        .unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get(path)
        .header("host", server_name)
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    send.send_request(req).await.unwrap().status().as_u16()
}

fn kubectl(bin: &Path, kubeconfig: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(bin.join("kubectl"))
        .arg(format!("--kubeconfig={}", kubeconfig.display()))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

async fn create(client: &kube::Client, doc: &Value) {
    let gvk = kube::api::GroupVersionKind::try_from(&kube::core::TypeMeta {
        api_version: doc["apiVersion"].as_str().unwrap().into(),
        kind: doc["kind"].as_str().unwrap().into(),
    })
    .unwrap();
    let plural = format!("{}s", doc["kind"].as_str().unwrap().to_ascii_lowercase());
    let ar = kube::api::ApiResource::from_gvk_with_plural(&gvk, &plural);
    let api: Api<DynamicObject> = match doc["metadata"]["namespace"].as_str() {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
        None => Api::all_with(client.clone(), &ar),
    };
    let obj: DynamicObject = serde_json::from_value(doc.clone()).unwrap();
    api.create(&PostParams::default(), &obj)
        .await
        .unwrap_or_else(|e| panic!("creating {} {}: {e}", doc["kind"], doc["metadata"]["name"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_top_and_an_autoscaler_through_the_aggregation_layer() {
    let Some(bin) = kube_bin_dir() else {
        eprintln!("SKIP: no kube-apiserver, kube-controller-manager and kubectl (run `make payload`, or set CAIRN_KUBE_BIN_DIR)");
        return;
    };
    if !Path::new("/usr/bin/etcd").exists() {
        eprintln!("SKIP: /usr/bin/etcd is not installed (images/install-deps.sh installs it)");
        return;
    }
    let Some(host_ip) = host_ip() else {
        eprintln!("SKIP: this host has no global IPv4 address for the metrics server's Endpoints");
        return;
    };
    let _ = rustls::crypto::ring::default_provider().install_default();
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();

    // The cluster CA is the golden config's, so addons' objects (the
    // APIService's caBundle) and its certificate minting are used as they are.
    let cfg = config::MachineConfig::parse(include_bytes!(
        "../../config/tests/golden/controlplane.yaml"
    ))
    .unwrap();
    let cluster_ca = cfg.cluster.ca.certified_key().unwrap();
    let ca_file = write(dir, "ca.crt", cluster_ca.crt.pem());
    let api_cert = config::pki::issue_server_cert(
        &cluster_ca,
        "kube-apiserver",
        &[config::types::SubjectAltName::Ip(
            "127.0.0.1".parse().unwrap(),
        )],
        Duration::from_secs(3600),
    )
    .unwrap();
    let front_proxy = Ca::new("front-proxy-ca");
    let (fp_crt, fp_key) = front_proxy.issue("front-proxy-client", &[], true);
    let kubelet_ca = Ca::new("test-kubelet-ca");
    let rogue_ca = Ca::new("someone-else");
    let sa_key = KeyPair::generate().unwrap();
    let tokens = write(
        dir,
        "tokens.csv",
        &format!(
            "{ADMIN_TOKEN},admin,admin-uid,\"system:masters\"\n{NOBODY_TOKEN},nobody,nobody-uid\n"
        ),
    );

    let mut children = Children(Vec::new());
    let (etcd_port, etcd_peer) = (free_port(), free_port());
    children.spawn(
        "etcd",
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
        dir,
    );
    let api_port = free_port();
    let api_url = format!("https://127.0.0.1:{api_port}");
    children.spawn(
        "kube-apiserver",
        Command::new(bin.join("kube-apiserver"))
            .arg(format!("--etcd-servers=http://127.0.0.1:{etcd_port}"))
            .arg(format!("--secure-port={api_port}"))
            .arg("--bind-address=127.0.0.1")
            .arg("--advertise-address=127.0.0.1")
            .arg(format!("--cert-dir={}", dir.join("certs").display()))
            .arg(format!(
                "--tls-cert-file={}",
                write(dir, "api.crt", api_cert.crt.pem()).display()
            ))
            .arg(format!(
                "--tls-private-key-file={}",
                write(dir, "api.key", api_cert.key.pem()).display()
            ))
            .arg(format!("--client-ca-file={}", ca_file.display()))
            .arg(format!("--token-auth-file={}", tokens.display()))
            .arg("--authorization-mode=Node,RBAC")
            .arg(format!(
                "--service-account-key-file={}",
                write(dir, "sa.pub", &sa_key.public_key_pem()).display()
            ))
            .arg(format!(
                "--service-account-signing-key-file={}",
                write(dir, "sa.key", &sa_key.serialize_pem()).display()
            ))
            .arg("--service-account-issuer=https://kubernetes.default.svc.cluster.local")
            .arg("--service-cluster-ip-range=10.96.0.0/16")
            .arg("--enable-priority-and-fairness=false")
            // The aggregation layer, as machined's static Pod sets it up.
            .arg(format!(
                "--requestheader-client-ca-file={}",
                write(dir, "front-proxy-ca.crt", &front_proxy.pem).display()
            ))
            .arg("--requestheader-allowed-names=front-proxy-client")
            .arg("--requestheader-username-headers=X-Remote-User")
            .arg("--requestheader-group-headers=X-Remote-Group")
            .arg("--requestheader-extra-headers-prefix=X-Remote-Extra-")
            .arg(format!(
                "--proxy-client-cert-file={}",
                write(dir, "fp.crt", &fp_crt).display()
            ))
            .arg(format!(
                "--proxy-client-key-file={}",
                write(dir, "fp.key", &fp_key).display()
            ))
            .arg("--enable-aggregator-routing=true"),
        dir,
    );
    let admin = kube_client(&api_url, cluster_ca.crt.pem(), ADMIN_TOKEN);
    wait_until("kube-apiserver ready", Duration::from_secs(120), || {
        let admin = admin.clone();
        async move {
            let r = http::Request::get("/readyz").body(Vec::new()).unwrap();
            admin
                .request_text(r)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        }
    })
    .await;
    children.alive(dir);
    wait_until(
        "the bootstrap roles and namespaces",
        Duration::from_secs(60),
        || {
            let roles: Api<k8s_openapi::api::rbac::v1::Role> =
                Api::namespaced(admin.clone(), "kube-system");
            let cms: Api<k8s_openapi::api::core::v1::ConfigMap> =
                Api::namespaced(admin.clone(), "kube-system");
            let ns: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(admin.clone());
            async move {
                roles
                    .get("extension-apiserver-authentication-reader")
                    .await
                    .map_err(|e| e.to_string())?;
                cms.get("extension-apiserver-authentication")
                    .await
                    .map_err(|e| e.to_string())?;
                ns.get("default")
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
        },
    )
    .await;
    eprintln!("apiserver up after {:?}", started.elapsed());

    // The add-on's objects, as machined applies them, but the Deployment
    // (the server runs here) and the Service (a selector-less one with
    // Endpoints at this host's address, below).
    for doc in addons::metrics_server::objects(&cfg) {
        if doc["kind"] != "Deployment" && doc["kind"] != "Service" {
            create(&admin, &doc).await;
        }
    }
    let secret = addons::tls::secret(&cfg, &addons::metrics_server::serving_cert(&cfg)).unwrap();
    let ms_crt = write(
        dir,
        "ms.crt",
        secret["stringData"]["tls.crt"].as_str().unwrap(),
    );
    let ms_key = write(
        dir,
        "ms.key",
        secret["stringData"]["tls.key"].as_str().unwrap(),
    );

    let ms_port = free_port();
    let svc: Service = serde_json::from_value(json!({
        "metadata": {"name": "cairn-metrics-server", "namespace": "kube-system"},
        "spec": {"ports": [{"name": "https", "port": 443, "targetPort": ms_port}]}
    }))
    .unwrap();
    Api::<Service>::namespaced(admin.clone(), "kube-system")
        .create(&PostParams::default(), &svc)
        .await
        .unwrap();
    let ep: Endpoints = serde_json::from_value(json!({
        "metadata": {"name": "cairn-metrics-server", "namespace": "kube-system"},
        "subsets": [{"addresses": [{"ip": host_ip.to_string()}], "ports": [{"name": "https", "port": ms_port}]}]
    }))
    .unwrap();
    Api::<Endpoints>::namespaced(admin.clone(), "kube-system")
        .create(&PostParams::default(), &ep)
        .await
        .unwrap();

    // The server's identity: its ServiceAccount's token.
    let sa_token = {
        let req = http::Request::post(
            "/api/v1/namespaces/kube-system/serviceaccounts/cairn-metrics-server/token",
        )
        .header("content-type", "application/json")
        .body(
            serde_json::to_vec(
                &json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                "spec": {"expirationSeconds": 3600}}),
            )
            .unwrap(),
        )
        .unwrap();
        let v: Value = admin.request(req).await.unwrap();
        v["status"]["token"].as_str().unwrap().to_string()
    };
    let _ = Api::<ServiceAccount>::namespaced(admin.clone(), "kube-system")
        .get("cairn-metrics-server")
        .await
        .unwrap();
    let token_file = write(dir, "sa.token", &sa_token);
    let ms_kubeconfig = kubeconfig(dir, "ms.kubeconfig", &api_url, &ca_file, &sa_token);
    let admin_kubeconfig = kubeconfig(dir, "admin.kubeconfig", &api_url, &ca_file, ADMIN_TOKEN);
    let nobody_kubeconfig = kubeconfig(dir, "nobody.kubeconfig", &api_url, &ca_file, NOBODY_TOKEN);

    // Three kubelets: two trusted, one whose certificate the server must refuse.
    let token = Arc::new(std::sync::Mutex::new(sa_token.clone()));
    let mut ports = Vec::new();
    for (node, ca) in [
        ("cp-1", &kubelet_ca),
        ("w-1", &kubelet_ca),
        ("rogue", &rogue_ca),
    ] {
        let (crt, key) = ca.issue(node, &["127.0.0.1"], false);
        ports.push(fake_kubelet(node, &crt, &key, token.clone()).await);
    }
    let nodes: Api<Node> = Api::all(admin.clone());
    let pods: Api<Pod> = Api::namespaced(admin.clone(), "default");
    // No controller-manager makes the default ServiceAccount, which Pod admission wants.
    let default_sa: ServiceAccount =
        serde_json::from_value(json!({"metadata": {"name": "default"}})).unwrap();
    Api::<ServiceAccount>::namespaced(admin.clone(), "default")
        .create(&PostParams::default(), &default_sa)
        .await
        .unwrap();
    for (node, port) in ["cp-1", "w-1", "rogue"].into_iter().zip(&ports) {
        let n: Node = serde_json::from_value(json!({"metadata": {"name": node, "labels": {"tier": if node == "cp-1" { "cp" } else { "worker" }}}})).unwrap();
        nodes.create(&PostParams::default(), &n).await.unwrap();
        let status = json!({"status": {
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": node}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
            "capacity": {"cpu": "2", "memory": "2Gi", "pods": "110"},
            "allocatable": {"cpu": "2", "memory": "2Gi", "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "ok",
                "lastHeartbeatTime": "2026-01-01T00:00:00Z", "lastTransitionTime": "2026-01-01T00:00:00Z"}],
        }});
        nodes
            .patch_status(node, &PatchParams::default(), &Patch::Merge(status))
            .await
            .unwrap();
        let p: Pod = serde_json::from_value(json!({
            "metadata": {"name": format!("web-{node}"), "labels": {"app": "web"}},
            "spec": {"nodeName": node, "automountServiceAccountToken": false,
                "containers": [{"name": "app", "image": "testpod:latest", "resources": {"requests": {"cpu": "100m"}}}]}
        }))
        .unwrap();
        pods.create(&PostParams::default(), &p).await.unwrap();
    }

    let ms_pid = children.spawn(
        "cairn-metrics-server",
        // $CAIRN_METRICS_SERVER_BIN runs another build (e.g. the payload's static one).
        Command::new(
            std::env::var_os("CAIRN_METRICS_SERVER_BIN")
                .unwrap_or_else(|| env!("CARGO_BIN_EXE_cairn-metrics-server").into()),
        )
        .env("RUST_LOG", "info,metrics_server=debug")
        .arg(format!("--listen=0.0.0.0:{ms_port}"))
        .arg(format!("--tls-cert-file={}", ms_crt.display()))
        .arg(format!("--tls-private-key-file={}", ms_key.display()))
        .arg(format!("--kubeconfig={}", ms_kubeconfig.display()))
        .arg(format!(
            "--kubelet-ca-file={}",
            write(dir, "kubelet-ca.crt", &kubelet_ca.pem).display()
        ))
        .arg(format!("--kubelet-token-file={}", token_file.display()))
        .arg("--metric-resolution=1s"),
        dir,
    );

    // The aggregator marks the APIService available once the server answers.
    wait_until(
        "APIService v1beta1.metrics.k8s.io Available",
        Duration::from_secs(60),
        || {
            let admin = admin.clone();
            async move {
                let r = http::Request::get(
                    "/apis/apiregistration.k8s.io/v1/apiservices/v1beta1.metrics.k8s.io",
                )
                .body(Vec::new())
                .unwrap();
                let v: Value = admin.request(r).await.map_err(|e| e.to_string())?;
                let available = v["status"]["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|c| c["type"] == "Available" && c["status"] == "True");
                if available {
                    Ok(())
                } else {
                    Err(v["status"].to_string())
                }
            }
        },
    )
    .await;
    children.alive(dir);
    eprintln!("APIService available after {:?}", started.elapsed());

    let mut top_nodes = String::new();
    wait_until(
        "kubectl top nodes prints both trusted nodes",
        Duration::from_secs(60),
        || {
            let (ok, out) = kubectl(&bin, &admin_kubeconfig, &["top", "nodes"]);
            top_nodes = out.clone();
            let good = ok
                && ["cp-1", "w-1"].iter().all(|n| {
                    out.lines()
                        .any(|l| l.starts_with(n) && l.contains("250m") && l.contains("512Mi"))
                });
            async move {
                if good {
                    Ok(())
                } else {
                    Err(out)
                }
            }
        },
    )
    .await;
    eprintln!("kubectl top nodes:\n{top_nodes}");
    assert!(
        !top_nodes
            .lines()
            .any(|l| l.starts_with("rogue") && l.contains("250m")),
        "figures of a kubelet with an untrusted certificate:\n{top_nodes}"
    );
    let cp = top_nodes.lines().find(|l| l.starts_with("cp-1")).unwrap();
    assert!(
        cp.contains("12%") && cp.contains("25%"),
        "percentages of 2 CPUs and 2Gi: {cp}"
    );
    let log = std::fs::read_to_string(dir.join("cairn-metrics-server.log")).unwrap();
    assert!(
        log.lines()
            .any(|l| l.contains("rogue") && l.contains("TLS")),
        "the untrusted kubelet's TLS failure is logged with its node:\n{}",
        tail(dir, "cairn-metrics-server")
    );

    let (ok, top_pods) = kubectl(&bin, &admin_kubeconfig, &["top", "pods", "-A"]);
    eprintln!("kubectl top pods -A:\n{top_pods}");
    assert!(ok, "{top_pods}");
    for pod in ["web-cp-1", "web-w-1"] {
        let line = top_pods
            .lines()
            .find(|l| l.contains(pod))
            .unwrap_or_else(|| panic!("{pod} missing:\n{top_pods}"));
        assert!(
            line.starts_with("default") && line.contains("50m") && line.contains("20Mi"),
            "{line}"
        );
    }
    assert!(!top_pods.contains("web-rogue"), "{top_pods}");

    // Label selectors reach the server (kubectl sends labelSelector).
    let (ok, sel) = kubectl(
        &bin,
        &admin_kubeconfig,
        &["top", "nodes", "-l", "tier=worker"],
    );
    assert!(ok && sel.contains("w-1") && !sel.contains("cp-1"), "{sel}");
    let (ok, one) = kubectl(
        &bin,
        &admin_kubeconfig,
        &[
            "get",
            "--raw",
            "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/web-cp-1",
        ],
    );
    assert!(ok, "{one}");
    let v: Value = serde_json::from_str(&one).unwrap();
    assert_eq!(v["kind"], "PodMetrics");
    assert_eq!(v["containers"][0]["usage"]["cpu"], "50000000n");

    // Delegated authorization: a user without rights gets the API server's 403.
    let (ok, refused) = kubectl(&bin, &nobody_kubeconfig, &["top", "nodes"]);
    assert!(!ok, "{refused}");
    assert!(
        refused.contains("Forbidden") || refused.contains("forbidden"),
        "expected a 403 for nobody: {refused}"
    );
    assert!(refused.contains("nobody"), "{refused}");

    // Not through the API server: no front-proxy certificate, 401.
    let code = status_without_client_cert(
        &format!("127.0.0.1:{ms_port}"),
        "cairn-metrics-server.kube-system.svc",
        cluster_ca.crt.pem(),
        "/apis/metrics.k8s.io/v1beta1/nodes",
    )
    .await;
    assert_eq!(code, 401);
    let health = status_without_client_cert(
        &format!("127.0.0.1:{ms_port}"),
        "cairn-metrics-server.kube-system.svc",
        cluster_ca.crt.pem(),
        "/readyz",
    )
    .await;
    assert_eq!(health, 200);

    // A wrong token: the kubelets refuse it and the figures go away.
    *token.lock().unwrap() = "rotated".into();
    wait_until(
        "figures gone once the kubelets refuse the token",
        Duration::from_secs(30),
        || {
            let (_, out) = kubectl(
                &bin,
                &admin_kubeconfig,
                &["get", "--raw", "/apis/metrics.k8s.io/v1beta1/nodes"],
            );
            let gone = serde_json::from_str::<Value>(&out)
                .map(|v| v["items"].as_array().is_some_and(|i| i.is_empty()))
                .unwrap_or(false);
            async move {
                if gone {
                    Ok(())
                } else {
                    Err(out)
                }
            }
        },
    )
    .await;
    // The token file is re-read: the same token again brings them back.
    std::fs::write(&token_file, "rotated").unwrap();
    wait_until(
        "figures back with the re-read token",
        Duration::from_secs(30),
        || {
            let (ok, out) = kubectl(&bin, &admin_kubeconfig, &["top", "nodes"]);
            let back = ok
                && out
                    .lines()
                    .any(|l| l.starts_with("cp-1") && l.contains("250m"));
            async move {
                if back {
                    Ok(())
                } else {
                    Err(out)
                }
            }
        },
    )
    .await;

    let status = std::fs::read_to_string(format!("/proc/{ms_pid}/status")).unwrap_or_default();
    let field = |k: &str| {
        status
            .lines()
            .find(|l| l.starts_with(k))
            .unwrap_or("?")
            .to_string()
    };
    let build = match std::env::var("CAIRN_METRICS_SERVER_BIN") {
        Ok(b) => b,
        Err(_) if cfg!(debug_assertions) => "debug".into(),
        Err(_) => "release".into(),
    };
    eprintln!(
        "cairn-metrics-server ({build} build) while serving: {}, peak {}",
        field("VmRSS:"),
        field("VmHWM:")
    );

    // Prometheus's target discovery, as its ServiceAccount with the add-on's RBAC.
    prometheus_targets(dir, &api_url, &ca_file, &admin, &ports, &mut children).await;

    // The Horizontal Pod Autoscaler reads the Pod's CPU through the API.
    autoscaler(&bin, dir, &admin, &admin_kubeconfig, &mut children).await;
    children.alive(dir);
    eprintln!("aggregated test took {:?}", started.elapsed());
}

/// `cairn-metrics-server` called as `cairn-prometheus-sd` (as the image's
/// symlink does), with the token of the Prometheus add-on's ServiceAccount
/// and its RBAC from `addons`: the kubelet targets are the Nodes'
/// addresses and ports, labelled with their node.
async fn prometheus_targets(
    dir: &Path,
    api_url: &str,
    ca_file: &Path,
    admin: &kube::Client,
    kubelet_ports: &[u16],
    children: &mut Children,
) {
    let cfg = config::MachineConfig::parse(include_bytes!(
        "../../config/tests/golden/controlplane.yaml"
    ))
    .unwrap();
    for doc in addons::prometheus::objects(&cfg) {
        let rbac = [
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding",
            "Role",
            "RoleBinding",
        ];
        if rbac.contains(&doc["kind"].as_str().unwrap()) {
            create(admin, &doc).await;
        }
    }
    let req = http::Request::post(
        "/api/v1/namespaces/kube-system/serviceaccounts/cairn-prometheus/token",
    )
    .header("content-type", "application/json")
    .body(
        serde_json::to_vec(
            &json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
            "spec": {"expirationSeconds": 3600}}),
        )
        .unwrap(),
    )
    .unwrap();
    let v: Value = admin.request(req).await.unwrap();
    let token = v["status"]["token"].as_str().unwrap().to_string();
    let kubeconfig = kubeconfig(dir, "prometheus.kubeconfig", api_url, ca_file, &token);
    let link = dir.join("cairn-prometheus-sd");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_cairn-metrics-server"), &link).unwrap();
    let port = free_port();
    children.spawn(
        "cairn-prometheus-sd",
        Command::new(&link)
            .arg(format!("--listen=127.0.0.1:{port}"))
            .arg(format!("--kubeconfig={}", kubeconfig.display())),
        dir,
    );
    let get = |job: &'static str| async move {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let mut c = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .map_err(|e| e.to_string())?;
        let request =
            format!("GET /targets/{job} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        c.write_all(request.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut text = String::new();
        c.read_to_string(&mut text)
            .await
            .map_err(|e| e.to_string())?;
        let (head, body) = text.split_once("\r\n\r\n").ok_or("no body")?;
        if !head.starts_with("HTTP/1.1 200") {
            return Err(text);
        }
        serde_json::from_str::<Value>(body).map_err(|e| format!("{e}: {body}"))
    };
    // It listens once started; the API server answers right away.
    let start = Instant::now();
    let kubelets = loop {
        match get("kubelet").await {
            Ok(v) => break v,
            Err(e) if start.elapsed() > Duration::from_secs(30) => {
                panic!(
                    "the kubelet targets within 30 s: {e}\n{}",
                    tail(dir, "cairn-prometheus-sd")
                )
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(300)).await,
        }
    };
    for (node, port) in ["cp-1", "w-1", "rogue"].iter().zip(kubelet_ports) {
        let group = kubelets
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["labels"]["node"] == *node)
            .unwrap_or_else(|| panic!("{node} missing: {kubelets}"));
        assert_eq!(
            group["targets"],
            json!([format!("127.0.0.1:{port}")]),
            "{kubelets}"
        );
    }
    let machined = get("machined").await.unwrap();
    assert_eq!(machined.as_array().unwrap().len(), 3, "{machined}");
    assert!(
        machined.to_string().contains("127.0.0.1:9101"),
        "{machined}"
    );
    // No Node carries a control-plane label here: no etcd targets.
    assert_eq!(get("etcd").await.unwrap(), json!([]));
    // The API server here has no Endpoints default/kubernetes (its address is
    // loopback, which Endpoints refuse): reading them was allowed (the
    // add-on's Role; a refusal would be a 502) and found nothing.
    assert_eq!(get("apiserver").await.unwrap(), json!([]));
    eprintln!("Prometheus's kubelet targets: {kubelets}");
}

async fn autoscaler(
    bin: &Path,
    dir: &Path,
    admin: &kube::Client,
    kubeconfig: &Path,
    children: &mut Children,
) {
    let pods: Api<Pod> = Api::namespaced(admin.clone(), "default");
    // web-cp-1 belongs to Deployment web (by its labels) and runs, ready, for an hour.
    let hour_ago = "2026-01-01T00:00:00Z";
    let ready = json!({"status": {"phase": "Running", "startTime": hour_ago, "podIP": "10.244.0.5",
        "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": hour_ago}],
        "containerStatuses": [{"name": "app", "ready": true, "restartCount": 0, "image": "testpod:latest", "imageID": "",
            "state": {"running": {"startedAt": hour_ago}}}]}});
    pods.patch_status("web-cp-1", &PatchParams::default(), &Patch::Merge(ready))
        .await
        .unwrap();
    for other in ["web-w-1", "web-rogue"] {
        let now = kube::api::DeleteParams {
            grace_period_seconds: Some(0),
            ..Default::default()
        };
        pods.delete(other, &now).await.unwrap();
    }
    let deploy = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "app", "image": "testpod:latest", "resources": {"requests": {"cpu": "100m"}}}]}}}});
    create(admin, &deploy).await;
    let hpa = json!({"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "minReplicas": 1, "maxReplicas": 3, "targetCPUUtilizationPercentage": 80}});
    let hpas: Api<DynamicObject> = Api::namespaced_with(
        admin.clone(),
        "default",
        &kube::api::ApiResource::from_gvk_with_plural(
            &kube::api::GroupVersionKind::gvk("autoscaling", "v1", "HorizontalPodAutoscaler"),
            "horizontalpodautoscalers",
        ),
    );
    hpas.create(
        &PostParams::default(),
        &serde_json::from_value(hpa).unwrap(),
    )
    .await
    .unwrap();
    // Only the HPA controller, with the admin's credentials; no serving port.
    children.spawn(
        "kube-controller-manager",
        Command::new(bin.join("kube-controller-manager"))
            .arg(format!("--kubeconfig={}", kubeconfig.display()))
            .arg("--controllers=horizontalpodautoscaling")
            .arg("--horizontal-pod-autoscaler-sync-period=2s")
            .arg("--leader-elect=false")
            .arg("--port=0")
            .arg("--secure-port=0"),
        dir,
    );
    wait_until(
        "the HPA's current CPU utilization",
        Duration::from_secs(90),
        || {
            let hpas = hpas.clone();
            async move {
                let h = hpas.get("web").await.map_err(|e| e.to_string())?;
                let status = &h.data["status"];
                match status["currentCPUUtilizationPercentage"].as_u64() {
                    Some(50) => Ok(()),
                    _ => Err(format!(
                        "{status} / {}",
                        h.metadata
                            .annotations
                            .unwrap_or_default()
                            .values()
                            .cloned()
                            .collect::<Vec<_>>()
                            .join(" ")
                    )),
                }
            }
        },
    )
    .await;
    eprintln!("HPA web: currentCPUUtilizationPercentage 50 (50m of 100m)");
}
