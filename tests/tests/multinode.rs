//! Issue 13 end to end: a cluster of one control plane and one worker from
//! `cairnctl cluster create`, as a user makes one (the real cairnctl, its
//! own private network between the VMs, apid and the API server reached
//! through forwards on 127.0.0.1).
//!
//! The worker joins with the generated worker config and its node patch
//! only: it gets its apid certificate from the control plane with the join
//! token and holds no CA key (checked through the API). Both nodes go
//! Ready. A Pod pinned to the worker resolves cluster DNS and reaches a Pod
//! on the control plane through a ClusterIP Service and by its Pod IP, and
//! `kubectl logs` of that Pod works (the API server reaches the worker's
//! kubelet). A wrong join token is refused by the control plane's join
//! port and nothing is issued. `cluster show` lists both nodes running and
//! `cluster destroy` leaves nothing behind.

mod newcomer;

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_tests::cairnctl;
use cairn_tests::kube::{Kubectl, TESTPOD_IMAGE};
use cairn_tests::timeline;
use cairn_tests::Images;
use provision::cluster::{ClusterState, Layout, Role};

const NAME: &str = "multinode";
/// The add-ons beyond DNS off (the Kubernetes VM test covers them): two
/// VMs under TCG on a 2-core host cannot carry them beside a control
/// plane; its API server starved and its liveness probe restarted it, over
/// and over.
const LEAN: &str = "{cluster: {addons: {prometheus: {enabled: false}, logging: {enabled: false}, \
    dashboard: {enabled: false}, metricsServer: {enabled: false}}}}";
/// How long one in-Pod check may keep failing (DNS and Service rules
/// arrive shortly after the Pods run).
const CHECK: Duration = Duration::from_secs(300);

fn say(started: Instant, m: &str) {
    eprintln!("[{:>5.0}s] {m}", started.elapsed().as_secs_f64());
}

/// `cairnctl` with this test's cache directory.
fn ctl(cache: &Path) -> Command {
    let mut c = Command::new(cairnctl::path());
    c.env("CAIRN_CACHE", cache).env_remove("CAIRNCONFIG");
    c
}

/// Destroys the cluster when the test ends, passed or not.
struct Destroy<'a>(&'a Path);

impl Drop for Destroy<'_> {
    fn drop(&mut self) {
        let out = ctl(self.0)
            .args(["cluster", "destroy", "--name", NAME])
            .output();
        if let Ok(out) = out {
            eprintln!(
                "cluster destroy: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

/// A Pod of the test image pinned to `node`, serving on `port`; it
/// tolerates every taint (the control plane takes no ordinary Pods).
fn pinned_pod(name: &str, node: &str, port: u16) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
  labels: {{app: {name}}}
spec:
  nodeSelector: {{kubernetes.io/hostname: {node}}}
  tolerations: [{{operator: Exists}}]
  containers:
  - name: {name}
    image: {TESTPOD_IMAGE}
    imagePullPolicy: Never
    args: [serve, --port, "{port}"]
    env:
    - name: POD_NAME
      valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}
    ports: [{{containerPort: {port}}}]
"#
    )
}

fn workload() -> String {
    format!(
        "{}---\n{}---\napiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  selector: {{app: web}}\n  ports: [{{port: 80, targetPort: 8080}}]\n",
        pinned_pod("web", "cp-1", 8080),
        pinned_pod("client", "worker-1", 8081)
    )
}

