//! The collector's test rig: a directory laid out like /var/log/pods with
//! a writer that appends CRI lines and rotates like the kubelet, the real
//! `cairn-logcollector` binary, and a real store process on loopback.
//!
//! The store runs as a separate process made from this test binary: it
//! re-executes itself with `CAIRN_TEST_LOGSTORE_ARGS` set, and the
//! `logstore_process` entry point runs `logstore::server::run` with those
//! arguments, the very function `cairn-logstore`'s main runs (Cargo builds
//! another package's binaries only for that package's own tests).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The environment variable that turns this test binary into a store.
pub const STORE_ARGS_ENV: &str = "CAIRN_TEST_LOGSTORE_ARGS";

/// The store process's body: called by the `logstore_process` entry.
pub fn store_process_main() {
    let Ok(args) = std::env::var(STORE_ARGS_ENV) else {
        return;
    };
    let args: Vec<String> = serde_json::from_str(&args).expect("store args");
    let args = <logstore::server::Args as clap::Parser>::parse_from(
        std::iter::once("cairn-logstore".to_string()).chain(args),
    );
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let result = rt.block_on(logstore::server::run(args));
    if let Err(e) = &result {
        eprintln!("cairn-logstore: {e}");
    }
    std::process::exit(i32::from(result.is_err()));
}

pub fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

fn log_file(name: &str) -> (PathBuf, std::fs::File) {
    let path = std::env::temp_dir().join(format!(
        "cairn-logcollector-test-{}-{name}.log",
        std::process::id()
    ));
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .unwrap();
    (path, f)
}

/// A child process killed when dropped.
pub struct Proc {
    pub child: Child,
    pub log: PathBuf,
}

impl Proc {
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn signal(&self, sig: rustix::process::Signal) {
        let _ = rustix::process::kill_process(rustix::process::Pid::from_child(&self.child), sig);
    }

    /// SIGKILL: a crash, nothing flushed.
    pub fn crash(mut self) {
        self.signal(rustix::process::Signal::KILL);
        let _ = self.child.wait();
    }

    /// SIGTERM and wait for exit 0.
    pub fn stop(mut self) {
        self.signal(rustix::process::Signal::TERM);
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                assert!(s.success(), "exited with {s}: {}", self.log_text());
                return;
            }
            assert!(
                Instant::now() < deadline,
                "no exit on SIGTERM: {}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Kept when a test fails, for its story (or with CAIRN_TEST_KEEP_LOGS).
        if !std::thread::panicking() && std::env::var_os("CAIRN_TEST_KEEP_LOGS").is_none() {
            let _ = std::fs::remove_file(&self.log);
        }
    }
}

/// A store process on `http` keeping its data in `data`.
pub fn start_store(data: &Path, http: SocketAddr) -> Proc {
    let args = vec![
        format!("--data-dir={}", data.display()),
        format!("--http-listen={http}"),
        "--tcp-listen=none".to_string(),
        "--commit-interval=50ms".to_string(),
        "--min-free-disk=0B".to_string(),
    ];
    let (log, out) = log_file(&format!("store-{}", http.port()));
    let child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "logstore_process",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(STORE_ARGS_ENV, serde_json::to_string(&args).unwrap())
        .stdout(Stdio::null())
        .stderr(out)
        .spawn()
        .unwrap();
    let p = Proc { child, log };
    wait_http(http, "/readyz", &p);
    p
}

/// The real collector binary.
pub fn start_collector(
    pods: &Path,
    state: &Path,
    store: SocketAddr,
    extra: &[&str],
) -> (Proc, SocketAddr) {
    let health = free_addr();
    let (log, out) = log_file(&format!("collector-{}", health.port()));
    let child = Command::new(env!("CARGO_BIN_EXE_cairn-logcollector"))
        .arg("--node-name=node-1")
        .arg(format!("--store=http://{store}"))
        .arg(format!("--pods-dir={}", pods.display()))
        .arg(format!("--state-dir={}", state.display()))
        .arg(format!("--health-listen={health}"))
        // Defaults for tests, unless `extra` sets them.
        .args(
            [
                "--batch-wait=100ms",
                "--scan-interval=200ms",
                "--poll-interval=50ms",
                "--retry-max=300ms",
            ]
            .into_iter()
            .filter(|d| {
                !extra
                    .iter()
                    .any(|e| e.split('=').next() == d.split('=').next())
            }),
        )
        .args(extra)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(out)
        .spawn()
        .unwrap();
    let p = Proc { child, log };
    wait_http(health, "/healthz", &p);
    (p, health)
}

/// A blocking HTTP/1.0 GET (the tests need nothing more).
pub fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    use std::io::Read as _;
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(20)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

fn wait_http(addr: SocketAddr, path: &str, p: &Proc) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok((200, _)) = http_get(addr, path) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{addr}{path} did not answer: {}", p.log_text());
}

