//! Usage figures from the monitoring add-ons, asked with the signed-in
//! user's token like everything else:
//!
//! - current CPU and memory of nodes and Pods from the resource metrics
//!   API (`metrics.k8s.io/v1beta1`, served by cairn-metrics-server);
//! - a Pod's CPU and memory over the last hour from Prometheus's
//!   `/api/v1/query_range`, reached through the API server's service proxy
//!   (`services/proxy` on kube-system/cairn-prometheus; RBAC decides).
//!
//! Either may be missing (add-on off, not ready, not allowed): the pages
//! then say why instead of showing figures. Parsing and query building are
//! pure functions, tested here.

use std::collections::BTreeMap;

use kube::Client;
use serde_json::Value;

use crate::cluster::{ClusterError, Result};

/// Where Prometheus's API is, through the API server's service proxy.
pub const PROMETHEUS_PROXY: &str =
    "/api/v1/namespaces/kube-system/services/cairn-prometheus:http/proxy";

/// CPU in cores and memory in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Usage {
    pub cpu: f64,
    pub memory: f64,
}

/// A Kubernetes quantity as a number (`250m` = 0.25, `1Ki` = 1024,
/// `123n` = 1.23e-7, `1.5Gi`, `2e3`).
pub fn quantity(q: &str) -> Option<f64> {
    let q = q.trim();
    let split = q
        .find(|c: char| c.is_ascii_alphabetic() && c != 'e' && c != 'E')
        .unwrap_or(q.len());
    let (num, suffix) = q.split_at(split);
    let n: f64 = num.parse().ok()?;
    let scale = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        _ => return None,
    };
    Some(n * scale)
}

/// `0.25` cores as "250m", `2.5` as "2.50".
pub fn cores(c: f64) -> String {
    if c < 1.0 {
        format!("{}m", (c * 1000.0).round())
    } else {
        format!("{c:.2}")
    }
}

/// Bytes as "512Mi", "1.5Gi", "900Ki".
pub fn bytes(b: f64) -> String {
    const K: f64 = 1024.0;
    if b >= K * K * K {
        format!("{:.1}Gi", b / (K * K * K))
    } else if b >= K * K {
        format!("{}Mi", (b / (K * K)).round())
    } else if b >= K {
        format!("{}Ki", (b / K).round())
    } else {
        format!("{}", b.round())
    }
}

fn usage_of(v: &Value) -> Usage {
    Usage {
        cpu: v["cpu"].as_str().and_then(quantity).unwrap_or(0.0),
        memory: v["memory"].as_str().and_then(quantity).unwrap_or(0.0),
    }
}

/// Node name to usage, from a NodeMetricsList.
pub fn parse_node_metrics(list: &Value) -> BTreeMap<String, Usage> {
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| {
            Some((
                i["metadata"]["name"].as_str()?.to_string(),
                usage_of(&i["usage"]),
            ))
        })
        .collect()
}

/// Pod name to (its total, each container), from a PodMetricsList.
pub type PodUsage = BTreeMap<String, (Usage, Vec<(String, Usage)>)>;

pub fn parse_pod_metrics(list: &Value) -> PodUsage {
    let mut out = PodUsage::new();
    for item in list["items"].as_array().into_iter().flatten() {
        let Some(name) = item["metadata"]["name"].as_str() else {
            continue;
        };
        let containers: Vec<(String, Usage)> = item["containers"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| {
                (
                    c["name"].as_str().unwrap_or_default().to_string(),
                    usage_of(&c["usage"]),
                )
            })
            .collect();
        let total = containers.iter().fold(Usage::default(), |a, (_, u)| Usage {
            cpu: a.cpu + u.cpu,
            memory: a.memory + u.memory,
        });
        out.insert(name.to_string(), (total, containers));
    }
    out
}

/// How long an add-on may take to answer before the page goes without it.
const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

async fn get_json(client: &Client, path: &str) -> Result<Value> {
    let request = http::Request::get(path)
        .body(Vec::new())
        .map_err(|e| ClusterError::BadInput(e.to_string()))?;
    match tokio::time::timeout(TIMEOUT, client.request::<Value>(request)).await {
        Ok(answer) => Ok(answer?),
        Err(_) => Err(ClusterError::Unreachable(format!(
            "no answer within {} s",
            TIMEOUT.as_secs()
        ))),
    }
}

/// Every node's current usage.
pub async fn nodes(client: &Client) -> Result<BTreeMap<String, Usage>> {
    Ok(parse_node_metrics(
        &get_json(client, "/apis/metrics.k8s.io/v1beta1/nodes").await?,
    ))
}

/// The current usage of the Pods of `ns`.
pub async fn pods(client: &Client, ns: &str) -> Result<PodUsage> {
    let path = format!(
        "/apis/metrics.k8s.io/v1beta1/namespaces/{}/pods",
        crate::html::seg(ns)
    );
    Ok(parse_pod_metrics(&get_json(client, &path).await?))
}

/// The current usage of each container of Pod `ns`/`name`.
pub async fn pod(client: &Client, ns: &str, name: &str) -> Result<Vec<(String, Usage)>> {
    let path = format!(
        "/apis/metrics.k8s.io/v1beta1/namespaces/{}/pods/{}",
        crate::html::seg(ns),
        crate::html::seg(name)
    );
    let item = get_json(client, &path).await?;
    let list = serde_json::json!({"items": [item]});
    Ok(parse_pod_metrics(&list)
        .into_values()
        .next()
        .map(|(_, c)| c)
        .unwrap_or_default())
}

/// One line of a chart: its label and (Unix seconds, value) points.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub label: String,
    pub points: Vec<(f64, f64)>,
}

