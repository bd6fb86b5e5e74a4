//! The `metrics.k8s.io/v1beta1` API over a [`Snapshot`]: discovery,
//! NodeMetrics and PodMetrics (list, get, per namespace, label and field
//! selectors), and what each request must be authorized for. Pure
//! functions of the request and the snapshot, so they are tested without
//! a server.

use std::collections::BTreeMap;

use kube::core::SelectorExt as _;
use serde_json::{json, Value};

use crate::scraper::Snapshot;
use crate::selector;
use crate::store::Figures;

pub const GROUP: &str = "metrics.k8s.io";
pub const VERSION: &str = "v1beta1";
pub const GROUP_VERSION: &str = "metrics.k8s.io/v1beta1";

/// What a request asks for, once its path is understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `/apis`, `/apis/metrics.k8s.io` or `/apis/metrics.k8s.io/v1beta1`.
    Discovery(&'static str),
    Nodes {
        name: Option<String>,
    },
    Pods {
        namespace: Option<String>,
        name: Option<String>,
    },
}

/// What a request is authorized for (a SubjectAccessReview's attributes).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Attributes {
    NonResource {
        path: String,
    },
    Resource {
        resource: &'static str,
        verb: &'static str,
        namespace: Option<String>,
        name: Option<String>,
    },
}

impl Request {
    /// The request for `path`, or `None` (404).
    pub fn of(path: &str) -> Option<Request> {
        let path = path.trim_end_matches('/');
        match path {
            "/apis" => return Some(Request::Discovery("apis")),
            "/apis/metrics.k8s.io" => return Some(Request::Discovery("group")),
            "/apis/metrics.k8s.io/v1beta1" => return Some(Request::Discovery("resources")),
            _ => {}
        }
        let rest = path.strip_prefix("/apis/metrics.k8s.io/v1beta1/")?;
        let parts: Vec<&str> = rest.split('/').collect();
        let name = |s: &str| (!s.is_empty()).then(|| s.to_string());
        match parts.as_slice() {
            ["nodes"] => Some(Request::Nodes { name: None }),
            ["nodes", n] => Some(Request::Nodes { name: name(n) }),
            ["pods"] => Some(Request::Pods {
                namespace: None,
                name: None,
            }),
            ["namespaces", ns, "pods"] => Some(Request::Pods {
                namespace: name(ns),
                name: None,
            }),
            ["namespaces", ns, "pods", n] => Some(Request::Pods {
                namespace: name(ns),
                name: name(n),
            }),
            _ => None,
        }
    }

    /// What the caller must be allowed (`watch` when asked to watch).
    pub fn attributes(&self, path: &str, watch: bool) -> Attributes {
        let verb = |name: &Option<String>| match (name, watch) {
            (_, true) => "watch",
            (Some(_), _) => "get",
            (None, _) => "list",
        };
        match self {
            Request::Discovery(_) => Attributes::NonResource {
                path: path.to_string(),
            },
            Request::Nodes { name } => Attributes::Resource {
                resource: "nodes",
                verb: verb(name),
                namespace: None,
                name: name.clone(),
            },
            Request::Pods { namespace, name } => Attributes::Resource {
                resource: "pods",
                verb: verb(name),
                namespace: namespace.clone(),
                name: name.clone(),
            },
        }
    }
}

/// An API answer: status code and JSON body.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub code: u16,
    pub body: Value,
}

/// A `Status` object, as the API server would send it.
pub fn status(code: u16, reason: &str, message: &str) -> Answer {
    Answer {
        code,
        body: json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure", "message": message, "reason": reason, "code": code,
        }),
    }
}

fn ok(body: Value) -> Answer {
    Answer { code: 200, body }
}

