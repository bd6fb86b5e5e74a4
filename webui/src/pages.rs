//! The pages, rendered on the server from what the API server returned.
//! Pure functions of their inputs (and `now`), so they are tested and
//! timed without a cluster.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Event, Node, Pod};

use crate::cluster::{ClusterError, Overview, PodPage, Workloads};
use crate::html::{action, age, badge, esc, seg, table};
use crate::logsearch::{Record, Search};
use crate::{chart, usage};

fn created<
    K: k8s_openapi::Metadata<Ty = k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta>,
>(
    k: &K,
) -> Option<i64> {
    k.metadata()
        .creation_timestamp
        .as_ref()
        .map(|t| t.0.as_second())
}

fn name_of<
    K: k8s_openapi::Metadata<Ty = k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta>,
>(
    k: &K,
) -> &str {
    k.metadata().name.as_deref().unwrap_or("")
}

/// A section: its heading and either its content or the API server's
/// refusal.
fn section<T>(
    title: &str,
    id: &str,
    r: &Result<T, ClusterError>,
    body: impl FnOnce(&T) -> String,
) -> String {
    let inner = match r {
        Ok(v) => body(v),
        Err(e) => format!(r#"<p class="error">{}</p>"#, esc(&e.to_string())),
    };
    format!(
        r#"<section id="{id}"><h2>{}</h2>{inner}</section>"#,
        esc(title)
    )
}

fn refusal(p: &Result<(), String>) -> Result<(), &str> {
    p.as_ref().map(|_| ()).map_err(String::as_str)
}

/// The sign-in form.
pub fn login(csrf: &str, error: Option<&str>) -> String {
    let error = error
        .map(|e| format!(r#"<p class="error" id="login-error">{}</p>"#, esc(e)))
        .unwrap_or_default();
    format!(
        r#"<section class="login"><h1>Cairn</h1><p class="muted">Sign in with a bearer token: a ServiceAccount token or the token from a kubeconfig. Every request is made with it, and Kubernetes RBAC decides what you can do.</p>{error}
<form method="post" action="/login"><input type="hidden" name="csrf" value="{}">
<label for="token">Token</label><textarea id="token" name="token" rows="4" autocomplete="off" spellcheck="false" required></textarea>
<button id="sign-in">Sign in</button></form></section>"#,
        esc(csrf)
    )
}

fn node_ready(n: &Node) -> (String, &'static str) {
    let conditions = n.status.as_ref().and_then(|s| s.conditions.as_ref());
    match conditions.and_then(|c| c.iter().find(|c| c.type_ == "Ready")) {
        Some(c) if c.status == "True" => ("Ready".into(), "ok"),
        Some(_) => ("NotReady".into(), "bad"),
        None => ("Unknown".into(), "warn"),
    }
}

fn node_roles(n: &Node) -> String {
    let mut roles: Vec<&str> = n
        .metadata
        .labels
        .iter()
        .flatten()
        .filter_map(|(k, _)| k.strip_prefix("node-role.kubernetes.io/"))
        .collect();
    roles.sort();
    roles.dedup();
    if roles.is_empty() {
        "-".into()
    } else {
        roles.join(", ")
    }
}

pub fn overview(o: &Overview, csrf: &str, now: i64) -> String {
    let mut out = String::from("<h1>Overview</h1>");
    out += &section("Nodes", "nodes", &o.nodes, |nodes| {
        let rows: Vec<Vec<String>> = nodes
            .iter()
            .map(|n| {
                let name = name_of(n);
                let (ready, level) = node_ready(n);
                let unschedulable = n
                    .spec
                    .as_ref()
                    .and_then(|s| s.unschedulable)
                    .unwrap_or(false);
                let mut status = badge(&ready, level);
                if unschedulable {
                    status += " ";
                    status += &badge("SchedulingDisabled", "warn");
                }
                let problems: Vec<String> = n
                    .status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .into_iter()
                    .flatten()
                    .filter(|c| c.type_ != "Ready" && c.status == "True")
                    .map(|c| badge(&c.type_, "bad"))
                    .collect();
                let info = n.status.as_ref().and_then(|s| s.node_info.as_ref());
                let capacity = n.status.as_ref().and_then(|s| s.capacity.as_ref());
                let cap = |k: &str| {
                    capacity
                        .and_then(|c| c.get(k))
                        .map(|q| q.0.clone())
                        .unwrap_or_else(|| "-".into())
                };
                let allocatable = n
                    .status
                    .as_ref()
                    .and_then(|s| s.allocatable.as_ref().or(s.capacity.as_ref()));
                let total = |k: &str| {
                    allocatable
                        .and_then(|c| c.get(k))
                        .and_then(|q| usage::quantity(&q.0))
                };
                let used = o.usage.as_ref().ok().and_then(|u| u.get(name));
                let (url, label) = if unschedulable {
                    (format!("/nodes/{}/uncordon", seg(name)), "Uncordon")
                } else {
                    (format!("/nodes/{}/cordon", seg(name)), "Cordon")
                };
                vec![
                    format!(r#"<span class="name">{}</span>"#, esc(name)),
                    status,
                    if problems.is_empty() {
                        badge("none", "muted")
                    } else {
                        problems.join(" ")
                    },
                    esc(&node_roles(n)),
                    esc(info.map(|i| i.kubelet_version.as_str()).unwrap_or("-")),
                    esc(&cap("cpu")),
                    esc(&cap("memory")),
                    esc(&cap("pods")),
                    used_cell(used.map(|u| u.cpu), total("cpu"), usage::cores),
                    used_cell(used.map(|u| u.memory), total("memory"), usage::bytes),
                    age(created(n), now),
                    format!(
                        "{} {}",
                        action(&url, label, csrf, refusal(&o.can_cordon), ""),
                        yaml_link("nodes", "_", name)
                    ),
                ]
            })
            .collect();
        table(
            "node-table",
            &[
                "Name",
                "Status",
                "Conditions",
                "Roles",
                "Version",
                "CPU",
                "Memory",
                "Pods",
                "CPU used",
                "Memory used",
                "Age",
                "",
            ],
            &rows,
        ) + &usage_note(&o.usage)
    });
    out += &section("Control plane", "health", &o.health, |text| {
        let failing: Vec<&str> = text.lines().filter(|l| l.contains("failed")).collect();
        let summary = if failing.is_empty() {
            badge("API server ready", "ok")
        } else {
            badge("API server not ready", "bad")
        };
        format!(
            r#"<p>{summary}</p><details><summary>readyz checks</summary><pre>{}</pre></details>"#,
            esc(text)
        )
    });
    out += &section("Events", "events", &o.events, |events| {
        events_table(events, now, true)
    });
    out
}

fn events_table(events: &[Event], now: i64, with_object: bool) -> String {
    let rows: Vec<Vec<String>> = events
        .iter()
        .map(|e| {
            let when = e
                .last_timestamp
                .as_ref()
                .or(e.first_timestamp.as_ref())
                .map(|t| t.0.as_second())
                .or_else(|| created(e));
            let kind = e.type_.as_deref().unwrap_or("");
            let mut row = vec![
                age(when, now),
                badge(kind, if kind == "Warning" { "warn" } else { "muted" }),
                esc(e.reason.as_deref().unwrap_or("")),
            ];
            if with_object {
                let o = &e.involved_object;
                row.push(esc(&format!(
                    "{}/{}",
                    o.kind.as_deref().unwrap_or(""),
                    o.name.as_deref().unwrap_or("")
                )));
            }
            row.push(esc(e.message.as_deref().unwrap_or("")));
            row
        })
        .collect();
    if with_object {
        table(
            "event-table",
            &["Age", "Type", "Reason", "Object", "Message"],
            &rows,
        )
    } else {
        table("event-table", &["Age", "Type", "Reason", "Message"], &rows)
    }
}

fn yaml_link(kind: &str, ns: &str, name: &str) -> String {
    format!(
        r#"<a class="button" href="/yaml/{}/{}/{}">YAML</a>"#,
        seg(kind),
        seg(ns),
        seg(name)
    )
}

fn ready_level(ready: i32, want: i32) -> &'static str {
    if want == 0 || ready >= want {
        "ok"
    } else if ready == 0 {
        "bad"
    } else {
        "warn"
    }
}

fn deployment_row(d: &Deployment, ns: &str, w: &Workloads, csrf: &str, now: i64) -> Vec<String> {
    let name = name_of(d);
    let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let st = d.status.as_ref();
    let ready = st.and_then(|s| s.ready_replicas).unwrap_or(0);
    let updated = st.and_then(|s| s.updated_replicas).unwrap_or(0);
    let available = st.and_then(|s| s.available_replicas).unwrap_or(0);
    let base = format!("/ns/{}/deployments/{}", seg(ns), seg(name));
    let scale_input = format!(
        r#"<input type="number" name="replicas" min="0" max="1000" value="{want}" aria-label="replicas of {}" class="replicas">"#,
        esc(name)
    );
    vec![
        format!(r#"<span class="name">{}</span>"#, esc(name)),
        badge(&format!("{ready}/{want}"), ready_level(ready, want)),
        updated.to_string(),
        available.to_string(),
        age(created(d), now),
        format!(
            "{} {} {}",
            action(
                &format!("{base}/scale"),
                "Scale",
                csrf,
                refusal(&w.can_scale),
                &scale_input
            ),
            action(
                &format!("{base}/restart"),
                "Restart",
                csrf,
                refusal(&w.can_restart),
                ""
            ),
            yaml_link("deployments", ns, name)
        ),
    ]
}

/// Phase, or the waiting/terminated reason of a container when there is one
/// (what `kubectl get pods` shows as STATUS).
pub fn pod_status(p: &Pod) -> String {
    if p.metadata.deletion_timestamp.is_some() {
        return "Terminating".into();
    }
    let st = p.status.as_ref();
    let reason = st
        .and_then(|s| s.container_statuses.as_ref())
        .into_iter()
        .flatten()
        .find_map(|c| {
            let state = c.state.as_ref()?;
            state
                .waiting
                .as_ref()
                .and_then(|w| w.reason.clone())
                .or_else(|| state.terminated.as_ref().and_then(|t| t.reason.clone()))
        });
    reason
        .or_else(|| st.and_then(|s| s.reason.clone()))
        .or_else(|| st.and_then(|s| s.phase.clone()))
        .unwrap_or_else(|| "Unknown".into())
}

fn status_level(status: &str) -> &'static str {
    match status {
        "Running" | "Succeeded" | "Completed" => "ok",
        "Pending" | "ContainerCreating" | "Terminating" => "warn",
        _ => "bad",
    }
}

fn pod_counts(p: &Pod) -> (usize, usize, i32) {
    let statuses = p
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_deref())
        .unwrap_or(&[]);
    let total = p.spec.as_ref().map(|s| s.containers.len()).unwrap_or(0);
    let ready = statuses.iter().filter(|c| c.ready).count();
    let restarts = statuses.iter().map(|c| c.restart_count).sum();
    (ready, total, restarts)
}

pub fn workloads(ns: &str, w: &Workloads, csrf: &str, now: i64) -> String {
    let mut out = format!(
        r#"<h1>Workloads <span class="muted">in {}</span></h1>"#,
        esc(ns)
    );
    out += &section("Deployments", "deployments", &w.deployments, |items| {
        let rows: Vec<Vec<String>> = items
            .iter()
            .map(|d| deployment_row(d, ns, w, csrf, now))
            .collect();
        table(
            "deployment-table",
            &["Name", "Ready", "Up to date", "Available", "Age", ""],
            &rows,
        )
    });
    out += &section("Pods", "pods", &w.pods, |items| {
        let rows: Vec<Vec<String>> = items
            .iter()
            .map(|p| {
                let name = name_of(p);
                let status = pod_status(p);
                let (ready, total, restarts) = pod_counts(p);
                let node = p
                    .spec
                    .as_ref()
                    .and_then(|s| s.node_name.as_deref())
                    .unwrap_or("-");
                let used = w
                    .pod_usage
                    .as_ref()
                    .ok()
                    .and_then(|u| u.get(name))
                    .map(|(t, _)| *t);
                vec![
                    format!(
                        r#"<a class="name" href="/ns/{}/pods/{}">{}</a>"#,
                        seg(ns),
                        seg(name),
                        esc(name)
                    ),
                    badge(&status, status_level(&status)),
                    format!("{ready}/{total}"),
                    restarts.to_string(),
                    esc(node),
                    used_cell(used.map(|u| u.cpu), None, usage::cores),
                    used_cell(used.map(|u| u.memory), None, usage::bytes),
                    age(created(p), now),
                    format!(
                        "{} {}",
                        action(
                            &format!("/ns/{}/pods/{}/delete", seg(ns), seg(name)),
                            "Delete",
                            csrf,
                            refusal(&w.can_delete_pods),
                            ""
                        ),
                        yaml_link("pods", ns, name)
                    ),
                ]
            })
            .collect();
        table(
            "pod-table",
            &[
                "Name", "Status", "Ready", "Restarts", "Node", "CPU", "Memory", "Age", "",
            ],
            &rows,
        ) + &usage_note(&w.pod_usage)
    });
    out += &section("DaemonSets", "daemonsets", &w.daemonsets, |items| {
        let rows: Vec<Vec<String>> = items
            .iter()
            .map(|d| {
                let st = d.status.as_ref();
                let want = st.map(|s| s.desired_number_scheduled).unwrap_or(0);
                let ready = st.map(|s| s.number_ready).unwrap_or(0);
                vec![
                    format!(r#"<span class="name">{}</span>"#, esc(name_of(d))),
                    badge(&format!("{ready}/{want}"), ready_level(ready, want)),
                    age(created(d), now),
                    yaml_link("daemonsets", ns, name_of(d)),
                ]
            })
            .collect();
        table("daemonset-table", &["Name", "Ready", "Age", ""], &rows)
    });
    out += &section("StatefulSets", "statefulsets", &w.statefulsets, |items| {
        let rows: Vec<Vec<String>> = items
            .iter()
            .map(|s| {
                let want = s.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
                let ready = s
                    .status
                    .as_ref()
                    .and_then(|s| s.ready_replicas)
                    .unwrap_or(0);
                vec![
                    format!(r#"<span class="name">{}</span>"#, esc(name_of(s))),
                    badge(&format!("{ready}/{want}"), ready_level(ready, want)),
                    age(created(s), now),
                    yaml_link("statefulsets", ns, name_of(s)),
                ]
            })
            .collect();
        table("statefulset-table", &["Name", "Ready", "Age", ""], &rows)
    });
    out += &section("Jobs", "jobs", &w.jobs, |items| {
        let rows: Vec<Vec<String>> = items
            .iter()
            .map(|j| {
                let want = j.spec.as_ref().and_then(|s| s.completions).unwrap_or(1);
                let done = j.status.as_ref().and_then(|s| s.succeeded).unwrap_or(0);
                let failed = j.status.as_ref().and_then(|s| s.failed).unwrap_or(0);
                vec![
                    format!(r#"<span class="name">{}</span>"#, esc(name_of(j))),
                    badge(
                        &format!("{done}/{want}"),
                        if failed > 0 {
                            "bad"
                        } else {
                            ready_level(done, want)
                        },
                    ),
                    failed.to_string(),
                    age(created(j), now),
                    yaml_link("jobs", ns, name_of(j)),
                ]
            })
            .collect();
        table(
            "job-table",
            &["Name", "Completions", "Failed", "Age", ""],
            &rows,
        )
    });
    out += &section("Services", "services", &w.services, |items| {
        let rows: Vec<Vec<String>> = items
            .iter()
            .map(|s| {
                let spec = s.spec.as_ref();
                let ports: Vec<String> = spec
                    .and_then(|s| s.ports.as_ref())
                    .into_iter()
                    .flatten()
                    .map(|p| format!("{}/{}", p.port, p.protocol.as_deref().unwrap_or("TCP")))
                    .collect();
                vec![
                    format!(r#"<span class="name">{}</span>"#, esc(name_of(s))),
                    esc(spec.and_then(|s| s.type_.as_deref()).unwrap_or("ClusterIP")),
                    esc(spec.and_then(|s| s.cluster_ip.as_deref()).unwrap_or("-")),
                    esc(&ports.join(", ")),
                    age(created(s), now),
                    yaml_link("services", ns, name_of(s)),
                ]
            })
            .collect();
        table(
            "service-table",
            &["Name", "Type", "Cluster IP", "Ports", "Age", ""],
            &rows,
        )
    });
    out += &section("ConfigMaps", "configmaps", &w.configmaps, |items| {
        let rows: Vec<Vec<String>> = items
            .iter()
            .map(|c| {
                let keys: Vec<&str> = c.data.iter().flatten().map(|(k, _)| k.as_str()).collect();
                vec![
                    format!(r#"<span class="name">{}</span>"#, esc(name_of(c))),
                    esc(&keys.join(", ")),
                    age(created(c), now),
                    yaml_link("configmaps", ns, name_of(c)),
                ]
            })
            .collect();
        table("configmap-table", &["Name", "Keys", "Age", ""], &rows)
    });
    out += &section("Secrets", "secrets", &w.secrets, |items| {
        let rows: Vec<Vec<String>> = items
            .iter()
            .map(|s| {
                vec![
                    format!(r#"<span class="name">{}</span>"#, esc(&s.name)),
                    esc(&s.kind),
                    esc(&s.keys.join(", ")),
                    age(s.created, now),
                ]
            })
            .collect();
        format!(
            r#"<p class="muted">Names and keys only; values are never shown.</p>{}"#,
            table("secret-table", &["Name", "Type", "Keys", "Age"], &rows)
        )
    });
    out
}

/// A Pod page's logs: its container's last lines (the kubelet's) and a
/// search of its past lines (the cluster log store).
pub struct PodLogs<'a> {
    pub container: &'a str,
    pub tail: &'a Result<String, ClusterError>,
    pub search: &'a Search,
    pub found: &'a Result<Vec<Record>, ClusterError>,
}

pub fn pod(ns: &str, name: &str, p: &PodPage, logs: &PodLogs, csrf: &str, now: i64) -> String {
    let container = logs.container;
    let mut out = format!(
        r#"<h1>Pod <span class="name">{}</span> <span class="muted">in {}</span></h1>"#,
        esc(name),
        esc(ns)
    );
    out += &section("Status", "pod-status", &p.pod, |pod| {
        let status = pod_status(pod);
        let st = pod.status.as_ref();
        let node = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .unwrap_or("-");
        format!(
            r#"<dl class="facts"><dt>Status</dt><dd>{}</dd><dt>Node</dt><dd>{}</dd><dt>Pod IP</dt><dd>{}</dd><dt>Age</dt><dd>{}</dd></dl><p>{} {}</p>"#,
            badge(&status, status_level(&status)),
            esc(node),
            esc(st.and_then(|s| s.pod_ip.as_deref()).unwrap_or("-")),
            age(created(pod), now),
            action(
                &format!("/ns/{}/pods/{}/delete", seg(ns), seg(name)),
                "Delete",
                csrf,
                refusal(&p.can_delete),
                ""
            ),
            yaml_link("pods", ns, name)
        )
    });
    out += &section("Containers", "containers", &p.pod, |pod| {
        let statuses = pod
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.as_deref())
            .unwrap_or(&[]);
        let rows: Vec<Vec<String>> = pod
            .spec
            .iter()
            .flat_map(|s| s.containers.iter())
            .map(|c| {
                let st = statuses.iter().find(|s| s.name == c.name);
                let state = st
                    .and_then(|s| s.state.as_ref())
                    .map(|s| {
                        if s.running.is_some() {
                            "Running".to_string()
                        } else if let Some(w) = &s.waiting {
                            w.reason.clone().unwrap_or_else(|| "Waiting".into())
                        } else if let Some(t) = &s.terminated {
                            t.reason.clone().unwrap_or_else(|| "Terminated".into())
                        } else {
                            "Unknown".into()
                        }
                    })
                    .unwrap_or_else(|| "Pending".into());
                vec![
                    format!(
                        r#"<a class="name" href="?container={}">{}</a>"#,
                        seg(&c.name),
                        esc(&c.name)
                    ),
                    esc(c.image.as_deref().unwrap_or("")),
                    badge(&state, status_level(&state)),
                    if st.map(|s| s.ready).unwrap_or(false) {
                        badge("yes", "ok")
                    } else {
                        badge("no", "warn")
                    },
                    st.map(|s| s.restart_count).unwrap_or(0).to_string(),
                ]
            })
            .collect();
        table(
            "container-table",
            &["Name", "Image", "State", "Ready", "Restarts"],
            &rows,
        )
    });
    out += &usage_section(&p.usage, &p.history);
    out += &section("Events", "pod-events", &p.events, |events| {
        events_table(events, now, false)
    });
    let log_url = format!(
        "/ns/{}/pods/{}/log?container={}",
        seg(ns),
        seg(name),
        seg(container)
    );
    out += &section("Log", "log", logs.tail, |text| {
        format!(
            r#"<p class="muted">Container {}: the last 200 lines, refreshed every 3 s.</p><pre id="log-tail" data-src="{}">{}</pre>"#,
            esc(container),
            esc(&log_url),
            if text.is_empty() {
                "(no output)".to_string()
            } else {
                esc(text)
            }
        )
    });
    out += &log_search(container, logs.search, logs.found);
    out
}

/// Time ranges the log search offers (the store's `since`).
const SINCE: [(&str, &str); 5] = [
    ("", "any time"),
    ("15m", "15 minutes"),
    ("1h", "1 hour"),
    ("1d", "1 day"),
    ("7d", "7 days"),
];

/// The Pod's past logs from the cluster's log store: a search form (GET,
/// so it changes nothing) and the newest matching lines.
fn log_search(
    container: &str,
    search: &Search,
    found: &Result<Vec<Record>, ClusterError>,
) -> String {
    let since = search.since.as_deref().unwrap_or("");
    let options: String = SINCE
        .iter()
        .map(|(v, label)| {
            format!(
                r#"<option value="{v}"{}>{label}</option>"#,
                if *v == since { " selected" } else { "" }
            )
        })
        .collect();
    let form = format!(
        r#"<form method="get" class="log-search" id="log-search-form"><input type="hidden" name="container" value="{}"><input type="search" name="q" id="log-query" value="{}" placeholder="words, &quot;a phrase&quot;, stream:stderr"><select name="since">{options}</select><button type="submit">Search</button></form>"#,
        esc(container),
        esc(&search.text),
    );
    let results = match found {
        Ok(records) => {
            let rows: Vec<Vec<String>> = records
                .iter()
                .map(|r| {
                    vec![
                        format!(r#"<span class="muted">{}</span>"#, esc(&r.time)),
                        esc(&r.container),
                        esc(&r.stream),
                        format!(r#"<code>{}</code>"#, esc(&r.message)),
                    ]
                })
                .collect();
            format!(
                r#"<p class="muted">Container {}: the newest {} matching lines, newest first.</p>{}"#,
                esc(container),
                crate::logsearch::LIMIT,
                table(
                    "log-search-table",
                    &["Time", "Container", "Stream", "Message"],
                    &rows
                )
            )
        }
        Err(e) => format!(r#"<p class="error">{}</p>"#, esc(&e.to_string())),
    };
    format!(
        r#"<section id="log-search"><h2>Past logs (cluster log store)</h2>{form}{results}</section>"#
    )
}

/// "250m (12%)", or "-" without figures.
fn used_cell(used: Option<f64>, total: Option<f64>, fmt: fn(f64) -> String) -> String {
    match (used, total) {
        (Some(u), Some(t)) if t > 0.0 => {
            format!(
                r#"{} <span class="muted">{:.0}%</span>"#,
                esc(&fmt(u)),
                u / t * 100.0
            )
        }
        (Some(u), _) => esc(&fmt(u)),
        (None, _) => r#"<span class="muted">-</span>"#.to_string(),
    }
}

/// Why there are no usage figures, when there are none.
fn usage_note<T>(r: &Result<T, ClusterError>) -> String {
    match r {
        Ok(_) => String::new(),
        Err(e) => format!(
            r#"<p class="muted usage-note">Usage figures unavailable (metrics API): {}</p>"#,
            esc(&e.to_string())
        ),
    }
}

/// A Pod's usage: each container's current figures (metrics API) and its
/// CPU and memory over the last hour (Prometheus), each with its own
/// reason when missing.
fn usage_section(
    current: &Result<Vec<(String, usage::Usage)>, ClusterError>,
    history: &Result<(Vec<usage::Series>, Vec<usage::Series>), ClusterError>,
) -> String {
    let now = match current {
        Ok(containers) => {
            let rows: Vec<Vec<String>> = containers
                .iter()
                .map(|(c, u)| {
                    vec![
                        format!(r#"<span class="name">{}</span>"#, esc(c)),
                        esc(&usage::cores(u.cpu)),
                        esc(&usage::bytes(u.memory)),
                    ]
                })
                .collect();
            table("usage-table", &["Container", "CPU", "Memory"], &rows)
        }
        Err(e) => format!(
            r#"<p class="muted">Current figures unavailable (metrics API): {}</p>"#,
            esc(&e.to_string())
        ),
    };
    let charts = match history {
        Ok((cpu, mem)) => format!(
            r#"<div class="charts"><figure><figcaption>CPU (cores), last hour</figcaption>{}</figure><figure><figcaption>Memory, last hour</figcaption>{}</figure></div>{}"#,
            chart::line_chart("cpu-chart", "CPU (cores), last hour", cpu, &|v| {
                usage::cores(v)
            }),
            chart::line_chart("memory-chart", "Memory, last hour", mem, &|v| usage::bytes(
                v
            )),
            chart::legend(if cpu.is_empty() { mem } else { cpu })
        ),
        Err(e) => format!(
            r#"<p class="muted" id="history-note">History unavailable (Prometheus): {}</p>"#,
            esc(&e.to_string())
        ),
    };
    format!(r#"<section id="usage"><h2>Usage</h2>{now}{charts}</section>"#)
}

/// A resource's YAML in an editor; Dry run and Apply both go through the
/// API server's dry run first.
pub fn yaml(
    kind: &str,
    ns: &str,
    name: &str,
    text: &str,
    result: Option<&str>,
    csrf: &str,
) -> String {
    let result = result
        .map(|r| format!(r#"<h2>Result</h2><pre id="yaml-result">{}</pre>"#, esc(r)))
        .unwrap_or_default();
    format!(
        r#"<h1>{} <span class="name">{}</span></h1>
<form method="post" action="/yaml/{}/{}/{}" class="editor">{}
<textarea name="yaml" id="yaml" rows="30" spellcheck="false">{}</textarea>
<p><button name="mode" value="dry-run">Dry run</button> <button name="mode" value="apply" class="primary">Apply</button>
<span class="muted">Apply runs a server-side dry run first and writes only if it passes.</span></p></form>{result}"#,
        esc(kind),
        esc(name),
        seg(kind),
        seg(ns),
        seg(name),
        crate::html::csrf_field(csrf),
        esc(text)
    )
}

/// Builds `n` Pods in `ns` for tests and the render benchmark.
pub fn sample_pods(ns: &str, n: usize) -> Vec<Pod> {
    (0..n)
        .map(|i| {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": format!("web-{i}"), "namespace": ns, "creationTimestamp": "2026-01-01T00:00:00Z"},
                "spec": {"nodeName": "cp-1", "containers": [{"name": "web", "image": "testpod:latest"}]},
                "status": {"phase": "Running", "containerStatuses": [{"name": "web", "ready": true, "restartCount": i % 3, "image": "testpod:latest", "imageID": "", "state": {"running": {}}}]}
            }))
            .expect("a valid Pod")
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workloads_with(pods: Vec<Pod>) -> Workloads {
        let deploy: Deployment = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"replicas": 2, "selector": {}, "template": {}},
            "status": {"readyReplicas": 1, "updatedReplicas": 2, "availableReplicas": 1}
        }))
        .unwrap();
        Workloads {
            deployments: Ok(vec![deploy]),
            daemonsets: Ok(vec![]),
            statefulsets: Ok(vec![]),
            jobs: Err(ClusterError::Refused(
                "jobs.batch is forbidden: User \"x\" cannot list".into(),
            )),
            pods: Ok(pods),
            services: Ok(vec![]),
            configmaps: Ok(vec![]),
            secrets: Ok(vec![crate::cluster::SecretSummary {
                name: "db".into(),
                kind: "Opaque".into(),
                keys: vec!["password".into()],
                created: None,
            }]),
            can_scale: Err("RBAC: you may not patch deployments/scale".into()),
            can_restart: Ok(()),
            can_delete_pods: Ok(()),
            pod_usage: Ok(crate::usage::parse_pod_metrics(
                &serde_json::json!({"items": [
                    {"metadata": {"name": "web-0"}, "containers": [{"name": "web", "usage": {"cpu": "50m", "memory": "20Mi"}}]}
                ]}),
            )),
        }
    }

    #[test]
    fn usage_figures_in_the_tables_and_on_the_pod_page() {
        let html = workloads(
            "default",
            &workloads_with(sample_pods("default", 2)),
            "tok",
            0,
        );
        assert!(
            html.contains("<td>50m</td><td>20Mi</td>"),
            "web-0's usage: {html}"
        );
        assert!(
            html.contains(
                r#"<td><span class="muted">-</span></td><td><span class="muted">-</span></td>"#
            ),
            "web-1 has none"
        );
        let mut w = workloads_with(vec![]);
        w.pod_usage = Err(ClusterError::Refused(
            "the server could not find the requested resource".into(),
        ));
        let html = workloads("default", &w, "tok", 0);
        assert!(html.contains("Usage figures unavailable (metrics API): the server could not find the requested resource"));

        let node: Node = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "cp-1"},
            "status": {"allocatable": {"cpu": "2", "memory": "2Gi"}, "capacity": {"cpu": "2", "memory": "2Gi", "pods": "110"}}
        }))
        .unwrap();
        let o = Overview {
            nodes: Ok(vec![node]),
            events: Ok(vec![]),
            health: Ok("[+]ping ok".into()),
            can_cordon: Ok(()),
            usage: Ok(crate::usage::parse_node_metrics(
                &serde_json::json!({"items": [
                {"metadata": {"name": "cp-1"}, "usage": {"cpu": "250000000n", "memory": "524288Ki"}}]}),
            )),
        };
        let html = overview(&o, "tok", 0);
        assert!(
            html.contains(r#"250m <span class="muted">13%</span>"#)
                || html.contains(r#"250m <span class="muted">12%</span>"#),
            "{html}"
        );
        assert!(
            html.contains(r#"512Mi <span class="muted">25%</span>"#),
            "{html}"
        );

        let page = PodPage {
            pod: Err(ClusterError::Refused("pods \"web-0\" not found".into())),
            events: Ok(vec![]),
            can_delete: Ok(()),
            usage: Ok(vec![(
                "web".into(),
                crate::usage::Usage {
                    cpu: 0.05,
                    memory: 20.0 * 1048576.0,
                },
            )]),
            history: Ok((
                vec![crate::usage::Series {
                    label: "web".into(),
                    points: vec![(0.0, 0.04), (60.0, 0.05)],
                }],
                vec![],
            )),
        };
        let search = crate::logsearch::Search {
            text: "<b>".into(),
            since: Some("1h".into()),
        };
        let found = Ok(vec![Record {
            time: "2026-12-07T03:00:00Z".into(),
            container: "web".into(),
            stream: "stdout".into(),
            message: "served <x>".into(),
        }]);
        let html = pod(
            "default",
            "web-0",
            &page,
            &PodLogs {
                container: "web",
                tail: &Ok(String::new()),
                search: &search,
                found: &found,
            },
            "tok",
            0,
        );
        assert!(html.contains(r#"<section id="usage">"#));
        assert!(
            html.contains(r#"value="&lt;b&gt;""#),
            "the search is kept, escaped"
        );
        assert!(html.contains(r#"<option value="1h" selected>"#));
        assert!(
            html.contains("<td><code>served &lt;x&gt;</code></td>"),
            "{html}"
        );
        assert!(
            html.contains(r#"<svg id="cpu-chart""#) && html.contains(r#"<svg id="memory-chart""#)
        );
        assert!(html.contains("no data yet"), "no memory series");
        assert!(html.contains("<td>50m</td><td>20Mi</td>"));
        let page = PodPage {
            history: Err(ClusterError::Refused(
                "services \"cairn-prometheus\" not found".into(),
            )),
            usage: Err(ClusterError::Refused("forbidden".into())),
            ..page
        };
        let refused = Err(ClusterError::BadInput(
            "the log store: q: Syntax Error: (unclosed".into(),
        ));
        let html = pod(
            "default",
            "web-0",
            &page,
            &PodLogs {
                container: "web",
                tail: &Ok(String::new()),
                search: &search,
                found: &refused,
            },
            "tok",
            0,
        );
        assert!(html.contains("the log store: q: Syntax Error: (unclosed"));
        assert!(html.contains(
            "History unavailable (Prometheus): services &quot;cairn-prometheus&quot; not found"
        ));
        assert!(html.contains("Current figures unavailable (metrics API): forbidden"));
    }

    #[test]
    fn the_workloads_page_shows_status_refusals_and_disabled_buttons() {
        let html = workloads(
            "default",
            &workloads_with(sample_pods("default", 3)),
            "tok",
            1_767_225_600 + 90,
        );
        assert!(
            html.contains(r#"<span class="badge warn">1/2</span>"#),
            "deployment ready 1 of 2"
        );
        assert!(html.contains(r#"disabled title="RBAC: you may not patch deployments/scale""#));
        assert!(html.contains("jobs.batch is forbidden: User &quot;x&quot; cannot list"));
        assert!(html.contains(r#"href="/ns/default/pods/web-2""#));
        assert!(html.contains("password"), "secret keys are listed");
        assert!(html.contains(">90s<"), "age");
    }

    #[test]
    fn pod_status_prefers_a_containers_reason() {
        let p: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "a"},
            "status": {"phase": "Pending", "containerStatuses": [{"name": "c", "ready": false, "restartCount": 4, "image": "", "imageID": "", "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}
        }))
        .unwrap();
        assert_eq!(pod_status(&p), "CrashLoopBackOff");
        assert_eq!(pod_counts(&p).2, 4);
    }

    /// The overview's and a namespace's render time with 100 Pods: printed
    /// for `make bench`, and bounded so a regression shows.
    #[test]
    fn rendering_100_pods_is_fast() {
        let w = workloads_with(sample_pods("default", 100));
        let start = std::time::Instant::now();
        let html = workloads("default", &w, "tok", 0);
        let took = start.elapsed();
        assert_eq!(
            html.matches("/pods/web-").count(),
            200,
            "a link and a delete per Pod"
        );
        eprintln!(
            "webui: rendered the workloads page with 100 Pods in {took:?} ({} bytes)",
            html.len()
        );
        assert!(took < std::time::Duration::from_millis(200), "{took:?}");
    }
}
