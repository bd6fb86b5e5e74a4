//! The cluster add-ons on a running cluster, as a user meets them (issues
//! 14 and 15): `kubectl top` through the metrics server, a CPU-bound Pod
//! scaled out by a HorizontalPodAutoscaler and seen in Prometheus, a Pod's
//! lines found in the cluster log store (also across a restart of its
//! collector: once each, none twice), the nodes' own service logs there,
//! and the Web UI in a real browser through `cairnctl dashboard --web`.
//!
//! The Kubernetes VM test runs these on the cluster it has already brought
//! up; each check returns what it measured for the test's progress lines.

use std::collections::BTreeMap;
use std::io::BufRead as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _};
use fantoccini::Locator;
use serde_json::Value;

use crate::kube::{eventually, Kubectl, Node, TESTPOD_IMAGE};
use webui::browser::Browser;

/// The add-on Pods every Cairn cluster runs with its default config, by
/// name prefix in kube-system.
pub const ADDON_PODS: &[&str] = &[
    "cairn-metrics-server-",
    "cairn-prometheus-",
    "cairn-logstore-",
    "cairn-logcollector-",
    "cairn-webui-",
];

/// The store's query API through the API server's service proxy (the
/// path `cairnctl logs --cluster` builds from the same constants).
fn store_query() -> String {
    use config::constants::logging::{NAMESPACE, SERVICE};
    format!("/api/v1/namespaces/{NAMESPACE}/services/{SERVICE}:http/proxy/api/v1/query")
}
/// Prometheus's query API through the API server's service proxy.
const PROMETHEUS: &str =
    "/api/v1/namespaces/kube-system/services/cairn-prometheus:http/proxy/api/v1/query";

/// A word no other log line has: the ticker's lines are `<marker> N`.
pub fn marker() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!("addonlog{}x{nanos:09}", std::process::id())
}

/// The test's workloads in `default`: `ticker` prints `<marker> N` every
/// second; Deployment `hello` (1 replica) is for the Web UI to scale.
pub fn workload(marker: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: ticker
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: ticker
    image: {TESTPOD_IMAGE}
    imagePullPolicy: Never
    args: [count, {marker}, --every, 1s]
    resources:
      requests: {{cpu: 10m, memory: 16Mi}}
      limits: {{cpu: 50m, memory: 32Mi}}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: hello
spec:
  replicas: 1
  selector:
    matchLabels: {{app: hello}}
  template:
    metadata:
      labels: {{app: hello}}
    spec:
      terminationGracePeriodSeconds: 2
      containers:
      - name: hello
        image: {TESTPOD_IMAGE}
        imagePullPolicy: Never
        args: [serve, --port, "8080"]
        resources:
          requests: {{cpu: 10m, memory: 16Mi}}
          limits: {{cpu: 100m, memory: 32Mi}}
"#
    )
}

/// Deployment `burn` keeps a CPU busy within a small limit (50m, request
/// 20m: two emulated CPUs running a control plane and the add-ons have
/// little to spare; at 200m the API server stopped answering) under a
/// HorizontalPodAutoscaler (50 % of the request, 1 to 2 replicas), so it
/// must scale out.
pub fn burner() -> String {
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: burn
spec:
  replicas: 1
  selector:
    matchLabels: {{app: burn}}
  template:
    metadata:
      labels: {{app: burn}}
    spec:
      terminationGracePeriodSeconds: 2
      containers:
      - name: burn
        image: {TESTPOD_IMAGE}
        imagePullPolicy: Never
        args: [burn]
        resources:
          requests: {{cpu: 20m, memory: 16Mi}}
          limits: {{cpu: 50m, memory: 32Mi}}
---
apiVersion: autoscaling/v1
kind: HorizontalPodAutoscaler
metadata:
  name: burn
spec:
  scaleTargetRef: {{apiVersion: apps/v1, kind: Deployment, name: burn}}
  minReplicas: 1
  maxReplicas: 2
  targetCPUUtilizationPercentage: 50
"#
    )
}

/// Millicores of a `kubectl top` CPU cell (`250m`, or `1` core).
fn millicores(cell: &str) -> Option<u64> {
    match cell.strip_suffix('m') {
        Some(m) => m.parse().ok(),
        None => cell.parse::<u64>().ok().map(|c| c * 1000),
    }
}

