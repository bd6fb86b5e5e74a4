//! machined's metrics for the Prometheus add-on: plain HTTP `/metrics` on
//! :9101 in Prometheus's text format, answered only to callers on the
//! cluster's networks (loopback, the Pod networks, the network of the node's
//! Kubernetes address); anyone else gets 403. No secrets are in it: service
//! states and restarts, boot timings, config applies, the resource store's
//! sizes and machined's memory.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::sync::Weak;
use std::time::{Duration, SystemTime};

use http_body_util::Full;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use runtime::resources::kind;
use runtime::resources::specs::{EventSpec, EventType};
use runtime::supervisor::{Health, State};

use crate::state::Node;

/// The port Prometheus scrapes on every node.
pub const PORT: u16 = 9101;

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// The metrics text of `node`.
pub fn render(node: &Node) -> String {
    let mut out = String::new();
    family(
        &mut out,
        "cairn_service_running",
        "gauge",
        "Whether the service runs (1) or not (0).",
    );
    family(
        &mut out,
        "cairn_service_healthy",
        "gauge",
        "Whether the service's health check passes (1), fails (0); absent when unknown.",
    );
    family(
        &mut out,
        "cairn_service_restarts_total",
        "counter",
        "Times the supervisor restarted the service.",
    );
    let mut lines = String::new();
    for h in node.supervisor.list() {
        let s = h.snapshot();
        let id = &h.id;
        let _ = writeln!(
            lines,
            "cairn_service_running{{service=\"{id}\"}} {}",
            u8::from(s.state == State::Running)
        );
        match s.health {
            Health::Ok => {
                let _ = writeln!(lines, "cairn_service_healthy{{service=\"{id}\"}} 1");
            }
            Health::Failing => {
                let _ = writeln!(lines, "cairn_service_healthy{{service=\"{id}\"}} 0");
            }
            Health::Unknown => {}
        }
        let _ = writeln!(
            lines,
            "cairn_service_restarts_total{{service=\"{id}\"}} {}",
            s.restarts
        );
    }
    out.push_str(&lines);

    family(
        &mut out,
        "cairn_resources",
        "gauge",
        "Resources in machined's store, by type.",
    );
    let mut lines = String::new();
    for k in kind::ALL {
        let _ = writeln!(
            lines,
            "cairn_resources{{type=\"{}\"}} {}",
            k.name,
            node.store.list(k).len()
        );
    }
    out.push_str(&lines);

    // Boot and apply timings from the event log (each resource carries the
    // time it was created).
    let boot = boot_time();
    let events = node.store.list(kind::EVENTS);
    let mut stage_lines = String::new();
    let mut applies = 0u64;
    for r in &events {
        let Some(e) = r.spec_as::<EventSpec>() else {
            continue;
        };
        match e.event_type {
            EventType::Stage => {
                if let (Some(stage), Some(boot)) = (e.message.strip_prefix("stage "), boot) {
                    if let Ok(after) = r.metadata.created.duration_since(boot) {
                        let _ = writeln!(
                            stage_lines,
                            "cairn_stage_reached_seconds{{stage=\"{stage}\"}} {:.3}",
                            after.as_secs_f64()
                        );
                    }
                }
            }
            EventType::Config => applies += 1,
            _ => {}
        }
    }
    family(
        &mut out,
        "cairn_stage_reached_seconds",
        "gauge",
        "Seconds from the kernel's start to each boot stage (the last time it was reached).",
    );
    out.push_str(&stage_lines);
    family(
        &mut out,
        "cairn_config_events_total",
        "counter",
        "Machine configs found, applied or rejected.",
    );
    let _ = writeln!(out, "cairn_config_events_total {applies}");
    family(
        &mut out,
        "cairn_machined_resident_memory_bytes",
        "gauge",
        "machined's resident memory.",
    );
    let _ = writeln!(
        out,
        "cairn_machined_resident_memory_bytes {}",
        rss_bytes().unwrap_or(0)
    );
    out
}