// Not part of `make test` yet: on a 2-core host under TCG the control
// plane's API server stops answering when the worker joins (the control
// plane's VM alone uses ~1.8 of the 2 CPUs then; the kubelet ~0.4), its
// liveness probe restarts it, and the test fails or takes past 20 minutes.
// `make vm-test-multinode` runs it.
#[test]
#[ignore = "two Kubernetes VMs do not fit a 2-core TCG host yet; make vm-test-multinode runs it"]
fn a_worker_joins_without_ca_keys_and_its_pods_reach_the_control_plane() {
    let started = Instant::now();
    let images = Images::locate();
    images.raw().unwrap_or_else(|e| panic!("{e}"));
    let cache = tempfile::Builder::new()
        .prefix("cairn-mn-")
        .tempdir()
        .unwrap();
    let layout = Layout::new(cache.path().join("clusters").join(NAME));
    let _destroy = Destroy(cache.path());

    let status = ctl(cache.path())
        .args([
            "cluster",
            "create",
            "--controlplanes",
            "1",
            "--workers",
            "1",
        ])
        .args(["--config-patch", LEAN])
        .args([
            "--name",
            NAME,
            "--no-merge",
            "--timeout",
            "30m",
            "--image-dir",
        ])
        .arg(&images.dir)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .expect("running cairnctl cluster create");
    let printed = String::from_utf8_lossy(&status.stdout).into_owned();
    eprintln!("{printed}");
    let status = status.status;
    let consoles = || {
        ["cp-1", "worker-1"]
            .iter()
            .map(|n| {
                let text = provision::launch::console(&layout, n);
                let lines: Vec<&str> = text
                    .lines()
                    .filter(|l| !l.contains("cairn: status:"))
                    .collect();
                format!(
                    "--- {n} ---\n{}",
                    lines[lines.len().saturating_sub(40)..].join("\n")
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert!(
        status.success(),
        "cluster create failed ({status})\n{}",
        consoles()
    );
    say(started, "cluster create: done");
    run_next_commands_as_printed(&printed);
    say(
        started,
        "the commands cluster create printed run as printed",
    );
    let state: ClusterState = layout.load().unwrap();
    let cp = state
        .nodes
        .iter()
        .find(|n| n.role == Role::Controlplane)
        .unwrap();
    let worker = state.nodes.iter().find(|n| n.role == Role::Worker).unwrap();
    let kubectl = Kubectl::new(&images.dir, &layout.kubeconfig());

    // cluster show: both nodes, running, with their addresses.
    let out = ctl(cache.path())
        .args(["cluster", "show", "--name", NAME, "-o", "json"])
        .output()
        .unwrap();
    let shown: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "cluster show -o json: {e}: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let rows = shown.as_array().expect("an array of nodes");
    assert_eq!(rows.len(), 2, "{shown}");
    for (row, ip) in rows.iter().zip(["10.5.0.2", "10.5.0.10"]) {
        assert_eq!(row["ip"], ip, "{shown}");
        assert_eq!(row["running"], true, "{shown}");
    }

    // Both nodes Ready, each with its private address as InternalIP.
    let nodes = kubectl.json(&["get", "nodes"]).unwrap();
    for (name, ip) in [("cp-1", "10.5.0.2"), ("worker-1", "10.5.0.10")] {
        let node = nodes["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no Node {name}: {nodes}"));
        let ready = node["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True");
        assert!(ready, "{name} not Ready: {}", node["status"]["conditions"]);
        let internal = node["status"]["addresses"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["type"] == "InternalIP")
            .map(|a| a["address"].clone());
        assert_eq!(
            internal,
            Some(ip.into()),
            "{name}: {}",
            node["status"]["addresses"]
        );
    }
    say(started, "cp-1 and worker-1 Ready on 10.5.0.0/24");

    // cairnctl straight to one node's forwarded apid.
    let on_node = |node: &provision::cluster::NodeState, args: &[&str]| {
        let addr = format!("127.0.0.1:{}", node.apid_port);
        let cfg = layout.cairnconfig();
        let head = [
            "--cairnconfig",
            cfg.to_str().unwrap(),
            "-e",
            &addr,
            "-n",
            &addr,
        ];
        cairnctl::run_ok(&[&head[..], args].concat())
    };

    // Each node's bring-up timeline: every phase of its kind, in order.
    for node in [cp, worker] {
        let control_plane = node.role == Role::Controlplane;
        let deadline = Instant::now() + Duration::from_secs(180);
        let t = loop {
            let json = on_node(node, &["events", "-o", "json"]);
            let t = timeline::parse(&json).unwrap_or_else(|e| panic!("{e}"));
            match timeline::check(&t, control_plane) {
                Ok(()) => break t,
                Err(e) if Instant::now() >= deadline => {
                    panic!("{}'s bring-up timeline: {e}", node.name)
                }
                Err(_) => std::thread::sleep(Duration::from_secs(5)),
            }
        };
        say(
            started,
            &format!(
                "{}'s bring-up timeline, every phase in order:\n{}",
                node.name,
                timeline::render(&t)
            ),
        );
    }

    // The worker holds no CA key; the control plane does (the check can fail).
    let key_of = |node: &provision::cluster::NodeState| {
        let yaml = on_node(node, &["get", "machineconfig", "-o", "json"]);
        let v: serde_json::Value = serde_json::from_str(&yaml).unwrap();
        let spec = v[0]["spec"]
            .as_str()
            .unwrap_or_else(|| panic!("no spec: {v}"))
            .to_string();
        let config = serde_yaml_from(&spec);
        (
            config["machine"]["type"].clone(),
            config["machine"]["ca"].get("key").is_some(),
            config["cluster"]["ca"].get("key").is_some(),
            config["machine"]["ca"].get("crt").is_some(),
        )
    };
    let (kind, os_key, k8s_key, os_crt) = key_of(worker);
    assert_eq!(kind, "worker");
    assert!(os_crt, "the worker's config has the OS CA certificate");
    assert!(!os_key && !k8s_key, "the worker's config holds a CA key");
    let (kind, os_key, k8s_key, _) = key_of(cp);
    assert_eq!(kind, "controlplane");
    assert!(
        os_key && k8s_key,
        "the control plane's config shows its CA keys"
    );
    say(
        started,
        "the worker's running config has no CA key (the control plane's has)",
    );

    // A wrong join token is refused and nothing is issued.
    wrong_token_is_refused(&layout, cp.join_port.expect("a join port"), &state);
    let refused = provision::launch::console(&layout, "cp-1")
        .lines()
        .any(|l| l.contains("join: refused a certificate request"));
    assert!(
        refused,
        "the control plane's console logs the refusal\n{}",
        consoles()
    );
    say(
        started,
        "a wrong join token: PermissionDenied, logged on the control plane",
    );

    // Pods across nodes.
    kubectl.apply(&workload()).unwrap();
    let mut progress = |m: &str| say(started, m);
    kubectl
        .wait_pods_ready(
            "default",
            &["web", "client"],
            Duration::from_secs(900),
            &mut progress,
        )
        .unwrap_or_else(|e| panic!("{e:#}\n{}", consoles()));
    let pods = kubectl.json(&["get", "pods", "-o", "wide"]).unwrap();
    let pod = |name: &str| {
        pods["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["metadata"]["name"] == name)
            .cloned()
            .unwrap()
    };
    assert_eq!(pod("client")["spec"]["nodeName"], "worker-1");
    assert_eq!(pod("web")["spec"]["nodeName"], "cp-1");
    let web_ip = pod("web")["status"]["podIP"].as_str().unwrap().to_string();

    let resolved = kubectl
        .exec_until_ok(
            "client",
            &["resolve", "kubernetes.default.svc.cluster.local"],
            CHECK,
        )
        .unwrap_or_else(|e| panic!("DNS from the worker: {e:#}"));
    assert!(
        resolved.lines().any(|l| l.trim() == "10.96.0.1"),
        "kubernetes.default resolves to {resolved:?}"
    );
    say(
        started,
        "DNS from a Pod on the worker: kubernetes.default is 10.96.0.1",
    );
    let via_service = kubectl
        .exec_until_ok(
            "client",
            &["get", "http://web.default.svc.cluster.local/", "--body"],
            CHECK,
        )
        .unwrap_or_else(|e| panic!("the web Pod through its Service: {e:#}"));
    assert!(
        via_service.starts_with("200") && via_service.contains("web"),
        "GET web through its ClusterIP Service: {via_service}"
    );
    say(
        started,
        "worker Pod -> control-plane Pod through a ClusterIP Service: 200",
    );
    let direct = kubectl
        .exec_until_ok(
            "client",
            &["get", &format!("http://{web_ip}:8080/"), "--body"],
            CHECK,
        )
        .unwrap_or_else(|e| panic!("the web Pod by its Pod IP {web_ip}: {e:#}"));
    assert!(
        direct.starts_with("200") && direct.contains("web"),
        "{direct}"
    );
    say(
        started,
        &format!("worker Pod -> control-plane Pod at {web_ip}: 200"),
    );

    let logs = kubectl
        .ok(&["logs", "client"])
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert!(
        logs.contains("serving on port 8081"),
        "kubectl logs client: {logs}"
    );
    say(started, "kubectl logs of the worker's Pod");

    drop(_destroy);
    assert!(
        !layout.dir.exists(),
        "destroy left {}",
        layout.dir.display()
    );
    assert!(
        provision::launch::qemu_pid(&layout, "cp-1").is_none()
            && provision::launch::qemu_pid(&layout, "worker-1").is_none()
    );
    say(started, "destroyed");
}

/// A newcomer's path: every command under "next:" in what `cluster
/// create` printed runs as printed (`newcomer::run`: split as a shell
/// splits it, in a fresh home) and succeeds, except `cluster destroy`,
/// which the test runs at its end. `kubectl get nodes` lists both nodes
/// and `services` lists the node's services.
fn run_next_commands_as_printed(printed: &str) {
    let next: Vec<&str> = newcomer::next_lines(printed)
        .into_iter()
        .filter(|l| !l.contains("cluster destroy"))
        .collect();
    assert!(
        next.len() >= 4,
        "cluster create printed no next commands:\n{printed}"
    );
    let home = tempfile::tempdir().unwrap();
    for line in next {
        let out = newcomer::run(line, home.path());
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{line}: {}\n{stdout}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        if line.contains(" get nodes") {
            assert!(
                stdout.contains("cp-1") && stdout.contains("worker-1"),
                "{line}:\n{stdout}"
            );
        }
        if newcomer::parse(line).argv.last().map(String::as_str) == Some("services") {
            assert!(stdout.contains("kubelet"), "{line}:\n{stdout}");
        }
        eprintln!("$ {line}\n{stdout}");
    }
}

/// The config's documents (MachineConfig, ClusterConfig) as one object.
fn serde_yaml_from(text: &str) -> serde_json::Value {
    use serde::Deserialize as _;
    let mut merged = serde_json::Map::new();
    for doc in serde_yaml::Deserializer::from_str(text) {
        let value = serde_json::Value::deserialize(doc)
            .unwrap_or_else(|e| panic!("the config is not YAML: {e}\n{text}"));
        if let serde_json::Value::Object(fields) = value {
            merged.extend(fields);
        }
    }
    serde_json::Value::Object(merged)
}

/// Asks the control plane's join port (forwarded to the host) for a
/// certificate with a wrong token: PermissionDenied, no certificate.
fn wrong_token_is_refused(layout: &Layout, port: u16, state: &ClusterState) {
    let client_config = config::client::ClientConfig::load(&layout.cairnconfig()).unwrap();
    let (_, context) = client_config.context(None).unwrap();
    let ca = rustls::pki_types::CertificateDer::from(context.ca.der().to_vec());
    let (_, csr) = config::join::server_csr(
        "intruder",
        &[config::types::SubjectAltName::Ip(
            "127.0.0.1".parse().unwrap(),
        )],
    )
    .unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let result = runtime.block_on(async move {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca).unwrap();
        let mut tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        tls.alpn_protocols = vec![b"h2".to_vec()];
        let tls = tokio_rustls::TlsConnector::from(Arc::new(tls));
        let connector = tower::service_fn(move |_: tonic::transport::Uri| {
            let tls = tls.clone();
            async move {
                let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
                let name =
                    rustls::pki_types::ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into());
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tls.connect(name, tcp).await?))
            }
        });
        let channel = tonic::transport::Endpoint::from_static("http://127.0.0.1")
            .timeout(Duration::from_secs(30))
            .connect_with_connector(connector)
            .await
            .expect("TLS to the join port, verified with the OS CA");
        api::security::security_client::SecurityClient::new(channel)
            .certificate(api::security::CertificateRequest {
                token: "abcdef.0123456789abcdef".into(),
                csr,
            })
            .await
    });
    match result {
        Ok(r) => panic!(
            "a wrong token got a certificate from {}: {:?}",
            state.endpoint,
            r.into_inner().crt
        ),
        Err(status) => assert_eq!(
            status.code(),
            tonic::Code::PermissionDenied,
            "a wrong token: {status}"
        ),
    }
}
