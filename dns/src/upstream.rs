//! Forwarding of names outside the cluster zone to the upstream resolvers (those of
//! /etc/resolv.conf unless `--upstream` names others): UDP first, TCP when the UDP
//! answer is truncated, a timeout per attempt, the next server on failure, and a
//! cache that honours TTLs.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::timeout_at;

use crate::cache::{Cache, CacheKey};

/// EDNS payload size advertised upstream and to clients: the DNS flag day 2020 value,
/// which avoids IP fragmentation.
pub const EDNS_PAYLOAD: u16 = 1232;
/// Number of answers the cache keeps.
pub const CACHE_ENTRIES: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("reading {path}: {source}")]
    ReadResolvConf {
        path: String,
        source: std::io::Error,
    },
    #[error("parsing {path}: {source}")]
    ParseResolvConf {
        path: String,
        source: resolv_conf::ParseError,
    },
    #[error("{path} names no nameserver; pass --upstream")]
    NoNameservers { path: String },
    #[error("upstream {value:?} is neither an IP address nor IP:PORT")]
    InvalidUpstream { value: String },
    #[error("no upstream resolver is configured (nameserver lines of resolv.conf or --upstream) for {name}")]
    NoUpstream { name: String },
    #[error("no upstream resolver answered {name} (tried {tried} times)")]
    NoAnswer { name: String, tried: usize },
    #[error("encoding the upstream query: {0}")]
    Encode(#[from] hickory_proto::ProtoError),
}

/// Why one exchange with one server failed (logged, then the next server is tried).
#[derive(Debug, thiserror::Error)]
enum ExchangeError {
    #[error("timed out")]
    Timeout,
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("malformed answer: {0}")]
    Decode(String),
}

impl From<tokio::time::error::Elapsed> for ExchangeError {
    fn from(_: tokio::time::error::Elapsed) -> Self {
        ExchangeError::Timeout
    }
}

/// The nameservers of a resolv.conf file, on port 53.
pub fn servers_from_resolv_conf(path: &Path) -> Result<Vec<SocketAddr>, UpstreamError> {
    let display = path.display().to_string();
    let text = std::fs::read(path).map_err(|source| UpstreamError::ReadResolvConf {
        path: display.clone(),
        source,
    })?;
    let config =
        resolv_conf::Config::parse(&text).map_err(|source| UpstreamError::ParseResolvConf {
            path: display.clone(),
            source,
        })?;
    let servers: Vec<SocketAddr> = config
        .nameservers
        .iter()
        .map(|ip| SocketAddr::new(IpAddr::from(ip), 53))
        .collect();
    if servers.is_empty() {
        return Err(UpstreamError::NoNameservers { path: display });
    }
    Ok(servers)
}

/// Parses `--upstream` values: `IP` (port 53) or `IP:PORT` (`[v6]:PORT` for IPv6).
pub fn parse_upstream(value: &str) -> Result<SocketAddr, UpstreamError> {
    value
        .parse::<SocketAddr>()
        .or_else(|_| value.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 53)))
        .map_err(|_| UpstreamError::InvalidUpstream {
            value: value.to_string(),
        })
}

pub struct Forwarder {
    servers: Vec<SocketAddr>,
    timeout: Duration,
    cache: Mutex<Cache>,
    /// Index of the server that answered last: tried first, so a dead first server
    /// costs one timeout, not one per query.
    preferred: AtomicUsize,
}

impl Forwarder {
    pub fn new(servers: Vec<SocketAddr>, timeout: Duration) -> Self {
        Self {
            servers,
            timeout,
            cache: Mutex::new(Cache::new(CACHE_ENTRIES)),
            preferred: AtomicUsize::new(0),
        }
    }

    pub fn servers(&self) -> &[SocketAddr] {
        &self.servers
    }

