//! The ClusterHealth RPC: Kubernetes as this control-plane node sees it,
//! one check each, in order: etcd (its service is healthy and lists its
//! members), kube-apiserver (`/readyz` on 127.0.0.1:6443 with the admin
//! kubeconfig), nodes (at least one, all Ready) and cluster DNS (the DNS
//! Service IP answers `kubernetes.default.svc.<domain>` with the
//! `kubernetes` Service IP, over UDP from the host network, through
//! kube-proxy's rules like a Pod's query).
//!
//! Checked on the node, so `cairnctl health` needs only the machine API
//! (the API server's port need not be reachable from the client).

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use api::machine::ClusterHealthCheck;
use config::constants::k8s;
use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RData, RecordType};
use k8s_openapi::api::core::v1::Node as KubeNode;
use kube::api::ListParams;
use kube::Api;

use runtime::Runtime;

/// The checks' names, in the order they are reported.
pub const ETCD: &str = "etcd";
pub const APISERVER: &str = "kube-apiserver";
pub const NODES: &str = "nodes";
pub const DNS: &str = "cluster-dns";

/// How long one DNS query may take.
const DNS_TIMEOUT: Duration = Duration::from_secs(3);

type Check = Result<String, String>;

fn result(name: &str, c: Check) -> ClusterHealthCheck {
    match c {
        Ok(message) => ClusterHealthCheck {
            name: name.into(),
            ok: true,
            message,
        },
        Err(message) => ClusterHealthCheck {
            name: name.into(),
            ok: false,
            message,
        },
    }
}

/// Every check, in order. A check whose prerequisite failed says so rather
/// than timing out on its own.
pub async fn checks(node: &Runtime) -> Vec<ClusterHealthCheck> {
    let mut out = vec![result(ETCD, etcd(node).await)];
    let client = match kube_client().await {
        Ok(c) => c,
        Err(e) => {
            for name in [APISERVER, NODES, DNS] {
                out.push(result(name, Err(e.clone())));
            }
            return out;
        }
    };
    out.push(result(APISERVER, apiserver(&client).await));
    out.push(result(NODES, nodes(&client).await));
    out.push(result(DNS, dns(node).await));
    out
}

async fn etcd(node: &Runtime) -> Check {
    let Some(h) = node.supervisor.handle(crate::etcd::SERVICE_ID) else {
        return Err(
            "etcd is not started on this node (not bootstrapped yet? `cairnctl bootstrap`)".into(),
        );
    };
    let s = h.snapshot();
    if s.health != runtime::supervisor::Health::Ok {
        let why = if s.health_message.is_empty() {
            s.message
        } else {
            s.health_message
        };
        return Err(format!("etcd {}: {why}", s.state));
    }
    let members = crate::etcd::members(node)
        .await
        .map_err(|e| e.to_string())?;
    Ok(format!("healthy, {} member(s)", members.len()))
}

/// A client for the local API server, as admin.
async fn kube_client() -> Result<kube::Client, String> {
    // The local API server: the endpoint may be a load balancer in front
    // of several, or not reachable from the node at all.
    let local = format!("https://127.0.0.1:{}", k8s::APISERVER_PORT);
    kube_client_for(Path::new(k8s::ADMIN_KUBECONFIG), &local).await
}