/// When the kernel started, from /proc/uptime.
fn boot_time() -> Option<SystemTime> {
    let text = std::fs::read_to_string("/proc/uptime").ok()?;
    let up: f64 = text.split_whitespace().next()?.parse().ok()?;
    SystemTime::now().checked_sub(Duration::from_secs_f64(up))
}

fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// Whether `peer` may read the metrics: loopback, the Pod networks and the
/// network of the node's Kubernetes address.
pub fn allowed(node: &Node, peer: IpAddr) -> bool {
    if peer.is_loopback() {
        return true;
    }
    let Some(cfg) = node.running_config() else {
        return false;
    };
    if cfg
        .cluster
        .network
        .pod_subnets
        .iter()
        .any(|s| s.net().contains(&peer))
    {
        return true;
    }
    let Some(own) = kubernetes::node_ip(&node.store, Some(&cfg)) else {
        return false;
    };
    node.store
        .specs::<runtime::resources::specs::AddressSpec>()
        .into_iter()
        .filter_map(|(_, a)| a.address.parse::<ipnet::IpNet>().ok())
        .any(|n| n.addr() == own && n.contains(&peer))
}

/// Serves the metrics for as long as machined runs.
pub async fn serve(node: Weak<Node>) {
    let addr = SocketAddr::from(([0, 0, 0, 0], PORT));
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            runtime::console!("metrics: cannot listen on {addr}: {e}");
            return;
        }
    };
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            continue;
        };
        let node = node.clone();
        tokio::spawn(async move {
            let svc =
                hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let node = node.clone();
                    async move {
                        let (status, body) = match node.upgrade() {
                            None => (503, String::new()),
                            Some(n) if !allowed(&n, peer.ip()) => (
                                403,
                                "metrics are served to the cluster's networks only\n".into(),
                            ),
                            Some(n) if req.uri().path() == "/metrics" => (200, render(&n)),
                            Some(_) => (404, "only /metrics here\n".into()),
                        };
                        let resp = hyper::Response::builder()
                            .status(status)
                            .header("content-type", "text/plain; version=0.0.4")
                            .body(Full::new(Bytes::from(body)))
                            .expect("a valid response");
                        Ok::<_, std::convert::Infallible>(resp)
                    }
                });
            let _ = tokio::time::timeout(
                Duration::from_secs(30),
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc),
            )
            .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn node() -> Arc<Node> {
        let (tx, _rx) = tokio::sync::mpsc::channel(1);
        Arc::new(Node::new(
            host::cmdline::Cmdline::default(),
            runtime::supervisor::Supervisor::new(),
            Arc::new(runtime::supervisor::logbuf::LogRing::new(1024)),
            tx,
        ))
    }

    #[test]
    fn the_text_format_has_the_store_stages_and_memory() {
        let n = node();
        n.set_maintenance(true);
        let text = render(&n);
        assert!(
            text.contains("# TYPE cairn_service_restarts_total counter"),
            "{text}"
        );
        assert!(
            text.contains("cairn_resources{type=\"events\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("cairn_stage_reached_seconds{stage=\"maintenance\"}"),
            "{text}"
        );
        assert!(
            text.contains("cairn_machined_resident_memory_bytes "),
            "{text}"
        );
        // Every sample line is `name{labels} value` or `name value`.
        for l in text.lines().filter(|l| !l.starts_with('#')) {
            let value = l.rsplit(' ').next().unwrap();
            assert!(value.parse::<f64>().is_ok(), "{l}");
        }
    }

    #[test]
    fn only_the_cluster_s_networks_may_read() {
        let n = node();
        assert!(allowed(&n, "127.0.0.1".parse().unwrap()));
        assert!(
            !allowed(&n, "10.244.1.5".parse().unwrap()),
            "no config: no Pod network"
        );
        let (cfg, _) = config::generate::sample_controlplane();
        n.set_running_config(cfg, "test");
        assert!(allowed(&n, "10.244.1.5".parse().unwrap()));
        assert!(!allowed(&n, "192.0.2.1".parse().unwrap()));
    }
}