/// `kubectl top nodes` lists `node` with figures; `kubectl top pods -A`
/// lists the control plane's Pods with figures; a `burn` Pod uses at least
/// 20m (its limit is 50m). Returns the node's and the burning Pod's lines.
pub fn resource_metrics(kubectl: &Kubectl, node: &str) -> anyhow::Result<String> {
    let nodes = eventually(
        "kubectl top nodes",
        Duration::from_secs(300),
        Duration::from_secs(10),
        || {
            let out = kubectl.ok(&["top", "nodes", "--no-headers"])?;
            let line = out
                .lines()
                .find(|l| l.split_whitespace().next() == Some(node))
                .with_context(|| format!("{node} is not in:\n{out}"))?;
            let cells: Vec<&str> = line.split_whitespace().collect();
            // A node that runs a control plane is never idle: zero is a
            // broken figure (cAdvisor on cgroup v2's root gave 0m 0% 0Mi).
            ensure!(
                cells.len() == 5
                    && millicores(cells[1]).is_some_and(|m| m > 0)
                    && cells[2].ends_with('%')
                    && cells[3].ends_with("Mi")
                    && cells[3] != "0Mi",
                "no figures: {line}"
            );
            Ok(line.to_string())
        },
    )?;
    let burn = eventually(
        "kubectl top pods -A",
        Duration::from_secs(300),
        Duration::from_secs(10),
        || {
            let out = kubectl.ok(&["top", "pods", "-A", "--no-headers"])?;
            ensure!(
                out.lines().any(|l| l.contains("kube-apiserver-")),
                "the API server's Pod is not listed:\n{out}"
            );
            let line = out
                .lines()
                .find(|l| {
                    l.split_whitespace()
                        .nth(1)
                        .is_some_and(|p| p.starts_with("burn-"))
                })
                .with_context(|| format!("no burn Pod in:\n{out}"))?;
            let cpu = line
                .split_whitespace()
                .nth(2)
                .and_then(millicores)
                .with_context(|| format!("no CPU figure: {line}"))?;
            ensure!(cpu >= 20, "the burning Pod uses {cpu}m: {line}");
            Ok(line.to_string())
        },
    )?;
    Ok(format!(
        "{nodes} | {}",
        burn.split_whitespace().collect::<Vec<_>>().join(" ")
    ))
}

/// The HorizontalPodAutoscaler of `burn` scales it out to 2 on its CPU
/// figures from the metrics API. Returns its status line.
pub fn autoscaled(kubectl: &Kubectl) -> anyhow::Result<String> {
    eventually(
        "HorizontalPodAutoscaler burn scaling out",
        Duration::from_secs(300),
        Duration::from_secs(10),
        || {
            let h = kubectl.json(&["get", "hpa", "burn"])?;
            let s = &h["status"];
            let utilisation = s["currentCPUUtilizationPercentage"].as_i64();
            ensure!(
                utilisation.is_some_and(|u| u > 50) && s["desiredReplicas"] == 2,
                "status: {s}"
            );
            Ok(format!(
                "CPU {}% of the request, {} -> {} replicas",
                utilisation.unwrap_or_default(),
                s["currentReplicas"],
                s["desiredReplicas"]
            ))
        },
    )
}

/// `path?pairs`, each value percent-encoded.
fn with_query(path: &str, pairs: &[(&str, &str)]) -> String {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        q.append_pair(k, v);
    }
    // form encoding writes spaces as '+', which Go's and Rust's query
    // parsers read as spaces; the API server passes the query on as is.
    format!("{path}?{}", q.finish())
}

/// The CPU the `burn` Pods used over the last two minutes, in cores, by a
/// PromQL query of the kubelet's cAdvisor metrics that Prometheus scraped.
pub fn prometheus_cpu(kubectl: &Kubectl) -> anyhow::Result<f64> {
    let query = r#"sum(rate(container_cpu_usage_seconds_total{namespace="default",pod=~"burn-.*",container="burn"}[2m]))"#;
    eventually(
        "Prometheus: the burning Pod's CPU",
        Duration::from_secs(300),
        Duration::from_secs(10),
        || {
            let raw =
                kubectl.ok(&["get", "--raw", &with_query(PROMETHEUS, &[("query", query)])])?;
            let v: Value = serde_json::from_str(&raw)?;
            ensure!(v["status"] == "success", "{raw}");
            let cores = v["data"]["result"][0]["value"][1]
                .as_str()
                .and_then(|c| c.parse::<f64>().ok())
                .with_context(|| format!("no sample yet: {raw}"))?;
            ensure!(cores >= 0.02, "{cores} cores: {raw}");
            Ok(cores)
        },
    )
}

