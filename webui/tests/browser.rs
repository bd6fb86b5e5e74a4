//! The Web UI in a real headless Chromium (driven over WebDriver by
//! chromedriver) against a real kube-apiserver v1.20.2 (from the payload
//! build's cache) on a real etcd (Debian's), on this host:
//! sign in with an admin token, see the Node as Ready, scale a Deployment
//! and find the new replica count in the API server, open a Pod's page;
//! then sign in with a read-only ServiceAccount token (a TokenRequest),
//! find the Scale button disabled (SelfSubjectAccessReview) and a forced
//! scale refused with the API server's own message. A change without the
//! CSRF token is refused, and the session cookie is out of JavaScript's
//! reach. Screenshots go to `<target>/webui-screenshots/`.
//!
//! The usage panels: the API server runs with the aggregation layer, and
//! two stand-ins answer behind it in the add-ons' places (the metrics
//! server itself is tested against a real API server in
//! metrics-server/tests/aggregated.rs): a metrics API registered as
//! APIService v1beta1.metrics.k8s.io, and a Prometheus query API behind
//! Service kube-system/cairn-prometheus. So the Web UI's real paths are
//! driven: the aggregation layer and the service proxy, with the user's
//! token (the admin sees figures and charts; the read-only user is refused
//! by RBAC and the page says so). Their Endpoints must be a non-loopback
//! address: this host's first global IPv4 address; without one that part
//! is skipped with a message.
//!
//! Skipped (with a message) when kube-apiserver, etcd, chromium or
//! chromedriver are not there (`make payload`, images/install-deps.sh).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::Locator;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Node, Pod, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, Patch, PatchParams, PostParams};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};
use serde_json::json;
use webui::browser::Browser;

const ADMIN_TOKEN: &str = "cairn-webui-test-admin-token-0123456789";

/// kube-apiserver from `make payload`'s cache, or `$CAIRN_KUBE_BIN_DIR`.
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
    fn spawn(&mut self, name: &str, cmd: &mut Command, log: &Path) {
        let out = std::fs::File::create(log).unwrap();
        let child = cmd
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        self.0.push((name.into(), child));
    }

    /// Fails with `name`'s log if it has exited.
    fn alive(&mut self, dir: &Path) {
        for (name, c) in &mut self.0 {
            if let Ok(Some(status)) = c.try_wait() {
                let log =
                    std::fs::read_to_string(dir.join(format!("{name}.log"))).unwrap_or_default();
                let tail: String = log
                    .lines()
                    .rev()
                    .take(30)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect::<Vec<_>>()
                    .join("\n");
                panic!("{name} exited ({status}):\n{tail}");
            }
        }
    }
}

struct Pki {
    ca_pem: String,
    ca: Issuer<'static, KeyPair>,
}

impl Pki {
    fn new() -> Pki {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, "cairn-webui-test-ca");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).unwrap();
        Pki {
            ca_pem: cert.pem(),
            ca: Issuer::new(params, key),
        }
    }

    /// A serving certificate for the DNS name `dns`: (cert, key).
    fn serving_for(&self, dns: &str) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec![dns.to_string()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, dns);
        let cert = params.signed_by(&key, &self.ca).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    /// The API server's front-proxy client certificate: (cert, key).
    fn front_proxy_client(&self) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, "front-proxy-client");
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params.signed_by(&key, &self.ca).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    /// A serving certificate for 127.0.0.1 and localhost: (cert, key).
    fn serving(&self, cn: &str) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params
            .subject_alt_names
            .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
        let cert = params.signed_by(&key, &self.ca).unwrap();
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
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
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

