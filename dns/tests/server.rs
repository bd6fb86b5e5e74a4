//! The server on a random local port, with an in-memory zone and a fake upstream
//! resolver (a tiny UDP + TCP server in this test), queried with hickory's client over
//! UDP and TCP.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use dns::answer::Resolver;
use dns::server::Server;
use dns::upstream::Forwarder;
use dns::zone::{Zone, ZoneSettings};
use hickory_net::client::{Client, ClientHandle};
use hickory_net::runtime::TokioRuntimeProvider;
use hickory_net::tcp::TcpClientStream;
use hickory_net::udp::UdpClientStream;
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, SOA};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, Service, ServicePort, ServiceSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Records the fake upstream serves. `big.example.` has more than fits in 512 bytes,
/// so over UDP it answers truncated and the forwarder must retry over TCP.
fn upstream_answer(query: &Query, tcp: bool) -> (ResponseCode, Vec<Record>, bool) {
    let name = query.name().to_lowercase().to_ascii();
    let a =
        |ip: [u8; 4]| Record::from_rdata(query.name().clone(), 60, RData::A(A(Ipv4Addr::from(ip))));
    match (name.as_str(), query.query_type()) {
        ("example.com.", RecordType::A) => (ResponseCode::NoError, vec![a([192, 0, 2, 1])], false),
        ("www.example.com.", RecordType::A) => {
            (ResponseCode::NoError, vec![a([192, 0, 2, 80])], false)
        }
        ("big.example.", RecordType::A) if !tcp => (ResponseCode::NoError, vec![], true),
        ("big.example.", RecordType::A) => (
            ResponseCode::NoError,
            (1..=60).map(|i| a([198, 51, 100, i])).collect(),
            false,
        ),
        _ => (ResponseCode::NXDomain, vec![], false),
    }
}

fn upstream_reply(request: &[u8], tcp: bool) -> Vec<u8> {
    let request = Message::from_vec(request).unwrap();
    let query = request.queries[0].clone();
    let (rcode, answers, truncated) = upstream_answer(&query, tcp);
    let mut reply = Message::new(request.metadata.id, MessageType::Response, OpCode::Query);
    reply.metadata.response_code = rcode;
    reply.metadata.truncation = truncated;
    reply.metadata.recursion_available = true;
    reply.add_query(query);
    reply.answers = answers;
    if rcode == ResponseCode::NXDomain {
        let soa = SOA::new(Name::root(), Name::root(), 1, 1, 1, 1, 30);
        reply.add_authority(Record::from_rdata(Name::root(), 60, RData::SOA(soa)));
    }
    reply.to_vec().unwrap()
}

/// A fake upstream on UDP and TCP of one port; counts the queries it gets.
async fn fake_upstream() -> (SocketAddr, Arc<AtomicUsize>) {
    let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = udp.local_addr().unwrap();
    let tcp = TcpListener::bind(addr).await.unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let udp_count = count.clone();
    tokio::spawn(async move {
        let mut buf = [0u8; 2048];
        loop {
            let (len, peer) = udp.recv_from(&mut buf).await.unwrap();
            udp_count.fetch_add(1, Ordering::SeqCst);
            udp.send_to(&upstream_reply(&buf[..len], false), peer)
                .await
                .unwrap();
        }
    });
    let tcp_count = count.clone();
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = tcp.accept().await.unwrap();
            tcp_count.fetch_add(1, Ordering::SeqCst);
            let len = stream.read_u16().await.unwrap();
            let mut buf = vec![0u8; len as usize];
            stream.read_exact(&mut buf).await.unwrap();
            let reply = upstream_reply(&buf, true);
            stream.write_u16(reply.len() as u16).await.unwrap();
            stream.write_all(&reply).await.unwrap();
        }
    });
    (addr, count)
}

fn meta(ns: &str, name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: Some(ns.into()),
        ..Default::default()
    }
}