/// Prometheus scrapes every job of its config: the kubelet's cAdvisor and
/// resource metrics, the API server, etcd and machined (`up` is 1 for each).
/// Returns the jobs seen up.
pub fn prometheus_targets_up(kubectl: &Kubectl) -> anyhow::Result<Vec<String>> {
    const JOBS: [&str; 6] = [
        "prometheus",
        "kubelet-cadvisor",
        "kubelet-resource",
        "apiserver",
        "etcd",
        "machined",
    ];
    eventually(
        "Prometheus: every target up",
        Duration::from_secs(180),
        Duration::from_secs(10),
        || {
            let raw = kubectl.ok(&["get", "--raw", &with_query(PROMETHEUS, &[("query", "up")])])?;
            let v: Value = serde_json::from_str(&raw)?;
            let up: Vec<String> = v["data"]["result"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|r| r["value"][1] == "1")
                .filter_map(|r| r["metric"]["job"].as_str().map(str::to_string))
                .collect();
            let down: Vec<&&str> = JOBS
                .iter()
                .filter(|j| !up.iter().any(|u| u == **j))
                .collect();
            ensure!(down.is_empty(), "not up: {down:?}; {raw}");
            Ok(up)
        },
    )
}

/// Every record of the log store matching `pairs`, newest first (all pages).
pub fn store_records(kubectl: &Kubectl, pairs: &[(&str, &str)]) -> anyhow::Result<Vec<Value>> {
    let mut records = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut p = pairs.to_vec();
        p.push(("limit", "5000"));
        if let Some(c) = &cursor {
            p.push(("cursor", c));
        }
        let raw = kubectl.ok(&["get", "--raw", &with_query(&store_query(), &p)])?;
        let v: Value =
            serde_json::from_str(&raw).with_context(|| format!("the store said: {raw}"))?;
        records.extend(v["records"].as_array().cloned().unwrap_or_default());
        match v["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return Ok(records),
        }
    }
}

/// The number of the ticker's newest line, from the kubelet (not the store).
fn newest_tick(kubectl: &Kubectl, marker: &str) -> anyhow::Result<u64> {
    // `--tail=1` now and then answers two lines (the kubelet finds where
    // the last line starts, then reads to the end, by which time the
    // ticker may have written the next): the last one counts.
    let out = kubectl.ok(&["logs", "ticker", "--tail=1"])?;
    let last = out
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    last.trim()
        .strip_prefix(marker)
        .and_then(|n| n.trim().parse().ok())
        .with_context(|| format!("the ticker's last line: {out:?}"))
}

/// Waits until the store has the ticker's line `n`; returns how long.
fn wait_tick_stored(
    kubectl: &Kubectl,
    marker: &str,
    n: u64,
    limit: Duration,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let phrase = format!("\"{marker} {n}\"");
    eventually(
        &format!("line {n} of the ticker in the log store"),
        limit,
        Duration::from_secs(1),
        || {
            let found = store_records(kubectl, &[("q", &phrase), ("pod", "ticker")])?;
            ensure!(!found.is_empty(), "not found yet");
            Ok(started.elapsed())
        },
    )
}

/// A line the ticker prints is found by the store's query API within 30 s.
pub fn line_found_within_30s(kubectl: &Kubectl, marker: &str) -> anyhow::Result<Duration> {
    let n = eventually(
        "the ticker's output",
        Duration::from_secs(60),
        Duration::from_secs(2),
        || newest_tick(kubectl, marker),
    )?;
    wait_tick_stored(kubectl, marker, n, Duration::from_secs(30))
}

