//! A real `cairn-logstore` process on loopback, and a small HTTP client
//! for it (hyper), shared by the store's tests.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

pub type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

/// A free loopback port (bound, read, released).
pub fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

pub struct StoreProcess {
    pub child: Child,
    pub http: SocketAddr,
    pub tcp: SocketAddr,
    pub data: PathBuf,
    pub log: PathBuf,
    pub client: HttpClient,
}

pub fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

impl StoreProcess {
    /// Starts the store on `data` with `extra` flags and waits until ready.
    pub async fn start(data: &Path, extra: &[&str]) -> StoreProcess {
        let (http, tcp) = (free_addr(), free_addr());
        // Beside the test's files, not on the store's disk (which a test may fill).
        let log = std::env::temp_dir().join(format!("cairn-logstore-test-{}.log", http.port()));
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_cairn-logstore"))
            .arg("--data-dir")
            .arg(data)
            .arg(format!("--http-listen={http}"))
            .arg(format!("--tcp-listen={tcp}"))
            .arg("--commit-interval=50ms")
            .arg("--min-free-disk=0B")
            .args(extra)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(out)
            .spawn()
            .expect("starting cairn-logstore");
        let mut s = StoreProcess {
            child,
            http,
            tcp,
            data: data.to_path_buf(),
            log,
            client: client(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok((200, _)) = s.get_text("/readyz").await {
                return s;
            }
            if let Ok(Some(status)) = s.child.try_wait() {
                panic!("cairn-logstore exited with {status}: {}", s.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "cairn-logstore did not become ready: {}",
                s.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub async fn request(&self, method: &str, path: &str, body: Vec<u8>) -> (u16, Vec<u8>) {
        let req = hyper::Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.http))
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        let res = self
            .client
            .request(req)
            .await
            .expect("request to the store");
        let status = res.status().as_u16();
        let body = res.into_body().collect().await.unwrap().to_bytes().to_vec();
        (status, body)
    }

    pub async fn get_text(&self, path: &str) -> Result<(u16, String), String> {
        let req = hyper::Request::get(format!("http://{}{path}", self.http))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let res = self.client.request(req).await.map_err(|e| e.to_string())?;
        let status = res.status().as_u16();
        let body = res
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let (status, body) = self.request("GET", path, Vec::new()).await;
        (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
    }

    pub async fn ingest(&self, query: &str, lines: &[Value]) -> (u16, Value) {
        let mut body = Vec::new();
        for l in lines {
            body.extend(serde_json::to_vec(l).unwrap());
            body.push(b'\n');
        }
        let (status, body) = self
            .request("POST", &format!("/api/v1/ingest{query}"), body)
            .await;
        (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
    }

    /// `/api/v1/query?<params>`: (status, body); asserts 200 when `ok`.
    pub async fn query(&self, params: &str) -> Value {
        let (status, v) = self.get(&format!("/api/v1/query?{params}")).await;
        assert_eq!(status, 200, "query {params}: {v}");
        v
    }

    /// Every record of a query, following cursors with `limit` per page.
    pub async fn all(&self, params: &str, limit: usize) -> Vec<Value> {
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut p = format!("{params}&limit={limit}");
            if let Some(c) = &cursor {
                p.push_str(&format!("&cursor={c}"));
            }
            let v = self.query(&p).await;
            let records = v["records"].as_array().unwrap();
            assert!(records.len() <= limit);
            out.extend(records.iter().cloned());
            match v["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_string()),
                None => return out,
            }
        }
    }

    pub async fn health(&self) -> Value {
        self.get("/healthz").await.1
    }

    /// SIGTERM and wait; panics if it does not exit 0 within 15 s.
    pub fn stop(mut self) {
        rustix::process::kill_process(
            rustix::process::Pid::from_child(&self.child),
            rustix::process::Signal::TERM,
        )
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(
                    status.success(),
                    "store exited with {status}: {}",
                    self.log_text()
                );
                let _ = std::fs::remove_file(&self.log);
                return;
            }
            assert!(Instant::now() < deadline, "store did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for StoreProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !std::thread::panicking() {
            let _ = std::fs::remove_file(&self.log);
        }
    }
}

/// Waits until `f` returns Some, at most `secs` seconds.
pub async fn eventually<T, F, Fut>(secs: u64, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// RFC 3339 of now minus `secs` seconds (plus `nanos`).
pub fn ago(secs: i64, nanos: i64) -> String {
    let t = time::OffsetDateTime::now_utc() - time::Duration::seconds(secs)
        + time::Duration::nanoseconds(nanos);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

pub fn messages(records: &[Value]) -> Vec<String> {
    records
        .iter()
        .map(|r| r["message"].as_str().unwrap().to_string())
        .collect()
}