/// Every record in the store matching `params`, following cursors.
pub fn all_records(store: SocketAddr, params: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor = String::new();
    loop {
        let (status, body) =
            http_get(store, &format!("/api/v1/query?limit=5000&{params}{cursor}")).expect("query");
        assert_eq!(status, 200, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        out.extend(v["records"].as_array().unwrap().iter().cloned());
        match v["next_cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => return out,
        }
    }
}

/// Counts of each message among `records`.
pub fn counts(records: &[Value]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for r in records {
        *m.entry(r["message"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    m
}

/// Waits until the store holds `n` records matching `params`; then checks
/// for a while that no more arrive (a late duplicate would).
pub fn wait_for_records(store: SocketAddr, params: &str, n: usize, secs: u64) -> Vec<Value> {
    try_wait_for_records(store, params, n, secs)
        .unwrap_or_else(|got| panic!("only {} of {n} records arrived in {secs} s", got.len()))
}

/// As [`wait_for_records`], but a timeout returns what did arrive, so the
/// caller can say which lines are missing.
pub fn try_wait_for_records(
    store: SocketAddr,
    params: &str,
    n: usize,
    secs: u64,
) -> Result<Vec<Value>, Vec<Value>> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let got = all_records(store, params);
        if got.len() >= n {
            std::thread::sleep(Duration::from_millis(800));
            return Ok(all_records(store, params));
        }
        if Instant::now() >= deadline {
            return Err(got);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The `expected` messages not among `records`, as runs `first..=last`.
pub fn missing_runs(records: &[Value], expected: &[String]) -> Vec<String> {
    let c = counts(records);
    let mut runs: Vec<(String, String)> = Vec::new();
    let mut open = false;
    for m in expected {
        if c.contains_key(m) {
            open = false;
        } else if open {
            runs.last_mut().unwrap().1 = m.clone();
        } else {
            runs.push((m.clone(), m.clone()));
            open = true;
        }
    }
    runs.into_iter()
        .map(|(a, b)| format!("{a}..={b}"))
        .collect()
}

/// Asserts that every one of `expected` is there exactly once.
pub fn assert_exactly_once(records: &[Value], expected: &[String]) {
    let c = counts(records);
    let missing: Vec<&String> = expected.iter().filter(|m| !c.contains_key(*m)).collect();
    let twice: Vec<(&String, &usize)> = c.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        missing.is_empty() && twice.is_empty(),
        "{} missing (first {:?}), {} more than once (first {:?})",
        missing.len(),
        missing.iter().take(5).collect::<Vec<_>>(),
        twice.len(),
        twice.iter().take(5).collect::<Vec<_>>()
    );
    assert_eq!(records.len(), expected.len());
}

/// A container's log directory, written the way containerd and the
/// kubelet do.
pub struct ContainerLog {
    pub dir: PathBuf,
    pub restart: u32,
    rotations: u32,
}

pub fn cri_time() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

impl ContainerLog {
    pub fn new(pods: &Path, namespace: &str, pod: &str, container: &str) -> ContainerLog {
        let dir = pods
            .join(format!("{namespace}_{pod}_uid-{pod}"))
            .join(container);
        std::fs::create_dir_all(&dir).unwrap();
        ContainerLog {
            dir,
            restart: 0,
            rotations: 0,
        }
    }

    pub fn current(&self) -> PathBuf {
        self.dir.join(format!("{}.log", self.restart))
    }

    /// Appends raw CRI text to the current file.
    pub fn append_raw(&self, text: &str) {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.current())
            .unwrap();
        f.write_all(text.as_bytes()).unwrap();
    }

    /// Appends full lines on stdout.
    pub fn write_lines(&self, messages: &[String]) {
        let t = cri_time();
        let text: String = messages
            .iter()
            .map(|m| format!("{t} stdout F {m}\n"))
            .collect();
        self.append_raw(&text);
    }

    /// The kubelet's rotation: the current file renamed with a
    /// timestamp, a new empty one in its place. Returns the renamed path.
    pub fn rotate(&mut self) -> PathBuf {
        self.rotations += 1;
        let to = self.dir.join(format!(
            "{}.log.20261205-0700{:02}",
            self.restart, self.rotations
        ));
        std::fs::rename(self.current(), &to).unwrap();
        std::fs::File::create(self.current()).unwrap();
        to
    }

    /// The kubelet's compression of a rotated file: `.gz.tmp`, renamed to
    /// `.gz`, the original removed.
    pub fn compress(&self, rotated: &Path) -> PathBuf {
        let data = std::fs::read(rotated).unwrap();
        let gz = PathBuf::from(format!("{}.gz", rotated.display()));
        let tmp = PathBuf::from(format!("{}.gz.tmp", rotated.display()));
        let mut e = flate2::write::GzEncoder::new(
            std::fs::File::create(&tmp).unwrap(),
            flate2::Compression::default(),
        );
        e.write_all(&data).unwrap();
        e.finish().unwrap().sync_all().unwrap();
        std::fs::rename(&tmp, &gz).unwrap();
        std::fs::remove_file(rotated).unwrap();
        gz
    }
}

/// The collector's /healthz as JSON.
pub fn health(addr: SocketAddr) -> Value {
    let (_, body) = http_get(addr, "/healthz").unwrap();
    serde_json::from_str(&body).unwrap_or(Value::Null)
}

/// Waits until `f` holds.
pub fn eventually(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