/// A client from the kubeconfig at `path`, talking to `server`.
pub async fn kube_client_for(path: &Path, server: &str) -> Result<kube::Client, String> {
    let kc = kube::config::Kubeconfig::read_from(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let mut config =
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await
            .map_err(|e| format!("{}: {e}", path.display()))?;
    config.cluster_url = server.parse().map_err(|e| format!("{server}: {e}"))?;
    config.connect_timeout = Some(Duration::from_secs(3));
    config.read_timeout = Some(Duration::from_secs(5));
    kube::Client::try_from(config).map_err(|e| format!("Kubernetes client: {e}"))
}

pub async fn apiserver(client: &kube::Client) -> Check {
    let req = http::Request::get("/readyz")
        .body(Vec::new())
        .map_err(|e| e.to_string())?;
    let text = client
        .request_text(req)
        .await
        .map_err(|e| format!("/readyz: {e}"))?;
    match text.trim() {
        "ok" => Ok("/readyz ok".into()),
        other => Err(format!("/readyz: {other}")),
    }
}

pub async fn nodes(client: &kube::Client) -> Check {
    let list = Api::<KubeNode>::all(client.clone())
        .list(&ListParams::default())
        .await
        .map_err(|e| format!("listing nodes: {e}"))?;
    match nodes_ready(&list.items) {
        (true, s) => Ok(s),
        (false, s) => Err(s),
    }
}

/// Whether every node is Ready, and a summary.
pub fn nodes_ready(nodes: &[KubeNode]) -> (bool, String) {
    if nodes.is_empty() {
        return (false, "no nodes registered yet".into());
    }
    let not_ready: Vec<String> = nodes
        .iter()
        .filter(|n| {
            let ready = n
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
                .is_some_and(|c| c.status == "True");
            !ready
        })
        .map(|n| n.metadata.name.clone().unwrap_or_default())
        .collect();
    let ready = nodes.len() - not_ready.len();
    if not_ready.is_empty() {
        (true, format!("{ready}/{} Ready", nodes.len()))
    } else {
        (
            false,
            format!(
                "{ready}/{} Ready; not Ready: {}",
                nodes.len(),
                not_ready.join(", ")
            ),
        )
    }
}

/// Cluster DNS answers `kubernetes.default` with the `kubernetes` Service
/// IP, asked at the DNS Service IP from this node.
pub async fn dns(node: &Runtime) -> Check {
    let cfg = node.running_config().ok_or("no running config")?;
    let server =
        crate::dns_service_ip(&cfg).ok_or("the service subnet has no 10th address for DNS")?;
    let want = cfg
        .cluster
        .network
        .service_subnets
        .first()
        .map(|s| crate::k8s_pki::first_service_ip(s.net()))
        .ok_or("no service subnet")?;
    let name = format!("kubernetes.default.svc.{}.", cfg.cluster.network.dns_domain);
    let got = resolve_a(SocketAddr::new(server, 53), &name, DNS_TIMEOUT).await?;
    if got.contains(&want) {
        Ok(format!("{server} answers {name} with {want}"))
    } else {
        Err(format!("{server} answers {name} with {got:?}, not {want}"))
    }
}

/// The A records `server` answers for `name` (one UDP query).
pub async fn resolve_a(
    server: SocketAddr,
    name: &str,
    timeout: Duration,
) -> Result<Vec<IpAddr>, String> {
    let qname = Name::from_ascii(name).map_err(|e| format!("{name}: {e}"))?;
    let mut query = Message::new(rand_id(), MessageType::Query, OpCode::Query);
    query.metadata.recursion_desired = true;
    query.add_query(Query::query(qname, RecordType::A));
    let bytes = query
        .to_vec()
        .map_err(|e| format!("encoding the query: {e}"))?;
    let bind: SocketAddr = if server.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        ([0u16; 8], 0).into()
    };
    let socket = tokio::net::UdpSocket::bind(bind)
        .await
        .map_err(|e| format!("UDP socket: {e}"))?;
    socket
        .connect(server)
        .await
        .map_err(|e| format!("{server}: {e}"))?;
    let exchange = async {
        socket.send(&bytes).await?;
        let mut buf = vec![0u8; 4096];
        loop {
            let n = socket.recv(&mut buf).await?;
            match Message::from_vec(&buf[..n]) {
                Ok(m) if m.metadata.id == query.metadata.id => return Ok(m),
                // Not ours (or garbage): keep waiting for the answer.
                _ => continue,
            }
        }
    };
    let answer: Message = tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| format!("{server} did not answer within {timeout:?}"))?
        .map_err(|e: std::io::Error| format!("{server}: {e}"))?;
    if answer.metadata.response_code != hickory_proto::op::ResponseCode::NoError {
        return Err(format!(
            "{server} answers {name}: {}",
            answer.metadata.response_code
        ));
    }
    Ok(answer
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            _ => None,
        })
        .collect())
}

