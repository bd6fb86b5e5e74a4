//! `testpod resolve`: name lookups the way a Pod's programs do them, from
//! the Pod's /etc/resolv.conf (nameserver, search list, ndots), with
//! hickory's stub resolver.

use hickory_resolver::config::{ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::TokioResolver;
use std::net::IpAddr;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("reading {path}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not a usable resolv.conf: {message}")]
    Parse { path: String, message: String },
    #[error("resolving {name}: {message}")]
    Lookup { name: String, message: String },
    #[error("{name} has no addresses")]
    NoAddresses { name: String },
}

/// A resolver configured from a resolv.conf file.
pub fn from_resolv_conf(path: &Path) -> Result<TokioResolver, ResolveError> {
    let p = path.display().to_string();
    let data = std::fs::read(path).map_err(|source| ResolveError::Read {
        path: p.clone(),
        source,
    })?;
    let (config, opts) = hickory_resolver::system_conf::parse_resolv_conf(data).map_err(|e| {
        ResolveError::Parse {
            path: p.clone(),
            message: e.to_string(),
        }
    })?;
    with_config(config, opts).map_err(|message| ResolveError::Parse { path: p, message })
}

/// A resolver with an explicit configuration (tests point it at a local server).
pub fn with_config(config: ResolverConfig, opts: ResolverOpts) -> Result<TokioResolver, String> {
    TokioResolver::builder_with_config(config, TokioRuntimeProvider::default())
        .with_options(opts)
        .build()
        .map_err(|e| e.to_string())
}

/// The addresses of `name` (an IP literal is its own answer).
pub async fn resolve(resolver: &TokioResolver, name: &str) -> Result<Vec<IpAddr>, ResolveError> {
    if let Ok(ip) = name
        .trim_matches(|c| c == '[' || c == ']')
        .parse::<IpAddr>()
    {
        return Ok(vec![ip]);
    }
    let lookup = resolver
        .lookup_ip(name)
        .await
        .map_err(|e| ResolveError::Lookup {
            name: name.into(),
            message: e.to_string(),
        })?;
    let addrs: Vec<IpAddr> = lookup.iter().collect();
    if addrs.is_empty() {
        return Err(ResolveError::NoAddresses { name: name.into() });
    }
    Ok(addrs)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use hickory_proto::op::{Message, OpCode};
    use hickory_proto::rr::{rdata::A, RData, Record, RecordType};
    use hickory_resolver::config::{ConnectionConfig, NameServerConfig};
    use std::net::Ipv4Addr;

    /// A UDP DNS server on 127.0.0.1 that answers A queries for names under
    /// `zone` with `addr` and NXDOMAIN otherwise. Returns its port.
    pub async fn dns_server(zone: &'static str, addr: Ipv4Addr) -> u16 {
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let port = socket.local_addr().unwrap().port();
        tokio::spawn(async move {
            let mut buf = [0u8; 1500];
            loop {
                let (n, peer) = socket.recv_from(&mut buf).await.unwrap();
                let query = Message::from_vec(&buf[..n]).unwrap();
                let mut reply = Message::response(query.metadata.id, OpCode::Query);
                reply.metadata.recursion_desired = query.metadata.recursion_desired;
                reply.metadata.recursion_available = true;
                for q in &query.queries {
                    reply.add_query(q.clone());
                    let name = q.name().to_ascii();
                    if name.trim_end_matches('.').ends_with(zone) {
                        if q.query_type() == RecordType::A {
                            reply.add_answer(Record::from_rdata(
                                q.name().clone(),
                                30,
                                RData::A(A(addr)),
                            ));
                        }
                    } else {
                        reply.metadata.response_code = hickory_proto::op::ResponseCode::NXDomain;
                    }
                }
                socket
                    .send_to(&reply.to_vec().unwrap(), peer)
                    .await
                    .unwrap();
            }
        });
        port
    }

    pub fn resolver_for(port: u16, search: &[&str]) -> TokioResolver {
        let mut conn = ConnectionConfig::udp();
        conn.port = port;
        let ns = NameServerConfig::new("127.0.0.1".parse().unwrap(), true, vec![conn]);
        let mut config = ResolverConfig::from_name_servers(vec![ns]);
        for s in search {
            config.add_search(s.parse().unwrap());
        }
        let mut opts = ResolverOpts::default();
        opts.ndots = 5;
        opts.use_hosts_file = hickory_resolver::config::ResolveHosts::Never;
        with_config(config, opts).unwrap()
    }

    #[tokio::test]
    async fn short_name_uses_the_search_list() {
        let port = dns_server("svc.cluster.local", Ipv4Addr::new(10, 96, 0, 1)).await;
        let r = resolver_for(port, &["default.svc.cluster.local", "svc.cluster.local"]);
        let addrs = resolve(&r, "kubernetes.default").await.unwrap();
        assert_eq!(addrs, vec![IpAddr::from([10, 96, 0, 1])]);
        let addrs = resolve(&r, "kubernetes.default.svc.cluster.local")
            .await
            .unwrap();
        assert_eq!(addrs, vec![IpAddr::from([10, 96, 0, 1])]);
    }

    #[tokio::test]
    async fn unknown_name_is_an_error_naming_it() {
        let port = dns_server("svc.cluster.local", Ipv4Addr::new(10, 96, 0, 1)).await;
        let r = resolver_for(port, &[]);
        let err = resolve(&r, "nothing.example").await.unwrap_err();
        assert!(err.to_string().contains("nothing.example"), "{err}");
    }

    #[test]
    fn reads_a_pod_resolv_conf() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("resolv.conf");
        std::fs::write(
            &path,
            "nameserver 10.96.0.10\nsearch default.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n",
        )
        .unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async { from_resolv_conf(&path).unwrap() });
        let err = from_resolv_conf(&dir.path().join("missing")).err().unwrap();
        assert!(err.to_string().contains("missing"), "{err}");
    }
}