/// The objects the UI shows: a Ready Node, a Deployment with one replica,
/// a Pod, and a ServiceAccount bound to a read-only Role.
async fn seed(admin: &kube::Client) {
    let pp = PostParams::default();
    let nodes: Api<Node> = Api::all(admin.clone());
    let node: Node = serde_json::from_value(json!({
        "metadata": {"name": "cp-1", "labels": {"node-role.kubernetes.io/control-plane": ""}},
    }))
    .unwrap();
    nodes.create(&pp, &node).await.unwrap();
    let status = json!({"status": {
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
            "message": "kubelet is posting ready status",
            "lastHeartbeatTime": "2026-01-01T00:00:00Z", "lastTransitionTime": "2026-01-01T00:00:00Z"}],
        "capacity": {"cpu": "2", "memory": "2048Mi", "pods": "110"},
        "nodeInfo": {"kubeletVersion": "v1.20.2", "kubeProxyVersion": "v1.20.2", "architecture": "amd64",
            "bootID": "", "containerRuntimeVersion": "containerd://1.6.20", "kernelVersion": "6.1",
            "machineID": "", "operatingSystem": "linux", "osImage": "Cairn", "systemUUID": ""}
    }});
    nodes
        .patch_status("cp-1", &PatchParams::default(), &Patch::Merge(status))
        .await
        .unwrap();

    let sas: Api<ServiceAccount> = Api::namespaced(admin.clone(), "default");
    for name in ["default", "viewer"] {
        let sa: ServiceAccount =
            serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
        sas.create(&pp, &sa).await.unwrap();
    }
    // Read-only, like the `view` ClusterRole (whose rules only the
    // controller-manager's aggregation fills in, and it does not run here):
    // get, list and watch, no Secrets.
    let role: Role = serde_json::from_value(json!({
        "metadata": {"name": "read-only"},
        "rules": [
            {"apiGroups": [""], "resources": ["pods", "pods/log", "services", "configmaps", "events"],
             "verbs": ["get", "list", "watch"]},
            {"apiGroups": ["apps"], "resources": ["deployments", "daemonsets", "statefulsets"],
             "verbs": ["get", "list", "watch"]},
            {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["get", "list", "watch"]}
        ]
    }))
    .unwrap();
    Api::<Role>::namespaced(admin.clone(), "default")
        .create(&pp, &role)
        .await
        .unwrap();
    let binding: RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": "viewer-read-only"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "read-only"},
        "subjects": [{"kind": "ServiceAccount", "name": "viewer", "namespace": "default"}]
    }))
    .unwrap();
    Api::<RoleBinding>::namespaced(admin.clone(), "default")
        .create(&pp, &binding)
        .await
        .unwrap();

    let labels = json!({"app": "web"});
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"replicas": 1, "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels},
                "spec": {"containers": [{"name": "web", "image": "testpod:latest"}]}}}
    }))
    .unwrap();
    Api::<Deployment>::namespaced(admin.clone(), "default")
        .create(&pp, &deployment)
        .await
        .unwrap();
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "hello", "labels": {"app": "hello"}},
        "spec": {"automountServiceAccountToken": false,
            "containers": [{"name": "hello", "image": "testpod:latest", "args": ["serve"]}]}
    }))
    .unwrap();
    Api::<Pod>::namespaced(admin.clone(), "default")
        .create(&pp, &pod)
        .await
        .unwrap();
}

/// A token for the `viewer` ServiceAccount (TokenRequest).
async fn viewer_token(admin: &kube::Client) -> String {
    let request = http::Request::post("/api/v1/namespaces/default/serviceaccounts/viewer/token")
        .header("content-type", "application/json")
        .body(
            serde_json::to_vec(&json!({
                "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                "spec": {"expirationSeconds": 3600}
            }))
            .unwrap(),
        )
        .unwrap();
    let v: serde_json::Value = admin.request(request).await.unwrap();
    v["status"]["token"].as_str().unwrap().to_string()
}

