//! `cargo bench -p logcollector --bench logging` (part of `make bench`):
//! the cluster logging pipeline on this host, release build.
//!
//! 1. Ingestion: 1,000,000 realistic container lines posted to a store
//!    process over HTTP (4 connections, 5,000-line batches, each
//!    acknowledged after its commit): lines/s, and the store's peak RSS.
//! 2. Query latency on those 1 M lines: p50 / p99 of several query shapes
//!    (newest page, a common and a rare word, a phrase, filters with a time
//!    range, text with a filter, ten pages deep by cursor).
//! 3. The collector under load: 20 containers writing 200,000 lines (with
//!    a rotation) read by the real `cairn-logcollector` and delivered to the
//!    store: end-to-end lines/s and the collector's peak RSS (target: at
//!    most 20 MiB).
//!
//! The store runs as a separate process made from this binary
//! (`CAIRN_BENCH_LOGSTORE_ARGS`), running `logstore::server::run`, the same
//! function `cairn-logstore` runs.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const STORE_ENV: &str = "CAIRN_BENCH_LOGSTORE_ARGS";
const LINES: usize = 1_000_000;
const BATCH: usize = 5_000;
const CONNECTIONS: usize = 4;
const COLLECTOR_CONTAINERS: usize = 20;
const COLLECTOR_LINES: usize = 200_000;

const WORDS: &[&str] = &[
    "request",
    "served",
    "GET",
    "POST",
    "/api/v1/pods",
    "/healthz",
    "status",
    "200",
    "404",
    "500",
    "latency",
    "ms",
    "user",
    "session",
    "cache",
    "miss",
    "hit",
    "connection",
    "refused",
    "timeout",
    "retrying",
    "upstream",
    "backend",
    "database",
    "query",
    "rows",
    "commit",
    "rollback",
    "worker",
    "started",
    "stopped",
    "queue",
    "depth",
    "bytes",
    "sent",
    "received",
    "TLS",
    "handshake",
    "certificate",
    "expired",
    "renewed",
    "lease",
    "acquired",
    "leader",
    "election",
    "watch",
    "event",
    "reconcile",
    "controller",
    "error",
    "warning",
    "info",
];

fn store_main(args: &str) -> ! {
    let args: Vec<String> = serde_json::from_str(args).expect("store args");
    let args = <logstore::server::Args as clap::Parser>::parse_from(
        std::iter::once("cairn-logstore".to_string()).chain(args),
    );
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("warn"))
        .with_writer(std::io::stderr)
        .init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let r = rt.block_on(logstore::server::run(args));
    std::process::exit(i32::from(r.is_err()))
}

fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// A tiny pseudo-random generator (reproducible data, no dependency).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn pick<'a>(&mut self, v: &[&'a str]) -> &'a str {
        v[(self.next() % v.len() as u64) as usize]
    }
}

fn message(rng: &mut Rng, i: usize) -> String {
    let n = 6 + (rng.next() % 12) as usize;
    let mut m = String::with_capacity(120);
    for _ in 0..n {
        m.push_str(rng.pick(WORDS));
        m.push(' ');
    }
    m.push_str(&format!("id={:x} seq={i}", rng.next() & 0xffff_ffff));
    // One line in 10,000 carries a rare word.
    if i % 10_000 == 7 {
        m.push_str(" zanzibar");
    }
    m
}

/// One HTTP/1.1 request on a fresh connection; returns (status, body).
fn http(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> (u16, Vec<u8>) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    s.write_all(body).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let head_end = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(0);
    let head = String::from_utf8_lossy(&out[..head_end]).to_string();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let mut body = out.split_off((head_end + 4).min(out.len()));
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    (status, body)
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(i) = b.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(std::str::from_utf8(&b[..i]).unwrap_or("0").trim(), 16)
            .unwrap_or(0);
        if size == 0 {
            break;
        }
        out.extend_from_slice(&b[i + 2..i + 2 + size]);
        b = &b[i + 2 + size + 2..];
    }
    out
}