/// `cairnctl logs --cluster` finds the ticker's lines as a user searches
/// them (the host's kubeconfig, since the node's names the guest address);
/// returns the newest line it printed.
pub fn cairnctl_search_finds(node: &Node, marker: &str) -> anyhow::Result<String> {
    let kubeconfig = node.kubeconfig.to_str().context("kubeconfig path")?;
    let phrase = format!("\"{marker}\"");
    let out = node.ctl(&[
        "logs",
        "--cluster",
        &phrase,
        "--pod",
        "ticker",
        "--tail",
        "3",
        "--kubeconfig",
        kubeconfig,
    ])?;
    let lines: Vec<&str> = out.lines().filter(|l| l.contains(marker)).collect();
    ensure!(
        (1..=3).contains(&lines.len()),
        "expected 1 to 3 of the ticker's lines, got:\n{out}"
    );
    Ok(lines.last().unwrap_or(&"").trim().to_string())
}

/// The numbers of the ticker's lines in the store, each with its count.
fn stored_ticks(kubectl: &Kubectl, marker: &str) -> anyhow::Result<BTreeMap<u64, usize>> {
    let mut ticks = BTreeMap::new();
    for r in store_records(
        kubectl,
        &[("q", marker), ("pod", "ticker"), ("namespace", "default")],
    )? {
        let message = r["message"].as_str().unwrap_or_default();
        let n: u64 = message
            .strip_prefix(marker)
            .and_then(|n| n.trim().parse().ok())
            .with_context(|| format!("a record that is no tick: {r}"))?;
        *ticks.entry(n).or_insert(0) += 1;
    }
    Ok(ticks)
}