/// This host's first global IPv4 address.
fn host_ip() -> Option<std::net::IpAddr> {
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

/// What the stand-ins answer: the metrics API (node cp-1 uses 250m and
/// 512Mi, Pod hello's container 50m and 20Mi) and Prometheus's query_range
/// (an hour of the container's CPU or memory).
fn stand_in_answer(path: &str, query: &str) -> (u16, serde_json::Value) {
    let pod = json!({"metadata": {"name": "hello", "namespace": "default"}, "timestamp": "2026-01-01T00:00:00Z",
        "window": "15s", "containers": [{"name": "hello", "usage": {"cpu": "50000000n", "memory": "20480Ki"}}]});
    match path {
        "/apis/metrics.k8s.io/v1beta1" => (
            200,
            json!({"kind": "APIResourceList", "apiVersion": "v1",
            "groupVersion": "metrics.k8s.io/v1beta1", "resources": [
                {"name": "nodes", "singularName": "", "namespaced": false, "kind": "NodeMetrics", "verbs": ["get", "list"]},
                {"name": "pods", "singularName": "", "namespaced": true, "kind": "PodMetrics", "verbs": ["get", "list"]}]}),
        ),
        "/apis/metrics.k8s.io/v1beta1/nodes" => (
            200,
            json!({"kind": "NodeMetricsList", "apiVersion": "metrics.k8s.io/v1beta1",
            "metadata": {}, "items": [{"metadata": {"name": "cp-1"}, "timestamp": "2026-01-01T00:00:00Z", "window": "15s",
                "usage": {"cpu": "250000000n", "memory": "524288Ki"}}]}),
        ),
        "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods" => (
            200,
            json!({"kind": "PodMetricsList",
            "apiVersion": "metrics.k8s.io/v1beta1", "metadata": {}, "items": [pod]}),
        ),
        "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/hello" => {
            let mut p = pod;
            p["kind"] = json!("PodMetrics");
            p["apiVersion"] = json!("metrics.k8s.io/v1beta1");
            (200, p)
        }
        "/api/v1/query_range" => {
            let cpu = query.contains("cpu");
            let values: Vec<serde_json::Value> = (0..60)
                .map(|i| {
                    let v = if cpu {
                        0.03 + 0.0005 * i as f64
                    } else {
                        20.0 * 1048576.0 + 1024.0 * i as f64
                    };
                    json!([1_767_225_600 + 60 * i, v.to_string()])
                })
                .collect();
            (
                200,
                json!({"status": "success", "data": {"resultType": "matrix",
                "result": [{"metric": {"container": "hello"}, "values": values}]}}),
            )
        }
        _ => (
            404,
            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 404}),
        ),
    }
}

/// A stand-in server on 0.0.0.0, over TLS when `tls` is given. Its port.
async fn stand_in(tls: Option<rustls::ServerConfig>) -> u16 {
    let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let acceptor = tls.map(|c| tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(c)));
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(|req: hyper::Request<hyper::body::Incoming>| {
                        let (code, body) =
                            stand_in_answer(req.uri().path(), req.uri().query().unwrap_or(""));
                        async move {
                            let mut r = hyper::Response::new(http_body_util::Full::new(
                                bytes::Bytes::from(body.to_string()),
                            ));
                            *r.status_mut() = http::StatusCode::from_u16(code).unwrap();
                            r.headers_mut().insert(
                                "content-type",
                                http::HeaderValue::from_static("application/json"),
                            );
                            Ok::<_, std::convert::Infallible>(r)
                        }
                    });
                let http1 = hyper::server::conn::http1::Builder::new();
                match acceptor {
                    Some(a) => {
                        if let Ok(tls) = a.accept(tcp).await {
                            let _ = http1
                                .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                                .await;
                        }
                    }
                    None => {
                        let _ = http1
                            .serve_connection(hyper_util::rt::TokioIo::new(tcp), service)
                            .await;
                    }
                }
            });
        }
    });
    port
}

