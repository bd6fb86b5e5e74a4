//! Prometheus's scrape targets from the Kubernetes API, served in
//! Prometheus's HTTP service discovery format (`http_sd_configs`).
//!
//! Debian builds Prometheus without its Kubernetes service discovery (see
//! its NEWS.Debian: the client library's dependencies), so
//! `cairn-prometheus-sd` runs beside it in the Prometheus Pod and answers
//! `GET /targets/<job>` on the Pod's loopback with the current targets,
//! listed from the API server on every request (Prometheus asks every
//! refresh interval):
//!
//! | job | targets |
//! |---|---|
//! | `kubelet` | every Node's kubelet, `<InternalIP>:<kubelet port>` (cAdvisor and resource metrics) |
//! | `machined` | every Node's machined, `<InternalIP>:<machined port>` |
//! | `etcd` | control-plane Nodes, `<InternalIP>:<etcd metrics port>` |
//! | `apiserver` | the `default/kubernetes` Endpoints, `<ip>:<port>` |
//!
//! Every target carries a `node` label (the apiserver's carry none).

use k8s_openapi::api::core::v1::{Endpoints, Node};
use serde_json::{json, Value};

use crate::kubelet::Target;

/// The jobs served.
pub const JOBS: &[&str] = &["kubelet", "machined", "etcd", "apiserver"];

/// Labels that mark a control-plane Node.
pub const CONTROL_PLANE_LABELS: &[&str] = &[
    "node-role.kubernetes.io/control-plane",
    "node-role.kubernetes.io/master",
];

/// Ports of the node-level targets.
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    pub machined: u16,
    pub etcd_metrics: u16,
}

fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

fn is_control_plane(n: &Node) -> bool {
    n.metadata
        .labels
        .as_ref()
        .is_some_and(|l| CONTROL_PLANE_LABELS.iter().any(|k| l.contains_key(*k)))
}

/// The target groups of `job`; `None` for an unknown job.
pub fn targets(
    job: &str,
    nodes: &[Node],
    apiserver: Option<&Endpoints>,
    ports: Ports,
) -> Option<Value> {
    let internal = ["InternalIP".to_string()];
    let per_node = |pick: &dyn Fn(&Node, &Target) -> Option<u16>| -> Value {
        let groups: Vec<Value> = nodes
            .iter()
            .filter_map(|n| {
                let t = Target::of(n, &internal).ok()?;
                let port = pick(n, &t)?;
                Some(json!({"targets": [host_port(&t.host, port)], "labels": {"node": t.node}}))
            })
            .collect();
        Value::Array(groups)
    };
    Some(match job {
        "kubelet" => per_node(&|_, t| Some(t.port)),
        "machined" => per_node(&|_, _| Some(ports.machined)),
        "etcd" => per_node(&|n, _| is_control_plane(n).then_some(ports.etcd_metrics)),
        "apiserver" => {
            let mut targets = Vec::new();
            for subset in apiserver
                .and_then(|e| e.subsets.as_ref())
                .into_iter()
                .flatten()
            {
                let port = subset
                    .ports
                    .iter()
                    .flatten()
                    .find(|p| p.name.as_deref() == Some("https"))
                    .or_else(|| subset.ports.iter().flatten().next())
                    .map(|p| p.port);
                let Some(port) = port.and_then(|p| u16::try_from(p).ok()) else {
                    continue;
                };
                for a in subset.addresses.iter().flatten() {
                    targets.push(host_port(&a.ip, port));
                }
            }
            if targets.is_empty() {
                json!([])
            } else {
                json!([{"targets": targets, "labels": {}}])
            }
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, ip: &str, cp: bool) -> Node {
        let labels = if cp {
            json!({"node-role.kubernetes.io/control-plane": ""})
        } else {
            json!({})
        };
        serde_json::from_value(json!({
            "metadata": {"name": name, "labels": labels},
            "status": {"addresses": [{"type": "InternalIP", "address": ip}],
                       "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}}}
        }))
        .unwrap()
    }

    #[test]
    fn node_jobs() {
        let nodes = [
            node("cp-1", "10.5.0.2", true),
            node("w-1", "10.5.0.3", false),
            node("nameless", "", false),
        ];
        let ports = Ports {
            machined: 9101,
            etcd_metrics: 2381,
        };
        let k = targets("kubelet", &nodes, None, ports).unwrap();
        assert_eq!(
            k,
            json!([
                {"targets": ["10.5.0.2:10250"], "labels": {"node": "cp-1"}},
                {"targets": ["10.5.0.3:10250"], "labels": {"node": "w-1"}},
            ])
        );
        let m = targets("machined", &nodes, None, ports).unwrap();
        assert_eq!(m[1]["targets"][0], "10.5.0.3:9101");
        let e = targets("etcd", &nodes, None, ports).unwrap();
        assert_eq!(
            e,
            json!([{"targets": ["10.5.0.2:2381"], "labels": {"node": "cp-1"}}])
        );
        assert_eq!(targets("nope", &nodes, None, ports), None);
    }

    #[test]
    fn apiserver_endpoints() {
        let ep: Endpoints = serde_json::from_value(json!({
            "metadata": {"name": "kubernetes", "namespace": "default"},
            "subsets": [{"addresses": [{"ip": "10.5.0.2"}, {"ip": "fd00::2"}], "ports": [{"name": "https", "port": 6443}]}]
        }))
        .unwrap();
        let ports = Ports {
            machined: 9101,
            etcd_metrics: 2381,
        };
        let a = targets("apiserver", &[], Some(&ep), ports).unwrap();
        assert_eq!(
            a,
            json!([{"targets": ["10.5.0.2:6443", "[fd00::2]:6443"], "labels": {}}])
        );
        assert_eq!(targets("apiserver", &[], None, ports).unwrap(), json!([]));
    }
}