/// (VmHWM, VmRSS) in KiB of a process.
fn rss(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let get = |k: &str| {
        status
            .lines()
            .find(|l| l.starts_with(k))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (get("VmHWM:"), get("VmRSS:"))
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn percentile(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_store(data: &Path, http_addr: SocketAddr) -> Killed {
    let args = vec![
        format!("--data-dir={}", data.display()),
        format!("--http-listen={http_addr}"),
        "--tcp-listen=none".into(),
        "--max-size=16GiB".into(),
        "--min-free-disk=0B".into(),
    ];
    let child = Command::new(std::env::current_exe().unwrap())
        .env(STORE_ENV, serde_json::to_string(&args).unwrap())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(http_addr).is_err() {
        assert!(Instant::now() < deadline, "the store did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    Killed(child)
}

fn ingest(store: SocketAddr, pid: u32) {
    let started = Instant::now();
    let per = LINES / CONNECTIONS;
    let mut bytes = 0usize;
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..CONNECTIONS)
            .map(|c| {
                s.spawn(move || {
                    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (c as u64 + 1));
                    let mut sent = 0usize;
                    let base = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
                    for b in 0..per / BATCH {
                        let mut body = String::with_capacity(BATCH * 260);
                        for k in 0..BATCH {
                            let i = c * per + b * BATCH + k;
                            // Spread over the last hour.
                            let t = base + time::Duration::microseconds(i as i64 * 3600);
                            let namespace = ["default", "kube-system", "shop", "batch"][i % 4];
                            let container = ["app", "sidecar"][i % 2];
                            let line = serde_json::json!({
                                "time": t.format(&time::format_description::well_known::Rfc3339).unwrap(),
                                "node": format!("node-{}", i % 3),
                                "namespace": namespace,
                                "pod": format!("app-{}", i % 50),
                                "container": container,
                                "stream": if i.is_multiple_of(11) { "stderr" } else { "stdout" },
                                "message": message(&mut rng, i),
                            });
                            body.push_str(&line.to_string());
                            body.push('\n');
                        }
                        sent += body.len();
                        let (status, resp) = http(store, "POST", "/api/v1/ingest", body.as_bytes());
                        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&resp));
                    }
                    sent
                })
            })
            .collect();
        bytes = handles.into_iter().map(|h| h.join().unwrap()).sum();
    });
    let secs = started.elapsed().as_secs_f64();
    let (hwm, now) = rss(pid);
    println!(
        "ingestion          {LINES} lines ({:.0} MiB of JSON) in {secs:.1} s: {:.0} lines/s ({CONNECTIONS} connections, {BATCH}-line batches, each acked after its commit)",
        bytes as f64 / 1048576.0,
        LINES as f64 / secs
    );
    println!(
        "store RSS          peak {} during ingestion, {} after",
        mib(hwm),
        mib(now)
    );
}

fn queries(store: SocketAddr) {
    let shapes: [(&str, String); 7] = [
        ("newest 100", "q=&limit=100".into()),
        ("common word", "q=timeout&limit=100".into()),
        ("rare word", "q=zanzibar&limit=100".into()),
        ("phrase", "q=%22connection%20refused%22&limit=100".into()),
        (
            "filters+since",
            "namespace=shop&pod=app-6&container=app&since=30m&limit=100".into(),
        ),
        (
            "text+filter",
            "q=error%20AND%20leader&node=node-1&stream=stdout&limit=100".into(),
        ),
        ("10 pages deep", String::new()),
    ];
    println!("query latency on {LINES} lines (p50 / p99 of 40 runs, HTTP on loopback):");
    for (name, params) in shapes {
        let mut times = Vec::new();
        let mut hits = 0;
        for _ in 0..40 {
            let t = Instant::now();
            if params.is_empty() {
                let mut cursor = String::new();
                for _ in 0..10 {
                    let (status, body) = http(
                        store,
                        "GET",
                        &format!("/api/v1/query?q=served&limit=100{cursor}"),
                        b"",
                    );
                    assert_eq!(status, 200);
                    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
                    cursor = format!("&cursor={}", v["next_cursor"].as_str().unwrap());
                    hits = v["records"].as_array().map_or(0, Vec::len);
                }
            } else {
                let (status, body) = http(store, "GET", &format!("/api/v1/query?{params}"), b"");
                assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
                let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
                hits = v["records"].as_array().map_or(0, Vec::len);
            }
            times.push(t.elapsed());
        }
        let p50 = percentile(&mut times, 0.5);
        let p99 = percentile(&mut times, 0.99);
        println!(
            "  {name:<16} p50 {:>7.1} ms   p99 {:>7.1} ms   ({hits} records per page)",
            p50.as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3
        );
    }
}

