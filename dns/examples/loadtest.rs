//! Load test for cairn-dns (see "Measured" in dns/README.md).
//!
//!   cargo run --release -p dns --example loadtest -- objects N > objects.json
//!       writes N ClusterIP Services, N/10 headless Services with 3 endpoints each
//!   cargo run --release -p dns --example loadtest -- run ADDR SECONDS WINDOW [NAME...]
//!       sends queries over UDP with WINDOW in flight for SECONDS and prints queries/s;
//!       names default to a mix of cluster A, SRV, PTR, NXDOMAIN and forwarded names.

use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RecordType};
use serde_json::json;
use tokio::net::UdpSocket;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("objects") => objects(args.get(1).and_then(|n| n.parse().ok()).unwrap_or(1000)),
        Some("run") if args.len() >= 4 => {
            let addr: SocketAddr = args[1].parse().expect("ADDR is IP:PORT");
            let seconds: u64 = args[2].parse().expect("SECONDS");
            let window: usize = args[3].parse().expect("WINDOW");
            let names = args[4..].to_vec();
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(run(addr, Duration::from_secs(seconds), window, names));
        }
        _ => eprintln!(
            "usage: loadtest objects N | loadtest run ADDR SECONDS WINDOW [NAME[/TYPE]...]"
        ),
    }
}

fn objects(count: usize) {
    let mut items = Vec::new();
    for i in 0..count {
        let ip = format!("10.96.{}.{}", 1 + i / 250, 1 + i % 250);
        items.push(json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": format!("svc{i}"), "namespace": format!("ns{}", i % 20)},
            "spec": {"clusterIP": ip, "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}}));
    }
    for i in 0..count / 10 {
        let ns = format!("ns{}", i % 20);
        items.push(json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": format!("db{i}"), "namespace": ns},
            "spec": {"clusterIP": "None", "ports": [{"name": "sql", "port": 5432}]}}));
        let addresses: Vec<_> = (0..3)
            .map(|j| json!({"ip": format!("10.244.{}.{}", i % 250, 1 + j), "hostname": format!("db{i}-{j}")}))
            .collect();
        items.push(json!({"apiVersion": "v1", "kind": "Endpoints",
            "metadata": {"name": format!("db{i}"), "namespace": ns},
            "subsets": [{"addresses": addresses, "ports": [{"name": "sql", "port": 5432}]}]}));
    }
    println!(
        "{}",
        json!({"apiVersion": "v1", "kind": "List", "items": items})
    );
}

fn query(name: &str, qtype: RecordType, id: u16) -> Vec<u8> {
    let mut message = Message::new(id, MessageType::Query, OpCode::Query);
    message.metadata.recursion_desired = true;
    message.add_query(Query::query(Name::from_str(name).unwrap(), qtype));
    message.set_edns(Edns::new());
    message.to_vec().unwrap()
}

async fn run(addr: SocketAddr, duration: Duration, window: usize, names: Vec<String>) {
    let names: Vec<(String, RecordType)> = if names.is_empty() {
        vec![
            ("svc1.ns1.svc.cluster.local.".into(), RecordType::A),
            ("svc777.ns17.svc.cluster.local.".into(), RecordType::A),
            (
                "_http._tcp.svc42.ns2.svc.cluster.local.".into(),
                RecordType::SRV,
            ),
            ("db3.ns3.svc.cluster.local.".into(), RecordType::A),
            ("2.1.96.10.in-addr.arpa.".into(), RecordType::PTR),
            ("google.com.ns1.svc.cluster.local.".into(), RecordType::A),
            ("svc1.ns1.svc.cluster.local.".into(), RecordType::AAAA),
        ]
    } else {
        names
            .iter()
            .map(|n| match n.split_once('/') {
                Some((name, t)) => (
                    name.to_string(),
                    RecordType::from_str(t).expect("record type"),
                ),
                None => (n.clone(), RecordType::A),
            })
            .collect()
    };
    let names = Arc::new(names);
    let answered = Arc::new(AtomicU64::new(0));
    let lost = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + duration;
    let mut workers = Vec::new();
    for worker in 0..window {
        let (names, answered, lost) = (names.clone(), answered.clone(), lost.clone());
        workers.push(tokio::spawn(async move {
            let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            socket.connect(addr).await.unwrap();
            let mut buf = [0u8; 4096];
            let mut n = worker;
            while Instant::now() < deadline {
                let (name, qtype) = &names[n % names.len()];
                n += 1;
                let id = n as u16;
                socket.send(&query(name, *qtype, id)).await.unwrap();
                match tokio::time::timeout(Duration::from_secs(1), socket.recv(&mut buf)).await {
                    Ok(Ok(len)) if len >= 2 && u16::from_be_bytes([buf[0], buf[1]]) == id => {
                        answered.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {
                        lost.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    for worker in workers {
        worker.await.unwrap();
    }
    let elapsed = start.elapsed().as_secs_f64();
    let answered = answered.load(Ordering::Relaxed);
    println!(
        "{answered} answers in {elapsed:.1} s: {:.0} queries/s, {} lost, window {window}",
        answered as f64 / elapsed,
        lost.load(Ordering::Relaxed)
    );
}