/// Deletes the node's log collector Pod; once its replacement runs, every
/// line the ticker printed so far (those from before, during and after the
/// gap) is in the store exactly once. Returns what it saw.
pub fn collector_restart_loses_nothing(kubectl: &Kubectl, marker: &str) -> anyhow::Result<String> {
    let collectors = |k: &Kubectl| -> anyhow::Result<Vec<(String, bool)>> {
        let v = k.json(&[
            "-n",
            "kube-system",
            "get",
            "pods",
            "-l",
            "k8s-app=cairn-logcollector",
        ])?;
        Ok(v["items"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| {
                let ready = p["status"]["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True");
                (
                    p["metadata"]["name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                    ready,
                )
            })
            .collect())
    };
    let old = collectors(kubectl)?;
    let [(old_name, true)] = old.as_slice() else {
        bail!("one Ready collector expected: {old:?}");
    };
    let before = newest_tick(kubectl, marker)?;
    kubectl.ok(&[
        "-n",
        "kube-system",
        "delete",
        "pod",
        old_name,
        "--wait=false",
    ])?;
    let new_name = eventually(
        "a new log collector Ready",
        Duration::from_secs(300),
        Duration::from_secs(3),
        || {
            let now = collectors(kubectl)?;
            match now.as_slice() {
                [(name, true)] if name != old_name => Ok(name.clone()),
                other => bail!("collectors: {other:?}"),
            }
        },
    )?;
    let after = newest_tick(kubectl, marker)?;
    ensure!(after > before, "the ticker stopped: {before} then {after}");
    wait_tick_stored(kubectl, marker, after, Duration::from_secs(120))?;
    let ticks = stored_ticks(kubectl, marker)?;
    let twice: Vec<_> = ticks.iter().filter(|(_, c)| **c > 1).collect();
    ensure!(
        twice.is_empty(),
        "lines stored more than once (line, times): {twice:?}"
    );
    let missing: Vec<u64> = (1..=after).filter(|n| !ticks.contains_key(n)).collect();
    ensure!(
        missing.is_empty(),
        "lines 1..={after} printed, these are not in the store: {missing:?}"
    );
    Ok(format!(
        "collector {old_name} -> {new_name}: lines 1..={after} stored once each \
         ({} printed while it was replaced)",
        after - before
    ))
}

/// A line of machined's own log (from the node's ring, `cairnctl logs`)
/// is in the store: the node ships its service logs there. Returns it.
pub fn node_log_in_store(kubectl: &Kubectl, node: &Node) -> anyhow::Result<String> {
    eventually(
        "a machined log line in the store",
        Duration::from_secs(120),
        Duration::from_secs(5),
        || {
            let ring = node.ctl(&["logs", "machined"])?;
            let stored = store_records(kubectl, &[("service", "machined"), ("since", "1h")])?;
            let found = stored
                .iter()
                .filter_map(|r| r["message"].as_str())
                .find(|m| m.len() > 20 && ring.contains(m))
                .with_context(|| {
                    format!(
                        "none of {} machined records in the store is in the node's log",
                        stored.len()
                    )
                })?;
            Ok(found.to_string())
        },
    )
}

/// `cairnctl dashboard --web` running: the Web UI on 127.0.0.1:<port>.
struct WebForward {
    child: Child,
    url: String,
}

impl Drop for WebForward {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl WebForward {
    /// Starts it as a user does and reads the address it prints.
    fn start(node: &Node) -> anyhow::Result<WebForward> {
        let mut child = Command::new(crate::cairnctl::path())
            .arg("--cairnconfig")
            .arg(&node.cairnconfig)
            .args(["dashboard", "--web", "--port", "0", "--kubeconfig"])
            // The node's kubeconfig names the guest's address; the host
            // reaches the API server through the forwarded port.
            .arg(&node.kubeconfig)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting cairnctl dashboard --web")?;
        let out = child.stdout.take().context("stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut forward = WebForward {
            child,
            url: String::new(),
        };
        let by = Instant::now() + Duration::from_secs(120);
        while forward.url.is_empty() {
            let left = by.saturating_duration_since(Instant::now());
            let line = rx
                .recv_timeout(left)
                .context("cairnctl dashboard --web printed no address")?;
            if let Some(at) = line.find("https://127.0.0.1:") {
                let url = line[at..].split_whitespace().next().unwrap_or_default();
                forward.url = url.trim_end_matches('/').to_string();
            }
        }
        Ok(forward)
    }
}

/// A ServiceAccount's token (Kubernetes 1.20 keeps it in a Secret of the
/// account), as `cairnctl dashboard --web` tells the user to get it.
fn account_token(kubectl: &Kubectl, name: &str, role: &str) -> anyhow::Result<String> {
    kubectl.apply(&format!(
        r#"apiVersion: v1
kind: ServiceAccount
metadata: {{name: {name}, namespace: kube-system}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {{name: {name}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: {role}}}
subjects: [{{kind: ServiceAccount, name: {name}, namespace: kube-system}}]
"#
    ))?;
    eventually(
        &format!("the token of ServiceAccount {name}"),
        Duration::from_secs(120),
        Duration::from_secs(3),
        || {
            let sa = kubectl.json(&["-n", "kube-system", "get", "serviceaccount", name])?;
            let secret = sa["secrets"][0]["name"].as_str().context("no Secret yet")?;
            let s = kubectl.json(&["-n", "kube-system", "get", "secret", secret])?;
            let token = s["data"]["token"].as_str().context("no token yet")?;
            let token = base64_decode(token)?;
            ensure!(!token.is_empty(), "empty token");
            Ok(token)
        },
    )
}

fn base64_decode(s: &str) -> anyhow::Result<String> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD.decode(s.trim())?;
    Ok(String::from_utf8(bytes)?)
}

/// The rows of the table `css` on the current page, as text.
async fn rows(b: &Browser, css: &str) -> anyhow::Result<Vec<String>> {
    let v = b
        .execute(
            &format!(
                "return Array.from(document.querySelectorAll('{css} tbody tr')).map(r => r.innerText)"
            ),
            vec![],
        )
        .await?;
    Ok(v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r.as_str().map(str::to_string))
        .collect())
}

/// The Web UI in a real browser, through `cairnctl dashboard --web`: an
/// admin sees `node` Ready, scales `hello` from 1 to 2 and sees two Pods
/// Running, finds the ticker's lines in its live log and in the log store's
/// search; a read-only user finds Scale disabled and a forced scale refused
/// with the API server's message. Screenshots go to `shots`.
pub async fn web_ui(
    kubectl: &Kubectl,
    node: &Node,
    node_name: &str,
    marker: &str,
    dir: &Path,
    shots: &Path,
    say: &mut dyn FnMut(&str),
) -> anyhow::Result<()> {
    let admin = account_token(kubectl, "cairn-test-admin", "cluster-admin")?;
    let viewer = account_token(kubectl, "cairn-test-viewer", "view")?;
    let web = WebForward::start(node)?;
    let base = web.url.clone();
    say(&format!("Web UI forwarded at {base}"));
    std::fs::create_dir_all(shots)?;
    let b = Browser::start(dir).await?;
    let result = drive(&b, &base, &admin, &viewer, node_name, marker, shots, say).await;
    if result.is_err() {
        let _ = b.screenshot(shots, "failure.png").await;
    }
    b.close().await;
    drop(web);
    result
}

#[allow(clippy::too_many_arguments)]
async fn drive(
    b: &Browser,
    base: &str,
    admin: &str,
    viewer: &str,
    node_name: &str,
    marker: &str,
    shots: &Path,
    say: &mut dyn FnMut(&str),
) -> anyhow::Result<()> {
    b.sign_in(base, admin).await?;
    let nodes = b.text("#node-table").await?;
    ensure!(
        nodes
            .lines()
            .any(|l| l.contains(node_name) && l.contains("Ready")),
        "the overview's node table: {nodes}"
    );
    b.screenshot(shots, "overview.png").await?;
    say("Web UI: signed in as admin, the node is Ready on the overview");

    // Scale hello from 1 to 2 and watch the second Pod come up.
    let scale_form = r#"form[action="/ns/default/deployments/hello/scale"]"#;
    b.goto(&format!("{base}/ns/default")).await?;
    let input = b
        .find_wait(Locator::Css(&format!("{scale_form} input.replicas")))
        .await?;
    input.clear().await?;
    input.send_keys("2").await?;
    b.find(Locator::Css(&format!("{scale_form} button")))
        .await?
        .click()
        .await?;
    let flash = b.text("#flash").await?;
    ensure!(
        flash.contains("Scaled Deployment hello to 2 replicas"),
        "{flash}"
    );
    let by = Instant::now() + Duration::from_secs(300);
    loop {
        b.goto(&format!("{base}/ns/default")).await?;
        let running = rows(b, "#pod-table")
            .await?
            .into_iter()
            .filter(|r| r.starts_with("hello-") && r.contains("Running"))
            .count();
        if running == 2 {
            break;
        }
        ensure!(
            Instant::now() < by,
            "{running} hello Pods Running after 300 s:\n{}",
            b.page().await
        );
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    b.screenshot(shots, "workloads.png").await?;
    say("Web UI: scaled hello to 2, both Pods Running");

    // The ticker's page: its live log, and a search of its past lines.
    b.goto(&format!("{base}/ns/default/pods/ticker")).await?;
    let tail = b.text("#log-tail").await?;
    ensure!(tail.contains(&format!("{marker} ")), "the live log: {tail}");
    let query = b.find_wait(Locator::Id("log-query")).await?;
    query.send_keys(&format!("\"{marker} 3\"")).await?;
    b.find(Locator::Css("#log-search-form button"))
        .await?
        .click()
        .await?;
    b.wait_for_url("the search's page", |u| u.contains("q="))
        .await?;
    let found = b.text("#log-search").await?;
    ensure!(
        found.contains(&format!("{marker} 3")) && !found.contains(&format!("{marker} 4")),
        "the log search for line 3: {found}"
    );
    b.screenshot(shots, "pod.png").await?;
    say("Web UI: the ticker's live log and its line 3 from the log store");
    b.sign_out().await?;

    // Read-only: Scale is disabled, and forcing it is refused by the API
    // server, whose message the page shows.
    b.sign_in(base, viewer).await?;
    b.goto(&format!("{base}/ns/default")).await?;
    let button = b
        .find_wait(Locator::Css(&format!("{scale_form} button")))
        .await?;
    ensure!(
        button.attr("disabled").await?.is_some(),
        "Scale is enabled for a read-only user"
    );
    b.execute(
        &format!(
            r#"const f = document.querySelector('{scale_form}');
                   f.querySelector("input.replicas").value = "3"; f.submit();"#
        ),
        vec![],
    )
    .await?;
    let refused = b.text("#flash.error").await?;
    ensure!(
        refused.contains("forbidden")
            && refused.contains("system:serviceaccount:kube-system:cairn-test-viewer"),
        "the API server's refusal: {refused}"
    );
    b.screenshot(shots, "refused.png").await?;
    say(&format!("Web UI: read-only user refused: {refused}"));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_cells_and_queries() {
        assert_eq!(millicores("250m"), Some(250));
        assert_eq!(millicores("2"), Some(2000));
        assert_eq!(millicores("12%"), None);
        assert_eq!(
            with_query("/q", &[("q", "\"a b\" OR c&d"), ("pod", "t")]),
            "/q?q=%22a+b%22+OR+c%26d&pod=t"
        );
        let m = marker();
        assert!(m.chars().all(|c| c.is_ascii_alphanumeric()), "{m}");
    }
}