/// A PromQL string literal's inside: backslashes and quotes escaped.
fn promql_str(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// The CPU (cores, per container) and memory (bytes, per container)
/// queries of Pod `ns`/`name`, from the kubelets' cAdvisor metrics.
pub fn pod_queries(ns: &str, name: &str) -> (String, String) {
    let sel = format!(
        r#"namespace="{}",pod="{}",container!="",container!="POD""#,
        promql_str(ns),
        promql_str(name)
    );
    (
        format!("sum by (container) (rate(container_cpu_usage_seconds_total{{{sel}}}[2m]))"),
        format!("sum by (container) (container_memory_working_set_bytes{{{sel}}})"),
    )
}

/// The series of a `query_range` answer; an error answer is refused with
/// Prometheus's own message.
pub fn parse_matrix(v: &Value) -> Result<Vec<Series>> {
    if v["status"] != "success" {
        return Err(ClusterError::Refused(format!(
            "Prometheus: {}",
            v["error"].as_str().unwrap_or("an answer without data")
        )));
    }
    Ok(v["data"]["result"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            let metric = r["metric"].as_object();
            let label = metric
                .and_then(|m| m.get("container"))
                .and_then(Value::as_str)
                .unwrap_or("total")
                .to_string();
            let points = r["values"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|p| {
                    let t = p[0].as_f64()?;
                    let v: f64 = p[1].as_str()?.parse().ok()?;
                    v.is_finite().then_some((t, v))
                })
                .collect();
            Series { label, points }
        })
        .collect())
}

/// The `query_range` path for `query` over the `range` seconds up to `end`.
pub fn range_path(query: &str, end: i64, range: i64, step: i64) -> String {
    format!(
        "{PROMETHEUS_PROXY}/api/v1/query_range?query={}&start={}&end={end}&step={step}",
        crate::html::seg(query),
        end - range
    )
}

/// A Pod's CPU and memory series over the last hour, a point a minute.
pub async fn pod_history(
    client: &Client,
    ns: &str,
    name: &str,
    now: i64,
) -> Result<(Vec<Series>, Vec<Series>)> {
    let (cpu, mem) = pod_queries(ns, name);
    let (cpu_path, mem_path) = (
        range_path(&cpu, now, 3600, 60),
        range_path(&mem, now, 3600, 60),
    );
    let (cpu, mem) = tokio::join!(get_json(client, &cpu_path), get_json(client, &mem_path));
    Ok((parse_matrix(&cpu?)?, parse_matrix(&mem?)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn quantities() {
        for (q, want) in [
            ("250m", 0.25),
            ("137504809n", 0.137504809),
            ("2", 2.0),
            ("1024Ki", 1048576.0),
            ("512Mi", 536870912.0),
            ("1.5Gi", 1610612736.0),
            ("2e3", 2000.0),
            ("1k", 1000.0),
        ] {
            assert!((quantity(q).unwrap() - want).abs() < 1e-9, "{q}");
        }
        assert_eq!(quantity("12x"), None);
        assert_eq!(quantity("lots"), None);
        assert_eq!(cores(0.25), "250m");
        assert_eq!(cores(2.5), "2.50");
        assert_eq!(bytes(536870912.0), "512Mi");
        assert_eq!(bytes(1610612736.0), "1.5Gi");
        assert_eq!(bytes(2048.0), "2Ki");
    }

    #[test]
    fn metrics_api_lists() {
        let nodes = parse_node_metrics(&json!({"kind": "NodeMetricsList", "items": [
            {"metadata": {"name": "cp-1"}, "usage": {"cpu": "250000000n", "memory": "524288Ki"}}]}));
        assert_eq!(
            nodes["cp-1"],
            Usage {
                cpu: 0.25,
                memory: 536870912.0
            }
        );
        let pods = parse_pod_metrics(&json!({"kind": "PodMetricsList", "items": [
            {"metadata": {"name": "web"}, "containers": [
                {"name": "app", "usage": {"cpu": "50m", "memory": "20Mi"}},
                {"name": "side", "usage": {"cpu": "10m", "memory": "1Mi"}}]}]}));
        let (total, containers) = &pods["web"];
        assert!((total.cpu - 0.06).abs() < 1e-9);
        assert_eq!(total.memory, 21.0 * 1048576.0);
        assert_eq!(containers.len(), 2);
    }

    #[test]
    fn queries_escape_and_encode() {
        let (cpu, mem) = pod_queries("default", "we\"b");
        assert!(cpu.contains(r#"pod="we\"b""#), "{cpu}");
        assert!(cpu.starts_with("sum by (container) (rate(container_cpu_usage_seconds_total{"));
        assert!(mem.contains("container_memory_working_set_bytes"));
        let p = range_path("up{a=\"b\"}", 10_000, 3600, 60);
        assert_eq!(
            p,
            format!("{PROMETHEUS_PROXY}/api/v1/query_range?query=up%7Ba%3D%22b%22%7D&start=6400&end=10000&step=60")
        );
    }

    #[test]
    fn prometheus_answers() {
        let ok = json!({"status": "success", "data": {"resultType": "matrix", "result": [
            {"metric": {"container": "app"}, "values": [[1000, "0.05"], [1060.5, "0.07"], [1120, "NaN"]]}]}});
        let s = parse_matrix(&ok).unwrap();
        assert_eq!(
            s,
            vec![Series {
                label: "app".into(),
                points: vec![(1000.0, 0.05), (1060.5, 0.07)]
            }]
        );
        let bad =
            json!({"status": "error", "errorType": "bad_data", "error": "parse error at char 3"});
        let e = parse_matrix(&bad).unwrap_err();
        assert!(e.to_string().contains("parse error at char 3"), "{e}");
    }
}
