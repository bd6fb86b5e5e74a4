//! The joining machine's side: a machine whose config has the OS CA
//! certificate but not its key (a worker) asks a control plane for its apid
//! certificate, with the join token, and keeps it: it asks again, with
//! backoff, until it gets one, again when the address it reaches the
//! control plane from changes or the config does, and renews it once two
//! thirds of its life have passed. Until the first certificate arrives apid
//! serves maintenance TLS (only Version and Disks; machined refuses an
//! anonymous apply once a config runs), and the console and the
//! `machinestatus` resource say what the join waits for.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

use api::security::security_client::SecurityClient;
use api::security::CertificateRequest;
use config::apid::{ApidMode, ApidSettings};
use config::constants::APID_JOIN_PORT;
use config::join::{self, JOIN_CERT_VALIDITY};
use config::pki::CertifiedKey;
use config::types::{PemCertificate, SubjectAltName};
use config::MachineConfig;
use runtime::resources::specs::EventType;
use runtime::resources::{kind, Filter, Watch};
use runtime::supervisor::backoff::Backoff;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};

use crate::secure::ApidSettingsFile;
use crate::state::Node;

/// Between failed requests: 2 s doubling to a minute.
const RETRY_FIRST: Duration = Duration::from_secs(2);
const RETRY_MAX: Duration = Duration::from_secs(60);
/// Bounds on one request.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("no route to {0}")]
    NoRoute(String),
    #[error("cannot make a key and request: {0}")]
    Csr(#[from] join::JoinError),
    #[error("cannot reach {endpoint}: {source}")]
    Connect {
        endpoint: String,
        source: tonic::transport::Error,
    },
    #[error("{endpoint} refused: {message}")]
    Refused { endpoint: String, message: String },
    #[error("{endpoint} answered with a certificate that does not fit: {0}", endpoint = .1)]
    BadAnswer(String, String),
    #[error("cannot write apid's settings: {0}")]
    Write(#[from] crate::secure::SecureError),
}

/// Whether `cfg` makes this machine ask a control plane for its apid
/// certificate (it holds the OS CA certificate but not the key).
pub fn needs_join(cfg: &MachineConfig) -> bool {
    cfg.machine.ca.key.is_none()
}

/// The control plane's join endpoint: the Kubernetes endpoint's host at
/// apid's join port.
pub fn join_endpoint(cfg: &MachineConfig) -> String {
    format!(
        "{}:{APID_JOIN_PORT}",
        cfg.cluster.control_plane.endpoint.host()
    )
}

/// The local address this machine reaches `host` from (the kernel's route
/// choice; nothing is sent).
pub fn source_address(host: &str, port: u16) -> Option<IpAddr> {
    use std::net::ToSocketAddrs as _;
    let host = host.trim_matches(|c| c == '[' || c == ']');
    let target: IpAddr = match host.parse() {
        Ok(ip) => ip,
        // A name: the resolver's first answer (blocking, but short).
        Err(_) => (host, port).to_socket_addrs().ok()?.next()?.ip(),
    };
    let bind: SocketAddr = if target.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let s = UdpSocket::bind(bind).ok()?;
    s.connect((target, port)).ok()?;
    s.local_addr().ok().map(|a| a.ip())
}

/// The names a joining machine asks for: the address the control plane
/// sees, loopback, `localhost` and its host name.
pub fn names(source: IpAddr, hostname: &str) -> Vec<SubjectAltName> {
    let mut v = vec![
        SubjectAltName::Ip(source),
        SubjectAltName::Ip(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        SubjectAltName::Ip(IpAddr::V6(Ipv6Addr::LOCALHOST)),
        SubjectAltName::Dns("localhost".into()),
    ];
    let h = SubjectAltName::Dns(hostname.to_string());
    if join::allowed_for_peer(source, &h) && hostname != "localhost" {
        v.push(h);
    }
    v
}

/// Asks the control plane at `endpoint` for a server certificate for
/// `names`, authenticated by `cfg`'s join token; the key is made here.
pub async fn request(
    cfg: &MachineConfig,
    endpoint: &str,
    names: &[SubjectAltName],
) -> Result<(CertifiedKey, PemCertificate), RequestError> {
    let common_name = names
        .iter()
        .find_map(|n| match n {
            SubjectAltName::Dns(d) if d != "localhost" => Some(d.clone()),
            _ => None,
        })
        .unwrap_or_else(|| names[0].to_string());
    let (key, csr) = {
        let names = names.to_vec();
        tokio::task::spawn_blocking(move || join::server_csr(&common_name, &names))
            .await
            .map_err(|e| RequestError::BadAnswer(format!("key task: {e}"), endpoint.into()))??
    };
    let host = endpoint
        .rsplit_once(':')
        .map(|(h, _)| h)
        .unwrap_or(endpoint)
        .trim_matches(|c| c == '[' || c == ']')
        .to_string();
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(cfg.machine.ca.crt.pem()))
        .domain_name(host);
    let connect = |source| RequestError::Connect {
        endpoint: endpoint.to_string(),
        source,
    };
    let channel = Endpoint::from_shared(format!("https://{endpoint}"))
        .map_err(connect)?
        .tls_config(tls)
        .map_err(connect)?
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT)
        .connect()
        .await
        .map_err(connect)?;
    let answer = SecurityClient::new(channel)
        .certificate(CertificateRequest {
            token: cfg.machine.token.as_str().to_string(),
            csr,
        })
        .await
        .map_err(|s| RequestError::Refused {
            endpoint: endpoint.to_string(),
            message: s.message().to_string(),
        })?
        .into_inner();
    let bad = |why: String| RequestError::BadAnswer(why, endpoint.to_string());
    let crt: PemCertificate = answer.crt.parse().map_err(bad)?;
    let ca: PemCertificate = answer.ca.parse().map_err(bad)?;
    if !config::pki::key_matches(&crt, &key) {
        return Err(bad("it is not for the key this node made".into()));
    }
    if ca != cfg.machine.ca.crt {
        return Err(bad("its CA is not the OS CA of this node's config".into()));
    }
    Ok((CertifiedKey { crt, key }, ca))
}