/// A query id that differs between queries (not a security measure: the
/// socket is connected to the one server).
fn rand_id() -> u16 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    (nanos ^ (nanos >> 16)) as u16
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::rr::{rdata, Record};
    use k8s_openapi::api::core::v1::{NodeCondition, NodeStatus};

    fn node(name: &str, ready: &str) -> KubeNode {
        let mut n = KubeNode::default();
        n.metadata.name = Some(name.into());
        n.status = Some(NodeStatus {
            conditions: Some(vec![NodeCondition {
                type_: "Ready".into(),
                status: ready.into(),
                ..Default::default()
            }]),
            ..Default::default()
        });
        n
    }

    #[test]
    fn nodes_are_ready_only_when_all_are() {
        assert_eq!(nodes_ready(&[]), (false, "no nodes registered yet".into()));
        assert_eq!(
            nodes_ready(&[node("cp-1", "True")]),
            (true, "1/1 Ready".into())
        );
        let (ok, why) = nodes_ready(&[
            node("cp-1", "True"),
            node("w-1", "False"),
            node("w-2", "Unknown"),
        ]);
        assert!(!ok);
        assert_eq!(why, "1/3 Ready; not Ready: w-1, w-2");
    }

    /// A one-shot DNS server on 127.0.0.1 that answers with `ip` (after a
    /// stray packet with the wrong id, which the client must ignore).
    async fn server(ip: std::net::Ipv4Addr, rcode: hickory_proto::op::ResponseCode) -> SocketAddr {
        let s = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = s.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 512];
            let (n, peer) = s.recv_from(&mut buf).await.unwrap();
            let q = Message::from_vec(&buf[..n]).unwrap();
            let mut stray = Message::new(
                q.metadata.id.wrapping_add(1),
                MessageType::Response,
                OpCode::Query,
            );
            stray.metadata.response_code = hickory_proto::op::ResponseCode::NoError;
            s.send_to(&stray.to_vec().unwrap(), peer).await.unwrap();
            let mut r = Message::new(q.metadata.id, MessageType::Response, OpCode::Query);
            r.metadata.response_code = rcode;
            let qname = q.queries[0].name().clone();
            r.add_query(q.queries[0].clone());
            r.add_answer(Record::from_rdata(qname, 5, RData::A(rdata::A(ip))));
            s.send_to(&r.to_vec().unwrap(), peer).await.unwrap();
        });
        addr
    }

    #[tokio::test]
    async fn resolves_a_records_and_reports_failures() {
        let ip = "10.96.0.1".parse().unwrap();
        let addr = server(ip, hickory_proto::op::ResponseCode::NoError).await;
        let got = resolve_a(
            addr,
            "kubernetes.default.svc.cluster.local.",
            Duration::from_secs(2),
        )
        .await
        .unwrap();
        assert_eq!(got, vec![IpAddr::V4(ip)]);
        let addr = server(ip, hickory_proto::op::ResponseCode::NXDomain).await;
        let err = resolve_a(addr, "nope.svc.cluster.local.", Duration::from_secs(2))
            .await
            .unwrap_err();
        assert!(
            err.contains("NXDomain") || err.contains("Non-Existent"),
            "{err}"
        );
        // Nobody listening: a timeout, named.
        let silent = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let err = resolve_a(
            silent.local_addr().unwrap(),
            "x.",
            Duration::from_millis(200),
        )
        .await
        .unwrap_err();
        assert!(err.contains("did not answer"), "{err}");
    }
}