fn collector(store: SocketAddr, dir: &Path) {
    let pods = dir.join("pods");
    let state = dir.join("collector-state");
    let mut files = Vec::new();
    for c in 0..COLLECTOR_CONTAINERS {
        let d = pods.join(format!("bench_load-{c}_uid-{c}/app"));
        std::fs::create_dir_all(&d).unwrap();
        files.push(d);
    }
    let health = free_addr();
    let child = Command::new(env!("CARGO_BIN_EXE_cairn-logcollector"))
        .args([
            "--node-name=bench-node".to_string(),
            format!("--store=http://{store}"),
            format!("--pods-dir={}", pods.display()),
            format!("--state-dir={}", state.display()),
            format!("--health-listen={health}"),
        ])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let c = Killed(child);
    let pid = c.0.id();
    let started = Instant::now();
    // Writers: every container appends lines as fast as it can, and each
    // rotates once halfway.
    std::thread::scope(|s| {
        for (k, d) in files.iter().enumerate() {
            s.spawn(move || {
                let mut rng = Rng(0x1234_5678 + k as u64);
                let per = COLLECTOR_LINES / COLLECTOR_CONTAINERS;
                let t = time::OffsetDateTime::now_utc()
                    .format(&time::format_description::well_known::Rfc3339)
                    .unwrap();
                for half in 0..2 {
                    let mut f = std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(d.join("0.log"))
                        .unwrap();
                    let mut buf = String::new();
                    for i in 0..per / 2 {
                        let n = half * per / 2 + i;
                        buf.push_str(&format!(
                            "{t} stdout F collected-{k}-{n} {}\n",
                            message(&mut rng, n)
                        ));
                        if buf.len() > 64 * 1024 {
                            f.write_all(buf.as_bytes()).unwrap();
                            buf.clear();
                        }
                    }
                    f.write_all(buf.as_bytes()).unwrap();
                    if half == 0 {
                        std::fs::rename(d.join("0.log"), d.join("0.log.20261205-000000")).unwrap();
                    }
                }
            });
        }
    });
    let written = started.elapsed();
    // Wait until the store has every line (by the collector's own count).
    let mut delivered = 0u64;
    let mut peak = 0u64;
    let deadline = Instant::now() + Duration::from_secs(600);
    while delivered < COLLECTOR_LINES as u64 {
        assert!(
            Instant::now() < deadline,
            "the collector delivered only {delivered} lines"
        );
        std::thread::sleep(Duration::from_millis(100));
        peak = peak.max(rss(pid).1);
        let (_, body) = http(health, "GET", "/healthz", b"");
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        delivered = v["delivered_lines"].as_u64().unwrap_or(0);
    }
    let secs = started.elapsed().as_secs_f64();
    let (hwm, _) = rss(pid);
    println!(
        "collector          {COLLECTOR_LINES} lines from {COLLECTOR_CONTAINERS} containers (written in {:.1} s, one rotation each) delivered in {secs:.1} s: {:.0} lines/s end to end",
        written.as_secs_f64(),
        COLLECTOR_LINES as f64 / secs
    );
    println!(
        "collector RSS      peak {} (VmHWM; highest sampled VmRSS {}), target <= 20 MiB",
        mib(hwm),
        mib(peak)
    );
}

fn main() {
    if let Ok(args) = std::env::var(STORE_ENV) {
        store_main(&args);
    }
    // `cargo bench` passes --bench; a filter argument is not supported.
    let dir = tempfile::Builder::new()
        .prefix("cairn-logging-bench")
        .tempdir_in(option_env!("CARGO_TARGET_TMPDIR").map_or_else(std::env::temp_dir, Into::into))
        .unwrap();
    let store_addr = free_addr();
    let store = start_store(&dir.path().join("store"), store_addr);
    let pid = store.0.id();
    println!(
        "cluster logging bench (release build, this host: {} CPUs)",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    ingest(store_addr, pid);
    // Let the last commit's merges settle before timing queries.
    std::thread::sleep(Duration::from_secs(2));
    let (_, body) = http(store_addr, "GET", "/healthz", b"");
    let h: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    println!(
        "index              {} records, {:.0} MiB on disk",
        h["docs"],
        h["bytes"].as_f64().unwrap_or(0.0) / 1048576.0
    );
    queries(store_addr);
    collector(store_addr, dir.path());
    let (hwm, now) = rss(pid);
    println!(
        "store RSS          peak {} over the whole run, {} at the end",
        mib(hwm),
        mib(now)
    );
}