fn cluster_objects() -> (Vec<Service>, Vec<Endpoints>) {
    let kubernetes = Service {
        metadata: meta("default", "kubernetes"),
        spec: Some(ServiceSpec {
            cluster_ip: Some("10.96.0.1".into()),
            ports: Some(vec![ServicePort {
                name: Some("https".into()),
                port: 443,
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    };
    let web = Service {
        metadata: meta("shop", "web"),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            ..Default::default()
        }),
        ..Default::default()
    };
    let web_endpoints = Endpoints {
        metadata: meta("shop", "web"),
        subsets: Some(vec![EndpointSubset {
            addresses: Some(vec![EndpointAddress {
                ip: "10.244.0.7".into(),
                hostname: Some("web-0".into()),
                ..Default::default()
            }]),
            ports: Some(vec![EndpointPort {
                name: Some("http".into()),
                port: 8080,
                ..Default::default()
            }]),
            ..Default::default()
        }]),
    };
    let search = Service {
        metadata: meta("default", "search"),
        spec: Some(ServiceSpec {
            type_: Some("ExternalName".into()),
            external_name: Some("www.example.com".into()),
            ..Default::default()
        }),
        ..Default::default()
    };
    (vec![kubernetes, web, search], vec![web_endpoints])
}

struct Running {
    addr: SocketAddr,
    upstream_queries: Arc<AtomicUsize>,
    zone_tx: tokio::sync::watch::Sender<Option<Arc<Zone>>>,
    probe: SocketAddr,
    ready: Arc<AtomicBool>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
}

/// Starts the server; the zone is published only when `synced`.
async fn start(synced: bool) -> Running {
    let (upstream, upstream_queries) = fake_upstream().await;
    let settings = ZoneSettings::new("cluster.local", 5).unwrap();
    let (services, endpoints) = cluster_objects();
    let zone = synced.then(|| Arc::new(Zone::build(&settings, &services, &endpoints)));
    let (zone_tx, zone_rx) = tokio::sync::watch::channel(zone);
    let resolver = Arc::new(Resolver::new(
        &settings.origin,
        zone_rx,
        Forwarder::new(vec![upstream], Duration::from_secs(2)),
    ));
    let tracker = TaskTracker::new();
    let shutdown = CancellationToken::new();
    let server = Server::new(resolver, tracker.clone(), shutdown.clone());
    let (udp, tcp) = dns::server::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let addr = udp.local_addr().unwrap();
    assert_eq!(
        tcp.local_addr().unwrap(),
        addr,
        "UDP and TCP share the port"
    );
    tracker.spawn(server.clone().serve_udp(udp));
    tracker.spawn(server.serve_tcp(tcp));
    let ready = Arc::new(AtomicBool::new(synced));
    let probe_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let probe = probe_listener.local_addr().unwrap();
    tracker.spawn(dns::probes::serve(
        probe_listener,
        ready.clone(),
        tracker.clone(),
        shutdown.clone(),
    ));
    Running {
        addr,
        upstream_queries,
        zone_tx,
        probe,
        ready,
        shutdown,
        tracker,
    }
}

async fn udp_client(addr: SocketAddr) -> Client<TokioRuntimeProvider> {
    let stream = UdpClientStream::builder(addr, TokioRuntimeProvider::default()).build();
    let (client, bg) = Client::<TokioRuntimeProvider>::from_sender(stream);
    tokio::spawn(bg);
    client
}

async fn tcp_client(addr: SocketAddr) -> Client<TokioRuntimeProvider> {
    let (stream, sender) = TcpClientStream::new(addr, None, None, TokioRuntimeProvider::new());
    let (client, bg) = Client::<TokioRuntimeProvider>::new(stream.await.unwrap(), sender);
    tokio::spawn(bg);
    client
}

async fn ask(client: &mut Client<TokioRuntimeProvider>, name: &str, qtype: RecordType) -> Message {
    let response = client
        .query(Name::from_str(name).unwrap(), DNSClass::IN, qtype)
        .await
        .unwrap_or_else(|e| panic!("{name} {qtype}: {e}"));
    response.into_message()
}

fn addresses(message: &Message) -> Vec<IpAddr> {
    message
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn cluster_names_over_udp_and_tcp() {
    let server = start(true).await;
    for mut client in [udp_client(server.addr).await, tcp_client(server.addr).await] {
        let reply = ask(
            &mut client,
            "kubernetes.default.svc.cluster.local.",
            RecordType::A,
        )
        .await;
        assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
        assert!(reply.metadata.authoritative);
        assert_eq!(addresses(&reply), vec![IpAddr::from([10, 96, 0, 1])]);
        assert_eq!(reply.answers[0].ttl, 5);

        let reply = ask(
            &mut client,
            "_https._tcp.kubernetes.default.svc.cluster.local.",
            RecordType::SRV,
        )
        .await;
        let RData::SRV(srv) = &reply.answers[0].data else {
            panic!("{reply:?}")
        };
        assert_eq!(
            (srv.port, srv.target.to_ascii().as_str()),
            (443, "kubernetes.default.svc.cluster.local.")
        );

        let reply = ask(&mut client, "web.shop.svc.cluster.local.", RecordType::A).await;
        assert_eq!(addresses(&reply), vec![IpAddr::from([10, 244, 0, 7])]);
        let reply = ask(
            &mut client,
            "web-0.web.shop.svc.cluster.local.",
            RecordType::A,
        )
        .await;
        assert_eq!(addresses(&reply), vec![IpAddr::from([10, 244, 0, 7])]);

        let reply = ask(&mut client, "1.0.96.10.in-addr.arpa.", RecordType::PTR).await;
        let RData::PTR(ptr) = &reply.answers[0].data else {
            panic!("{reply:?}")
        };
        assert_eq!(ptr.0.to_ascii(), "kubernetes.default.svc.cluster.local.");
        let reply = ask(&mut client, "7.0.244.10.in-addr.arpa.", RecordType::PTR).await;
        let RData::PTR(ptr) = &reply.answers[0].data else {
            panic!("{reply:?}")
        };
        assert_eq!(ptr.0.to_ascii(), "web-0.web.shop.svc.cluster.local.");
    }
    assert_eq!(
        server.upstream_queries.load(Ordering::SeqCst),
        0,
        "cluster names never go upstream"
    );
}

#[tokio::test]
async fn negative_answers_carry_the_soa() {
    let server = start(true).await;
    let mut client = udp_client(server.addr).await;

    let reply = ask(
        &mut client,
        "nope.default.svc.cluster.local.",
        RecordType::A,
    )
    .await;
    assert_eq!(reply.metadata.response_code, ResponseCode::NXDomain);
    assert!(reply.answers.is_empty());
    assert!(
        matches!(reply.authorities[0].data, RData::SOA(_)),
        "{reply:?}"
    );
    assert_eq!(reply.authorities[0].name.to_ascii(), "cluster.local.");

    let reply = ask(
        &mut client,
        "kubernetes.default.svc.cluster.local.",
        RecordType::AAAA,
    )
    .await;
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    assert!(reply.answers.is_empty());
    assert!(
        matches!(reply.authorities[0].data, RData::SOA(_)),
        "{reply:?}"
    );

    // The search path of a pod: names under the cluster domain are denied locally.
    let reply = ask(
        &mut client,
        "example.com.default.svc.cluster.local.",
        RecordType::A,
    )
    .await;
    assert_eq!(reply.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(server.upstream_queries.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn other_names_are_forwarded_and_cached() {
    let server = start(true).await;
    let mut client = udp_client(server.addr).await;

    let reply = ask(&mut client, "example.com.", RecordType::A).await;
    assert_eq!(addresses(&reply), vec![IpAddr::from([192, 0, 2, 1])]);
    assert!(!reply.metadata.authoritative);
    assert!(reply.metadata.recursion_available);
    assert_eq!(server.upstream_queries.load(Ordering::SeqCst), 1);
    let reply = ask(&mut client, "EXAMPLE.com.", RecordType::A).await;
    assert_eq!(addresses(&reply), vec![IpAddr::from([192, 0, 2, 1])]);
    assert!(reply.answers[0].ttl <= 60);
    assert_eq!(
        server.upstream_queries.load(Ordering::SeqCst),
        1,
        "the second answer came from the cache"
    );

    let reply = ask(&mut client, "missing.example.", RecordType::A).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::NXDomain);
    assert!(matches!(reply.authorities[0].data, RData::SOA(_)));

    // An ExternalName Service: the CNAME and the target's address from upstream.
    let reply = ask(
        &mut client,
        "search.default.svc.cluster.local.",
        RecordType::A,
    )
    .await;
    let RData::CNAME(cname) = &reply.answers[0].data else {
        panic!("{reply:?}")
    };
    assert_eq!(cname.0.to_ascii(), "www.example.com.");
    assert_eq!(addresses(&reply), vec![IpAddr::from([192, 0, 2, 80])]);
}

#[tokio::test]
async fn truncated_upstream_answers_are_fetched_over_tcp() {
    let server = start(true).await;
    // hickory's client sends EDNS (payload 1232): the 60 records fit.
    let mut client = udp_client(server.addr).await;
    let reply = ask(&mut client, "big.example.", RecordType::A).await;
    assert_eq!(addresses(&reply).len(), 60);
    assert_eq!(
        server.upstream_queries.load(Ordering::SeqCst),
        2,
        "one UDP, then one TCP query upstream"
    );

    // A client without EDNS gets a truncated answer over UDP, and all over TCP.
    let mut query = Message::new(7, MessageType::Query, OpCode::Query);
    query.metadata.recursion_desired = true;
    query.add_query(Query::query(
        Name::from_str("big.example.").unwrap(),
        RecordType::A,
    ));
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket
        .send_to(&query.to_vec().unwrap(), server.addr)
        .await
        .unwrap();
    let mut buf = [0u8; 4096];
    let (len, _) = tokio::time::timeout(Duration::from_secs(5), socket.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(len <= 512);
    let reply = Message::from_vec(&buf[..len]).unwrap();
    assert_eq!(reply.metadata.id, 7);
    assert!(reply.metadata.truncation);
    assert!(reply.answers.is_empty());

    let mut client = tcp_client(server.addr).await;
    let reply = ask(&mut client, "big.example.", RecordType::A).await;
    assert_eq!(addresses(&reply).len(), 60);
}

#[tokio::test]
async fn before_the_first_sync_cluster_names_fail_and_ready_is_503() {
    let server = start(false).await;
    let mut client = udp_client(server.addr).await;
    let err = client
        .query(
            Name::from_str("kubernetes.default.svc.cluster.local.").unwrap(),
            DNSClass::IN,
            RecordType::A,
        )
        .await;
    match err {
        Ok(reply) => assert_eq!(reply.metadata.response_code, ResponseCode::ServFail),
        Err(err) => assert!(err.to_string().to_lowercase().contains("servfail"), "{err}"),
    }
    // Other names are forwarded already.
    let reply = ask(&mut client, "example.com.", RecordType::A).await;
    assert_eq!(addresses(&reply), vec![IpAddr::from([192, 0, 2, 1])]);
    assert_eq!(http_status(server.probe, "/ready").await, 503);
    assert_eq!(http_status(server.probe, "/health").await, 200);

    let settings = ZoneSettings::new("cluster.local", 5).unwrap();
    let (services, endpoints) = cluster_objects();
    server.zone_tx.send_replace(Some(Arc::new(Zone::build(
        &settings, &services, &endpoints,
    ))));
    server.ready.store(true, Ordering::SeqCst);
    let reply = ask(
        &mut client,
        "kubernetes.default.svc.cluster.local.",
        RecordType::A,
    )
    .await;
    assert_eq!(addresses(&reply), vec![IpAddr::from([10, 96, 0, 1])]);
    assert_eq!(http_status(server.probe, "/ready").await, 200);
    assert_eq!(http_status(server.probe, "/metrics").await, 404);

    // Shutdown: the listeners stop and every task ends.
    server.shutdown.cancel();
    server.tracker.close();
    tokio::time::timeout(Duration::from_secs(5), server.tracker.wait())
        .await
        .expect("tasks end after shutdown");
}

async fn http_status(addr: SocketAddr, path: &str) -> u16 {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).await.unwrap();
    text.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{text}"))
}

#[tokio::test]
async fn without_upstreams_cluster_names_still_resolve() {
    let settings = ZoneSettings::new("cluster.local", 5).unwrap();
    let (services, endpoints) = cluster_objects();
    let zone = Arc::new(Zone::build(&settings, &services, &endpoints));
    let (_zone_tx, zone_rx) = tokio::sync::watch::channel(Some(zone));
    let resolver = Resolver::new(
        &settings.origin,
        zone_rx,
        Forwarder::new(vec![], Duration::from_secs(1)),
    );
    let mut request = Message::new(9, MessageType::Query, OpCode::Query);
    request.add_query(Query::query(
        Name::from_str("kubernetes.default.svc.cluster.local.").unwrap(),
        RecordType::A,
    ));
    assert_eq!(
        addresses(&resolver.respond(&request).await),
        vec![IpAddr::from([10, 96, 0, 1])]
    );
    request.queries[0] = Query::query(Name::from_str("example.com.").unwrap(), RecordType::A);
    assert_eq!(
        resolver.respond(&request).await.metadata.response_code,
        ResponseCode::ServFail
    );
}