/// RFC 3339 in seconds, as `metav1.Time` marshals.
pub fn timestamp(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// A Go duration string (`metav1.Duration`): "15s", "14.973s".
pub fn duration(ms: i64) -> String {
    if ms % 1000 == 0 {
        format!("{}s", ms / 1000)
    } else {
        let s = format!("{}.{:03}", ms / 1000, ms % 1000);
        format!("{}s", s.trim_end_matches('0'))
    }
}

/// `{"cpu": "<n>n", "memory": "<bytes or Ki>"}`.
pub fn usage(f: &Figures) -> Value {
    let memory = if f.memory_bytes.is_multiple_of(1024) {
        format!("{}Ki", f.memory_bytes / 1024)
    } else {
        f.memory_bytes.to_string()
    };
    json!({"cpu": format!("{}n", f.nanocores), "memory": memory})
}

fn discovery(which: &str) -> Value {
    let group = json!({
        "name": GROUP,
        "versions": [{"groupVersion": GROUP_VERSION, "version": VERSION}],
        "preferredVersion": {"groupVersion": GROUP_VERSION, "version": VERSION},
    });
    match which {
        "apis" => {
            let mut g = group;
            g["kind"] = json!("APIGroup");
            json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": [g]})
        }
        "group" => {
            let mut g = group;
            g["kind"] = json!("APIGroup");
            g["apiVersion"] = json!("v1");
            g
        }
        _ => json!({
            "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": GROUP_VERSION,
            "resources": [
                {"name": "nodes", "singularName": "", "namespaced": false, "kind": "NodeMetrics", "verbs": ["get", "list"]},
                {"name": "pods", "singularName": "", "namespaced": true, "kind": "PodMetrics", "verbs": ["get", "list"]},
            ],
        }),
    }
}

/// Query parameters that matter here.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Query {
    pub label_selector: String,
    pub field_selector: String,
    pub watch: bool,
}