    /// Resolves one question upstream (or from the cache). The returned message carries
    /// the upstream's response code and sections; the caller copies them into its own
    /// response.
    pub async fn resolve(
        &self,
        query: &Query,
        checking_disabled: bool,
    ) -> Result<Message, UpstreamError> {
        if self.servers.is_empty() {
            return Err(UpstreamError::NoUpstream {
                name: query.name().to_string(),
            });
        }
        let key = CacheKey::new(query, checking_disabled);
        if let Some(hit) = self
            .cache
            .lock()
            .expect("cache lock")
            .get(&key, Instant::now())
        {
            return Ok(hit);
        }

        let mut request = Message::new(rand::random(), MessageType::Query, OpCode::Query);
        request.metadata.recursion_desired = true;
        request.metadata.checking_disabled = checking_disabled;
        request.add_query(query.clone());
        let mut edns = Edns::new();
        edns.set_max_payload(EDNS_PAYLOAD);
        request.set_edns(edns);
        let bytes = request.to_vec()?;

        let count = self.servers.len();
        let first = self.preferred.load(Ordering::Relaxed);
        let mut last_answer = None;
        // Two rounds over the servers: a lost UDP packet gets a second chance.
        let tries = count * 2;
        for attempt in 0..tries {
            let index = (first + attempt) % count;
            let server = self.servers[index];
            match exchange(server, &request, &bytes, self.timeout).await {
                Ok(answer) => {
                    let rcode = answer.metadata.response_code;
                    if (rcode == ResponseCode::ServFail || rcode == ResponseCode::Refused)
                        && attempt + 1 < count
                    {
                        tracing::debug!(%server, %rcode, name = %query.name(), "upstream refused; trying the next");
                        last_answer = Some(answer);
                        continue;
                    }
                    self.preferred.store(index, Ordering::Relaxed);
                    self.cache
                        .lock()
                        .expect("cache lock")
                        .insert(key, &answer, Instant::now());
                    return Ok(answer);
                }
                Err(err) => tracing::debug!(%server, %err, name = %query.name(), "upstream failed"),
            }
        }
        last_answer.ok_or_else(|| UpstreamError::NoAnswer {
            name: query.name().to_string(),
            tried: tries,
        })
    }
}

/// One question to one server: UDP, then TCP if the answer came back truncated.
async fn exchange(
    server: SocketAddr,
    request: &Message,
    bytes: &[u8],
    timeout: Duration,
) -> Result<Message, ExchangeError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let local: SocketAddr = match server {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(local).await?;
    socket.connect(server).await?;
    socket.send(bytes).await?;
    let mut buf = vec![0u8; usize::from(EDNS_PAYLOAD).max(4096)];
    loop {
        let len = timeout_at(deadline, socket.recv(&mut buf)).await??;
        // Anything that is not the answer to this exact question (a late answer to an
        // earlier query, a spoofing attempt) is ignored and the wait goes on.
        let Ok(answer) = Message::from_vec(&buf[..len]) else {
            continue;
        };
        if !answers(request, &answer) {
            continue;
        }
        if answer.metadata.truncation {
            return exchange_tcp(server, request, bytes, deadline + timeout).await;
        }
        return Ok(answer);
    }
}

async fn exchange_tcp(
    server: SocketAddr,
    request: &Message,
    bytes: &[u8],
    deadline: tokio::time::Instant,
) -> Result<Message, ExchangeError> {
    let mut stream = timeout_at(deadline, TcpStream::connect(server)).await??;
    let mut framed = Vec::with_capacity(bytes.len() + 2);
    framed.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
    framed.extend_from_slice(bytes);
    timeout_at(deadline, stream.write_all(&framed)).await??;
    loop {
        let len = timeout_at(deadline, stream.read_u16()).await??;
        let mut buf = vec![0u8; usize::from(len)];
        timeout_at(deadline, stream.read_exact(&mut buf)).await??;
        let answer = Message::from_vec(&buf).map_err(|e| ExchangeError::Decode(e.to_string()))?;
        if answers(request, &answer) {
            return Ok(answer);
        }
    }
}

/// Whether `answer` is the response to `request`: same id, same question.
fn answers(request: &Message, answer: &Message) -> bool {
    answer.metadata.message_type == MessageType::Response
        && answer.metadata.id == request.metadata.id
        && answer.queries.len() == request.queries.len()
        && answer.queries.iter().zip(&request.queries).all(|(a, q)| {
            a.query_type() == q.query_type()
                && a.query_class() == q.query_class()
                && a.name().eq_ignore_root_case(q.name())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_values() {
        assert_eq!(
            parse_upstream("10.0.2.3").unwrap(),
            "10.0.2.3:53".parse().unwrap()
        );
        assert_eq!(
            parse_upstream("127.0.0.1:5353").unwrap(),
            "127.0.0.1:5353".parse().unwrap()
        );
        assert_eq!(
            parse_upstream("fd00::1").unwrap(),
            "[fd00::1]:53".parse().unwrap()
        );
        assert_eq!(
            parse_upstream("[fd00::1]:54").unwrap(),
            "[fd00::1]:54".parse().unwrap()
        );
        assert!(parse_upstream("dns.example").is_err());
    }

    #[test]
    fn resolv_conf_nameservers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("resolv.conf");
        std::fs::write(
            &path,
            "search example\nnameserver 10.0.2.3\nnameserver fd00::3\noptions ndots:1\n",
        )
        .unwrap();
        let servers = servers_from_resolv_conf(&path).unwrap();
        assert_eq!(
            servers,
            vec![
                "10.0.2.3:53".parse().unwrap(),
                "[fd00::3]:53".parse().unwrap()
            ]
        );

        std::fs::write(&path, "search example\n").unwrap();
        let err = servers_from_resolv_conf(&path).unwrap_err().to_string();
        assert!(err.contains("names no nameserver"), "{err}");
        let err = servers_from_resolv_conf(&dir.path().join("missing"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing"), "{err}");
    }
}