/// A selector-less Service with Endpoints at `ip`:`port`.
async fn service_at(
    admin: &kube::Client,
    name: &str,
    port_name: &str,
    service_port: u16,
    ip: &str,
    port: u16,
) {
    use k8s_openapi::api::core::v1::{Endpoints, Service};
    let pp = PostParams::default();
    // The API server's service proxy only goes to addresses of Pods: a Pod
    // `<name>-stand-in` whose status says it has `ip`.
    let pod_name = format!("{name}-stand-in");
    let pods: Api<Pod> = Api::namespaced(admin.clone(), "kube-system");
    let pod: Pod = serde_json::from_value(json!({"metadata": {"name": pod_name},
        "spec": {"nodeName": "cp-1", "automountServiceAccountToken": false,
            "containers": [{"name": "stand-in", "image": "stand-in:latest"}]}}))
    .unwrap();
    pods.create(&pp, &pod).await.unwrap();
    let status = json!({"status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]}});
    pods.patch_status(&pod_name, &PatchParams::default(), &Patch::Merge(status))
        .await
        .unwrap();
    let svc: Service = serde_json::from_value(
        json!({"metadata": {"name": name, "namespace": "kube-system"},
        "spec": {"ports": [{"name": port_name, "port": service_port, "targetPort": port}]}}),
    )
    .unwrap();
    Api::<Service>::namespaced(admin.clone(), "kube-system")
        .create(&pp, &svc)
        .await
        .unwrap();
    let ep: Endpoints = serde_json::from_value(
        json!({"metadata": {"name": name, "namespace": "kube-system"},
        "subsets": [{"addresses": [{"ip": ip, "targetRef": {"kind": "Pod", "namespace": "kube-system", "name": pod_name}}],
            "ports": [{"name": port_name, "port": port}]}]}),
    )
    .unwrap();
    Api::<Endpoints>::namespaced(admin.clone(), "kube-system")
        .create(&pp, &ep)
        .await
        .unwrap();
}

/// The stand-ins behind the aggregation layer and the service proxy; waits
/// for the APIService to be available.
async fn usage_stand_ins(admin: &kube::Client, pki: &Pki, ip: std::net::IpAddr) {
    use rustls::pki_types::pem::PemObject as _;
    let (crt, key) = pki.serving_for("metrics.kube-system.svc");
    let chain = rustls::pki_types::CertificateDer::pem_slice_iter(crt.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
    let tls = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    let metrics_port = stand_in(Some(tls)).await;
    // Pod admission wants the namespace's default ServiceAccount (no
    // controller-manager makes it here).
    let sa: ServiceAccount =
        serde_json::from_value(json!({"metadata": {"name": "default"}})).unwrap();
    Api::<ServiceAccount>::namespaced(admin.clone(), "kube-system")
        .create(&PostParams::default(), &sa)
        .await
        .unwrap();
    let prometheus_port = stand_in(None).await;
    service_at(
        admin,
        "metrics",
        "https",
        443,
        &ip.to_string(),
        metrics_port,
    )
    .await;
    service_at(
        admin,
        "cairn-prometheus",
        "http",
        9090,
        &ip.to_string(),
        prometheus_port,
    )
    .await;
    use base64::Engine as _;
    let api_service = json!({"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
        "metadata": {"name": "v1beta1.metrics.k8s.io"},
        "spec": {"service": {"name": "metrics", "namespace": "kube-system", "port": 443},
            "group": "metrics.k8s.io", "version": "v1beta1",
            "caBundle": base64::engine::general_purpose::STANDARD.encode(&pki.ca_pem),
            "groupPriorityMinimum": 100, "versionPriority": 100}});
    let request = http::Request::post("/apis/apiregistration.k8s.io/v1/apiservices")
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&api_service).unwrap())
        .unwrap();
    let _: serde_json::Value = admin.request(request).await.unwrap();
    wait_until(
        "APIService v1beta1.metrics.k8s.io available",
        Duration::from_secs(60),
        || {
            let admin = admin.clone();
            async move {
                let r = http::Request::get("/apis/metrics.k8s.io/v1beta1/nodes")
                    .body(Vec::new())
                    .unwrap();
                admin
                    .request_text(r)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_ui_in_a_real_browser_against_a_real_apiserver() {
    let Some(bin) = kube_bin_dir() else {
        eprintln!("SKIP: no kube-apiserver (run `make payload`, or set CAIRN_KUBE_BIN_DIR)");
        return;
    };
    if !Path::new("/usr/bin/etcd").exists() {
        eprintln!("SKIP: /usr/bin/etcd is not installed (images/install-deps.sh installs it)");
        return;
    }
    if let Some(why) = webui::browser::missing() {
        eprintln!("SKIP: {why}");
        return;
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("webui-screenshots");
    std::fs::create_dir_all(&shots).unwrap();

    let pki = Pki::new();
    let ca = write(dir, "ca.crt", &pki.ca_pem);
    let (api_crt, api_key) = pki.serving("kube-apiserver");
    let (ui_crt, ui_key) = pki.serving("cairn-webui");
    let (fp_crt, fp_key) = pki.front_proxy_client();
    let sa_key = KeyPair::generate().unwrap();
    let sa_key_file = write(dir, "sa.key", &sa_key.serialize_pem());
    let sa_pub_file = write(dir, "sa.pub", &sa_key.public_key_pem());
    let tokens = write(
        dir,
        "tokens.csv",
        &format!("{ADMIN_TOKEN},admin,admin-uid,\"system:masters\"\n"),
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
        &dir.join("etcd.log"),
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
                write(dir, "api.crt", &api_crt).display()
            ))
            .arg(format!(
                "--tls-private-key-file={}",
                write(dir, "api.key", &api_key).display()
            ))
            .arg(format!("--client-ca-file={}", ca.display()))
            .arg(format!("--token-auth-file={}", tokens.display()))
            .arg("--authorization-mode=Node,RBAC")
            .arg(format!(
                "--service-account-key-file={}",
                sa_pub_file.display()
            ))
            .arg(format!(
                "--service-account-signing-key-file={}",
                sa_key_file.display()
            ))
            .arg("--service-account-issuer=https://kubernetes.default.svc.cluster.local")
            .arg("--service-cluster-ip-range=10.96.0.0/16")
            .arg("--enable-priority-and-fairness=false")
            // The aggregation layer, for the metrics API stand-in.
            .arg(format!("--requestheader-client-ca-file={}", ca.display()))
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
        &dir.join("kube-apiserver.log"),
    );
    let admin = kube_client(&api_url, &pki.ca_pem, ADMIN_TOKEN);
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
    // The default ClusterRoles (view) are made by the API server after it
    // is ready; wait for them before binding.
    wait_until(
        "the default ClusterRoles and namespace",
        Duration::from_secs(60),
        || {
            let roles: Api<k8s_openapi::api::rbac::v1::ClusterRole> = Api::all(admin.clone());
            let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(admin.clone());
            async move {
                roles.get("view").await.map_err(|e| e.to_string())?;
                namespaces
                    .get("default")
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
        },
    )
    .await;
    seed(&admin).await;
    let viewer = viewer_token(&admin).await;
    let usage = match host_ip() {
        Some(ip) => {
            usage_stand_ins(&admin, &pki, ip).await;
            true
        }
        None => {
            eprintln!("SKIP (usage panels): this host has no global IPv4 address for the stand-ins' Endpoints");
            false
        }
    };
    eprintln!("apiserver up and seeded after {:?}", started.elapsed());

    let ui_port = free_port();
    let base = format!("https://127.0.0.1:{ui_port}");
    children.spawn(
        "cairn-webui",
        Command::new(env!("CARGO_BIN_EXE_cairn-webui"))
            .arg(format!("--listen=127.0.0.1:{ui_port}"))
            .arg(format!(
                "--tls-cert={}",
                write(dir, "ui.crt", &ui_crt).display()
            ))
            .arg(format!(
                "--tls-key={}",
                write(dir, "ui.key", &ui_key).display()
            ))
            .arg(format!("--apiserver={api_url}"))
            .arg(format!("--apiserver-ca={}", ca.display())),
        &dir.join("cairn-webui.log"),
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    children.alive(dir);
    let b = Browser::start(dir).await.expect("a browser session");
    let result = drive(&b, &base, &admin, &viewer, &shots, usage).await;
    b.close().await;
    children.alive(dir);
    if let Some((_, ui)) = children.0.iter().find(|(n, _)| n == "cairn-webui") {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", ui.id())).unwrap_or_default();
        let rss = status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .unwrap_or("VmRSS: ?");
        let hwm = status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))
            .unwrap_or("VmHWM: ?");
        let build = if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        };
        eprintln!("cairn-webui ({build} build) after the browser session: {rss}, peak {hwm}");
    }
    let log = std::fs::read_to_string(dir.join("cairn-webui.log")).unwrap_or_default();
    assert!(
        !log.contains(ADMIN_TOKEN) && !log.contains(&viewer),
        "a token is in the Web UI's log:\n{log}"
    );
    eprintln!("browser test took {:?}", started.elapsed());
    result
}

/// The user's side of the test, in the browser.
async fn drive(
    b: &Browser,
    base: &str,
    admin: &kube::Client,
    viewer: &str,
    shots: &Path,
    usage: bool,
) {
    // Signed out: every page goes to the sign-in form; a bad token is refused.
    b.goto(&format!("{base}/")).await.unwrap();
    b.find_wait(Locator::Id("token")).await.unwrap();
    b.find(Locator::Id("token"))
        .await
        .unwrap()
        .send_keys("not-a-token")
        .await
        .unwrap();
    b.find(Locator::Id("sign-in"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let refused = b
        .find_wait(Locator::Id("login-error"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(refused.contains("did not accept this token"), "{refused}");

    // Admin: the overview lists the node as Ready with its role and version.
    b.sign_in(base, ADMIN_TOKEN).await.unwrap();
    let nodes = b.text("#node-table").await.unwrap();
    assert!(
        nodes.contains("cp-1")
            && nodes.contains("Ready")
            && nodes.contains("control-plane")
            && nodes.contains("v1.20.2"),
        "the node table: {nodes}"
    );
    if usage {
        assert!(
            nodes.contains("250m")
                && nodes.contains("12%")
                && nodes.contains("512Mi")
                && nodes.contains("25%"),
            "the node's usage (metrics API): {nodes}"
        );
    }
    let health = b.text("#health").await.unwrap();
    assert!(health.contains("API server ready"), "{health}");
    let cookies = b.execute("return document.cookie", vec![]).await.unwrap();
    assert!(
        !cookies.as_str().unwrap_or("").contains("cairn_session"),
        "the session cookie is HttpOnly: {cookies}"
    );
    b.screenshot(shots, "overview.png").await.unwrap();

    // Scale web from 1 to 2.
    b.goto(&format!("{base}/ns/default")).await.unwrap();
    let input = b
        .find_wait(Locator::Css("#deployment-table input.replicas"))
        .await
        .unwrap();
    input.clear().await.unwrap();
    input.send_keys("2").await.unwrap();
    b.find(Locator::Css(
        r#"form[action="/ns/default/deployments/web/scale"] button"#,
    ))
    .await
    .unwrap()
    .click()
    .await
    .unwrap();
    let flash = b
        .find_wait(Locator::Id("flash"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        flash.contains("Scaled Deployment web to 2 replicas"),
        "{flash}"
    );
    let replicas = Api::<Deployment>::namespaced(admin.clone(), "default")
        .get("web")
        .await
        .unwrap()
        .spec
        .and_then(|s| s.replicas);
    assert_eq!(
        replicas,
        Some(2),
        "the API server has the new replica count"
    );
    let pods = b.text("#pod-table").await.unwrap();
    assert!(pods.contains("hello") && pods.contains("Pending"), "{pods}");
    b.screenshot(shots, "workloads.png").await.unwrap();

    // A change without the session's CSRF token is refused.
    let status = b
        .execute_async(
            r#"const done = arguments[0];
               fetch("/ns/default/deployments/web/scale", {method: "POST",
                 headers: {"content-type": "application/x-www-form-urlencoded"},
                 body: "csrf=forged&replicas=5"}).then(r => done(r.status));"#,
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(status, json!(403), "a forged change");

    // The Pod's page: its container, and the API server's answer for a log
    // of a Pod that no node runs.
    b.goto(&format!("{base}/ns/default/pods/hello"))
        .await
        .unwrap();
    let containers = b
        .find_wait(Locator::Id("container-table"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        containers.contains("hello") && containers.contains("testpod:latest"),
        "{containers}"
    );
    // No kubelet runs it, so the API server answers the log request with
    // its reason, which the page shows in place of the log.
    if usage {
        let current = b.text("#usage-table").await.unwrap();
        assert!(
            current.contains("50m") && current.contains("20Mi"),
            "the container's usage: {current}"
        );
        let lines = b
            .find_all(Locator::Css("#cpu-chart polyline"))
            .await
            .unwrap();
        assert_eq!(lines.len(), 1, "one CPU line (container hello)");
        let points = lines[0].attr("points").await.unwrap().unwrap_or_default();
        assert_eq!(
            points.split_whitespace().count(),
            60,
            "an hour, a point a minute: {points}"
        );
        assert_eq!(
            b.find_all(Locator::Css("#memory-chart polyline"))
                .await
                .unwrap()
                .len(),
            1
        );
        b.execute("document.getElementById('usage').scrollIntoView()", vec![])
            .await
            .unwrap();
        b.screenshot(shots, "pod-usage.png").await.unwrap();
    }
    let log = b.text("#log").await.unwrap();
    eprintln!("the Pod page's log section: {log:?}");
    assert!(log.trim().len() > "Log".len(), "the log section is empty");
    b.screenshot(shots, "pod.png").await.unwrap();

    // The Deployment's YAML, sent back through the server-side dry run.
    b.goto(&format!("{base}/yaml/deployments/default/web"))
        .await
        .unwrap();
    let yaml = b
        .find_wait(Locator::Id("yaml"))
        .await
        .unwrap()
        .prop("value")
        .await
        .unwrap()
        .unwrap_or_default();
    assert!(
        yaml.contains("kind: Deployment")
            && yaml.contains("replicas: 2")
            && !yaml.contains("managedFields"),
        "{yaml}"
    );
    b.find(Locator::Css(r#"button[value="dry-run"]"#))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let flash = b
        .find_wait(Locator::Id("flash"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(flash.contains("The dry run passed"), "{flash}");

    // Phone width: the workloads page still fits.
    b.set_window_size(390, 844).await.unwrap();
    b.goto(&format!("{base}/ns/default")).await.unwrap();
    let overflow = b
        .execute(
            "return document.documentElement.scrollWidth - window.innerWidth",
            vec![],
        )
        .await
        .unwrap();
    assert!(
        overflow.as_i64().unwrap_or(1) <= 0,
        "the page scrolls sideways at 390 px: {overflow}"
    );
    b.screenshot(shots, "workloads-phone.png").await.unwrap();
    b.set_window_size(1280, 800).await.unwrap();
    b.sign_out().await.unwrap();

    // Read-only ServiceAccount: Scale is disabled; forcing it is refused by
    // the API server, whose message is shown.
    b.sign_in(base, viewer).await.unwrap();
    b.goto(&format!("{base}/ns/default")).await.unwrap();
    let button = b
        .find_wait(Locator::Css(
            r#"form[action="/ns/default/deployments/web/scale"] button"#,
        ))
        .await
        .unwrap();
    assert!(
        button.attr("disabled").await.unwrap().is_some(),
        "Scale is disabled for a read-only user"
    );
    let title = button.attr("title").await.unwrap().unwrap_or_default();
    assert!(title.contains("may not patch deployments/scale"), "{title}");
    b.execute(
        r#"const f = document.querySelector('form[action="/ns/default/deployments/web/scale"]');
           f.querySelector("input.replicas").value = "3"; f.submit();"#,
        vec![],
    )
    .await
    .unwrap();
    let flash = b
        .find_wait(Locator::Css("#flash.error"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        flash.contains("forbidden")
            && flash.contains("system:serviceaccount:default:viewer")
            && flash.contains("deployments/scale"),
        "the API server's refusal: {flash}"
    );
    let replicas = Api::<Deployment>::namespaced(admin.clone(), "default")
        .get("web")
        .await
        .unwrap()
        .spec
        .and_then(|s| s.replicas);
    assert_eq!(replicas, Some(2), "the refused scale changed nothing");
    b.screenshot(shots, "refused.png").await.unwrap();
    if usage {
        // The read-only user may not read metrics nor proxy to Prometheus:
        // the page says so, with the API server's refusals.
        b.goto(&format!("{base}/ns/default/pods/hello"))
            .await
            .unwrap();
        let section = b.text("#usage").await.unwrap();
        assert!(
            section.contains("Current figures unavailable")
                && section.contains("History unavailable")
                && section.contains("forbidden"),
            "{section}"
        );
    }
}