impl Query {
    /// From a raw query string (`a=b&c=d`, percent-encoded).
    pub fn parse(raw: Option<&str>) -> Query {
        let mut q = Query::default();
        for (k, v) in url_pairs(raw.unwrap_or_default()) {
            match k.as_str() {
                "labelSelector" => q.label_selector = v,
                "fieldSelector" => q.field_selector = v,
                "watch" => q.watch = v == "true" || v == "1",
                _ => {}
            }
        }
        q
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = |b: u8| (b as char).to_digit(16);
                match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn url_pairs(raw: &str) -> Vec<(String, String)> {
    raw.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

/// The answer to `req` from `snap` (authorization already done).
pub fn answer(req: &Request, q: &Query, snap: &Snapshot, now_ms: i64) -> Answer {
    if let Request::Discovery(which) = req {
        return ok(discovery(which));
    }
    if q.watch {
        return status(
            405,
            "MethodNotAllowed",
            "watch is not supported by the metrics API",
        );
    }
    let labels = match selector::parse(&q.label_selector) {
        Ok(s) => s,
        Err(e) => return status(400, "BadRequest", &e.to_string()),
    };
    let fields = match selector::parse(&q.field_selector) {
        Ok(s) => s,
        Err(e) => return status(400, "BadRequest", &e.to_string()),
    };
    let created = timestamp(now_ms);
    match req {
        Request::Discovery(which) => ok(discovery(which)),
        Request::Nodes { name } => {
            let mut items = Vec::new();
            for (node, entry) in &snap.nodes {
                if name.as_ref().is_some_and(|n| n != node) {
                    continue;
                }
                let field_map = BTreeMap::from([("metadata.name".to_string(), node.clone())]);
                if !labels.matches(&entry.labels) || !fields.matches(&field_map) {
                    continue;
                }
                let Some(f) = entry.window.node_figures() else {
                    continue;
                };
                items.push(json!({
                    "metadata": {"name": node, "creationTimestamp": created, "labels": entry.labels},
                    "timestamp": timestamp(f.at_ms),
                    "window": duration(f.window_ms),
                    "usage": usage(&f),
                }));
            }
            one_or_list(name.as_deref(), "NodeMetrics", "nodes", items)
        }
        Request::Pods { namespace, name } => {
            let mut items = Vec::new();
            for ((ns, pod), meta) in &snap.pods {
                if namespace.as_ref().is_some_and(|n| n != ns)
                    || name.as_ref().is_some_and(|n| n != pod)
                {
                    continue;
                }
                let field_map = BTreeMap::from([
                    ("metadata.name".to_string(), pod.clone()),
                    ("metadata.namespace".to_string(), ns.clone()),
                ]);
                if !labels.matches(&meta.labels) || !fields.matches(&field_map) {
                    continue;
                }
                let Some(containers) = snap
                    .nodes
                    .get(&meta.node)
                    .and_then(|e| e.window.pods().remove(&(ns.clone(), pod.clone())))
                else {
                    continue;
                };
                let at = containers
                    .iter()
                    .map(|(_, f)| f.at_ms)
                    .max()
                    .unwrap_or(now_ms);
                let window = containers
                    .iter()
                    .map(|(_, f)| f.window_ms)
                    .max()
                    .unwrap_or(0);
                items.push(json!({
                    "metadata": {"name": pod, "namespace": ns, "creationTimestamp": created, "labels": meta.labels},
                    "timestamp": timestamp(at),
                    "window": duration(window),
                    "containers": containers.iter().map(|(c, f)| json!({"name": c, "usage": usage(f)})).collect::<Vec<_>>(),
                }));
            }
            one_or_list(name.as_deref(), "PodMetrics", "pods", items)
        }
    }
}

fn one_or_list(name: Option<&str>, kind: &str, resource: &str, mut items: Vec<Value>) -> Answer {
    match name {
        Some(n) => match items.pop() {
            Some(mut item) => {
                item["kind"] = json!(kind);
                item["apiVersion"] = json!(GROUP_VERSION);
                ok(item)
            }
            None => {
                let mut a = status(
                    404,
                    "NotFound",
                    &format!("{resource}.{GROUP} \"{n}\" not found"),
                );
                a.body["details"] = json!({"name": n, "group": GROUP, "kind": resource});
                a
            }
        },
        None => ok(json!({
            "kind": format!("{kind}List"),
            "apiVersion": GROUP_VERSION,
            "metadata": {},
            "items": items,
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prom_text::parse;
    use crate::scraper::{NodeEntry, PodMeta};
    use crate::store::NodeWindow;

    fn snapshot() -> Snapshot {
        let text = |at: i64, cpu: f64| {
            format!(
                "node_cpu_usage_seconds_total {cpu} {at}\nnode_memory_working_set_bytes 2097152 {at}\n\
                 container_cpu_usage_seconds_total{{container=\"app\",namespace=\"default\",pod=\"web-1\"}} {c} {at}\n\
                 container_memory_working_set_bytes{{container=\"app\",namespace=\"default\",pod=\"web-1\"}} 1000 {at}\n\
                 container_cpu_usage_seconds_total{{container=\"dns\",namespace=\"kube-system\",pod=\"dns-1\"}} {c} {at}\n\
                 container_memory_working_set_bytes{{container=\"dns\",namespace=\"kube-system\",pod=\"dns-1\"}} 4096 {at}\n",
                c = cpu / 10.0
            )
        };
        let w = NodeWindow::default().update(&parse(&text(1_000, 10.0)).unwrap(), 0);
        let w = w.update(&parse(&text(11_000, 15.0)).unwrap(), 0);
        let mut s = Snapshot {
            scraped: true,
            ..Default::default()
        };
        s.nodes.insert(
            "cp-1".into(),
            NodeEntry {
                labels: BTreeMap::from([("role".into(), "cp".into())]),
                window: w,
                answered_ms: 11_000,
            },
        );
        // A node without two samples yet is not listed.
        s.nodes.insert("w-1".into(), NodeEntry::default());
        for (ns, pod, app) in [
            ("default", "web-1", "web"),
            ("kube-system", "dns-1", "dns"),
            ("default", "pending", "web"),
        ] {
            s.pods.insert(
                (ns.into(), pod.into()),
                PodMeta {
                    labels: BTreeMap::from([("app".into(), app.into())]),
                    node: if pod == "pending" {
                        String::new()
                    } else {
                        "cp-1".into()
                    },
                },
            );
        }
        s
    }

    fn get(path: &str, query: &str) -> Answer {
        let req = Request::of(path).expect(path);
        answer(&req, &Query::parse(Some(query)), &snapshot(), 20_000)
    }

    #[test]
    fn node_metrics() {
        let a = get("/apis/metrics.k8s.io/v1beta1/nodes", "");
        assert_eq!(a.code, 200);
        assert_eq!(a.body["kind"], "NodeMetricsList");
        let items = a.body["items"].as_array().unwrap();
        assert_eq!(items.len(), 1);
        assert_eq!(items[0]["metadata"]["name"], "cp-1");
        assert_eq!(items[0]["usage"]["cpu"], "500000000n");
        assert_eq!(items[0]["usage"]["memory"], "2048Ki");
        assert_eq!(items[0]["window"], "10s");
        assert_eq!(items[0]["timestamp"], "1970-01-01T00:00:11Z");
        let one = get("/apis/metrics.k8s.io/v1beta1/nodes/cp-1", "");
        assert_eq!(
            (one.body["kind"].as_str(), one.body["apiVersion"].as_str()),
            (Some("NodeMetrics"), Some(GROUP_VERSION))
        );
        let none = get("/apis/metrics.k8s.io/v1beta1/nodes/w-1", "");
        assert_eq!(none.code, 404);
        assert_eq!(
            none.body["message"],
            "nodes.metrics.k8s.io \"w-1\" not found"
        );
        assert_eq!(
            get(
                "/apis/metrics.k8s.io/v1beta1/nodes",
                "labelSelector=role%3Dcp"
            )
            .body["items"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
        assert_eq!(
            get(
                "/apis/metrics.k8s.io/v1beta1/nodes",
                "labelSelector=role%21%3Dcp"
            )
            .body["items"]
                .as_array()
                .unwrap()
                .len(),
            0
        );
    }

    #[test]
    fn pod_metrics() {
        let all = get("/apis/metrics.k8s.io/v1beta1/pods", "");
        let names: Vec<&str> = all.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["metadata"]["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            ["web-1", "dns-1"],
            "a pod without figures is not listed"
        );
        let ns = get(
            "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods",
            "labelSelector=app%3Dweb",
        );
        let items = ns.body["items"].as_array().unwrap();
        assert_eq!(items.len(), 1);
        assert_eq!(items[0]["containers"][0]["name"], "app");
        assert_eq!(items[0]["containers"][0]["usage"]["cpu"], "50000000n");
        assert_eq!(items[0]["containers"][0]["usage"]["memory"], "1000");
        assert_eq!(items[0]["metadata"]["namespace"], "default");
        let one = get(
            "/apis/metrics.k8s.io/v1beta1/namespaces/kube-system/pods/dns-1",
            "",
        );
        assert_eq!(one.body["kind"], "PodMetrics");
        assert_eq!(one.body["containers"][0]["usage"]["memory"], "4Ki");
        assert_eq!(
            get(
                "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/dns-1",
                ""
            )
            .code,
            404
        );
        let by_field = get(
            "/apis/metrics.k8s.io/v1beta1/pods",
            "fieldSelector=metadata.namespace%3Dkube-system",
        );
        assert_eq!(by_field.body["items"].as_array().unwrap().len(), 1);
        assert_eq!(
            get(
                "/apis/metrics.k8s.io/v1beta1/pods",
                "labelSelector=app+in+(web"
            )
            .code,
            400
        );
        assert_eq!(
            get("/apis/metrics.k8s.io/v1beta1/pods", "watch=true").code,
            405
        );
    }

    #[test]
    fn discovery_and_paths() {
        let r = get("/apis/metrics.k8s.io/v1beta1", "");
        assert_eq!(r.body["groupVersion"], GROUP_VERSION);
        assert_eq!(r.body["resources"][1]["kind"], "PodMetrics");
        assert_eq!(get("/apis", "").body["groups"][0]["name"], GROUP);
        assert_eq!(
            get("/apis/metrics.k8s.io/", "").body["preferredVersion"]["version"],
            VERSION
        );
        for bad in [
            "/api/v1/nodes",
            "/apis/metrics.k8s.io/v1beta1/namespaces/x",
            "/apis/metrics.k8s.io/v1beta1/nodes/a/b",
        ] {
            assert_eq!(Request::of(bad), None, "{bad}");
        }
        let pods = Request::of("/apis/metrics.k8s.io/v1beta1/namespaces/ns/pods/p").unwrap();
        assert_eq!(
            pods.attributes("", false),
            Attributes::Resource {
                resource: "pods",
                verb: "get",
                namespace: Some("ns".into()),
                name: Some("p".into())
            }
        );
        let nodes = Request::of("/apis/metrics.k8s.io/v1beta1/nodes").unwrap();
        assert!(matches!(
            nodes.attributes("", false),
            Attributes::Resource { verb: "list", .. }
        ));
        assert!(matches!(
            nodes.attributes("", true),
            Attributes::Resource { verb: "watch", .. }
        ));
    }

    #[test]
    fn formats() {
        assert_eq!(duration(15_000), "15s");
        assert_eq!(duration(14_973), "14.973s");
        assert_eq!(duration(1_500), "1.5s");
        assert_eq!(timestamp(1_611_657_720_953), "2021-01-26T10:42:00Z");
        assert_eq!(percent_decode("a%3Db+c%2"), "a=b c%2");
    }
}