/// What the running certificate was issued for, and when to renew it.
struct Held {
    endpoint: String,
    names: Vec<SubjectAltName>,
    renew_at: SystemTime,
}

/// Keeps this machine's apid certificate for as long as its config needs
/// one from a control plane. Runs for the life of machined.
pub async fn run(node: Weak<Node>, files: Arc<ApidSettingsFile>) {
    let Some(store) = node.upgrade().map(|n| n.store.clone()) else {
        return;
    };
    let filter = Filter {
        kinds: vec![kind::MACHINE_CONFIG, kind::ADDRESSES, kind::HOSTNAME],
        id: None,
    };
    let mut watch = Watch::new(&store, filter, false);
    let mut held: Option<Held> = None;
    let mut backoff = Backoff::new(RETRY_FIRST, RETRY_MAX);
    loop {
        let Some(n) = node.upgrade() else { return };
        let wait = match n.running_config().filter(needs_join) {
            None => {
                held = None;
                set_status(&n, "");
                None
            }
            Some(cfg) => step(&n, &cfg, &files, &mut held, &mut backoff).await,
        };
        drop(n);
        match wait {
            Some(d) => {
                let _ = tokio::time::timeout(d, watch.next()).await;
            }
            None => {
                watch.next().await;
            }
        }
    }
}

/// One pass: asks when there is no fitting certificate or it is due for
/// renewal. Returns how long to wait at most before the next pass.
async fn step(
    node: &Node,
    cfg: &MachineConfig,
    files: &ApidSettingsFile,
    held: &mut Option<Held>,
    backoff: &mut Backoff,
) -> Option<Duration> {
    let endpoint = join_endpoint(cfg);
    let host = cfg.cluster.control_plane.endpoint.host().to_string();
    let Some(source) = source_address(&host, APID_JOIN_PORT) else {
        let e = RequestError::NoRoute(endpoint.clone());
        return Some(failed(node, &e, backoff));
    };
    let want = names(source, &node.hostname());
    let now = SystemTime::now();
    if let Some(h) = held {
        if h.endpoint == endpoint && h.names == want && now < h.renew_at {
            return h.renew_at.duration_since(now).ok();
        }
    }
    let renewing = held.is_some();
    set_status(
        node,
        &format!("asking {endpoint} for apid's certificate (as {source})"),
    );
    match request(cfg, &endpoint, &want).await {
        Ok((server, ca)) => {
            let settings = ApidSettings {
                mode: ApidMode::Secure,
                server,
                ca: Some(ca),
                forwarding: None,
                rbac: cfg.machine.features.rbac,
                join: false,
                members: crate::apid_members::hosts(&node.store, cfg),
            };
            if let Err(e) = files.write(&settings) {
                return Some(failed(node, &RequestError::Write(e), backoff));
            }
            backoff.reset();
            let what = if renewing { "renewed" } else { "received" };
            runtime::console!(
                "join: apid's certificate {what} from {endpoint}; apid serves mutual TLS"
            );
            node.events.record(
                EventType::Join,
                format!("apid certificate {what} from {endpoint}"),
            );
            set_status(node, "");
            let renew_at = now + JOIN_CERT_VALIDITY * 2 / 3;
            *held = Some(Held {
                endpoint,
                names: want,
                renew_at,
            });
            Some(JOIN_CERT_VALIDITY * 2 / 3)
        }
        Err(e) => Some(failed(node, &e, backoff)),
    }
}

fn failed(node: &Node, e: &RequestError, backoff: &mut Backoff) -> Duration {
    let delay = backoff.next_delay();
    let message = format!(
        "waiting for apid's certificate: {e}; asking again in {} s",
        delay.as_secs()
    );
    runtime::console!("join: {message}");
    set_status(node, &message);
    delay
}

fn set_status(node: &Node, message: &str) {
    if node.status().join != message {
        node.update_status(|s| s.join = message.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_asks_for_the_address_the_control_plane_sees_and_its_name() {
        let src: IpAddr = "10.5.0.3".parse().unwrap();
        let n = names(src, "worker-1");
        assert_eq!(n[0], SubjectAltName::Ip(src));
        assert!(n.contains(&SubjectAltName::Dns("worker-1".into())));
        // Everything asked for is something a control plane grants.
        assert!(n.iter().all(|s| join::allowed_for_peer(src, s)));
        // A dotted name is not asked for (it would be refused).
        assert!(
            !names(src, "w1.example.org").contains(&SubjectAltName::Dns("w1.example.org".into()))
        );
    }

    #[test]
    fn the_route_to_a_loopback_endpoint_starts_at_loopback() {
        assert_eq!(
            source_address("127.0.0.1", APID_JOIN_PORT),
            Some(IpAddr::V4(Ipv4Addr::LOCALHOST))
        );
        assert_eq!(source_address("no such host.invalid", APID_JOIN_PORT), None);
    }

    #[test]
    fn workers_join_and_control_planes_do_not() {
        let (cp, _) = config::generate::sample_controlplane();
        assert!(!needs_join(&cp));
        let mut w = cp.clone();
        w.machine.ca = w.machine.ca.without_key();
        assert!(needs_join(&w));
        assert_eq!(join_endpoint(&w), format!("10.5.0.2:{APID_JOIN_PORT}"));
    }
}
