//! `make bench`, after the VM bench: the secure API on the host.
//!
//! - apid (the release binary, `target/release/apid`) on 127.0.0.1 with
//!   mutual TLS (an Ed25519 OS CA from `config::pki`, an admin client
//!   certificate), forwarding to machined's real API server in a child
//!   process on a unix socket (this binary re-run as `serve-machined`:
//!   machined itself only runs as PID 1);
//! - next to it, in the same run, a minimal tonic + rustls server with the
//!   same certificates that answers Version itself (`serve-baseline`);
//! - ServiceList through apid to machined and on machined's socket alone:
//!   the cost of the forwarding hop that every call but Version takes;
//! - for each: round-trip latency p50/p99 (one call at a time) and
//!   calls/s (16 calls in flight on one HTTP/2 connection);
//! - RSS of apid and machined after a warm-up, after 14,000 calls and
//!   after 36,000 calls through apid (it must not grow).

use std::convert::Infallible;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use api::machine::machine_service_client::MachineServiceClient;
use api::machine::VersionResponse;
use config::pki::{self, CertifiedKey, Role};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tonic::transport::{Channel, Endpoint};

const IN_FLIGHT: usize = 16;
const LATENCY_CALLS: usize = 2_000;
const THROUGHPUT_CALLS: usize = 10_000;
const TARGET_RATIO: f64 = 0.8;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("serve-machined") => serve_machined(Path::new(args.get(2).context("socket path")?)),
        Some("serve-baseline") => {
            serve_baseline(Path::new(args.get(2).context("certificate directory")?))
        }
        _ => bench(),
    }
}

/// A child process that is killed when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Proc {
    fn rss_kib(&self) -> anyhow::Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.0.id()))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .context("no VmRSS")
    }

    /// CPU time (user + system) the child used so far.
    fn cpu(&self) -> anyhow::Result<Duration> {
        cpu_of(&format!("/proc/{}/stat", self.0.id()))
    }

    /// Waits for the child's first stdout line (its "ready" signal).
    fn ready_line(&mut self) -> anyhow::Result<String> {
        let out = self.0.stdout.take().context("no stdout")?;
        let mut line = String::new();
        std::io::BufReader::new(out).read_line(&mut line)?;
        if line.is_empty() {
            bail!("the child exited before it was ready");
        }
        Ok(line.trim().to_string())
    }
}

/// utime + stime from a `/proc/<pid>/stat` file.
fn cpu_of(stat: &str) -> anyhow::Result<Duration> {
    let s = std::fs::read_to_string(stat)?;
    // Fields after the command name, which is in parentheses.
    let rest = s.rsplit_once(')').context("stat format")?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 =
        f.get(11).context("utime")?.parse::<u64>()? + f.get(12).context("stime")?.parse::<u64>()?;
    // /proc counts in USER_HZ, which is 100 on Linux whatever the kernel's HZ.
    Ok(Duration::from_millis(ticks * 10))
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// machined's API server with a configured node, as the child process.
fn serve_machined(socket: &Path) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let (tx, _rx) = tokio::sync::mpsc::channel(1);
        let node = Arc::new(machined::state::Node::new(
            host::cmdline::Cmdline::parse("cairn.slot=A"),
            runtime::supervisor::Supervisor::new(),
            Arc::new(runtime::supervisor::logbuf::LogRing::new(64 * 1024)),
            tx,
        ));
        node.set_hostname("bench");
        node.set_maintenance(false);
        let listener = machined::api::bind(socket, None)?;
        println!("ready");
        machined::api::serve(node, listener, socket).await?;
        Ok(())
    })
}

/// The minimal server: tonic's own rustls TLS with the same certificates
/// and client-certificate check, answering Version in place.
fn serve_baseline(dir: &Path) -> anyhow::Result<()> {
    use prost::Message as _;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let read = |n: &str| std::fs::read(dir.join(n)).with_context(|| format!("reading {n}"));
        let tls = tonic::transport::ServerTlsConfig::new()
            .identity(tonic::transport::Identity::from_pem(
                read("server.crt")?,
                read("server.key")?,
            ))
            .client_ca_root(tonic::transport::Certificate::from_pem(read("ca.crt")?));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        println!("{}", listener.local_addr()?.port());
        let reply = VersionResponse {
            version: config::version::VERSION.into(),
            hostname: "baseline".into(),
            ..Default::default()
        }
        .encode_to_vec();
        let svc = tower::service_fn(move |_req: http::Request<tonic::body::Body>| {
            let mut framed = Vec::with_capacity(reply.len() + 5);
            framed.push(0);
            framed.extend_from_slice(&(reply.len() as u32).to_be_bytes());
            framed.extend_from_slice(&reply);
            async move {
                let mut trailers = http::HeaderMap::new();
                trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
                let frames = futures::stream::iter([
                    Ok::<_, tonic::Status>(http_body::Frame::data(bytes::Bytes::from(framed))),
                    Ok(http_body::Frame::trailers(trailers)),
                ]);
                let body = tonic::body::Body::new(http_body_util::StreamBody::new(frames));
                Ok::<_, Infallible>(
                    http::Response::builder()
                        .header("content-type", "application/grpc")
                        .body(body)
                        .unwrap(),
                )
            }
        });
        tonic::transport::Server::builder()
            .tls_config(tls)?
            .serve_with_incoming(svc, nodelay(listener))
            .await?;
        Ok(())
    })
}

/// Accepted connections with Nagle's algorithm off, as apid's (tonic's
/// own `serve` does the same; `serve_with_incoming` leaves it to us).
fn nodelay(
    listener: tokio::net::TcpListener,
) -> impl futures::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    use futures::StreamExt as _;
    tokio_stream::wrappers::TcpListenerStream::new(listener).map(|s| {
        let s = s?;
        s.set_nodelay(true)?;
        Ok(s)
    })
}

/// An mTLS client of 127.0.0.1:port trusting `ca`, presenting `cert`.
async fn mtls_client(
    port: u16,
    ca: &CertifiedKey,
    cert: &CertifiedKey,
) -> anyhow::Result<MachineServiceClient<Channel>> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(ca.crt.der().to_vec()))?;
    let mut tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_client_auth_cert(
        vec![CertificateDer::from(cert.crt.der().to_vec())],
        PrivateKeyDer::from_pem_slice(cert.key.pem().as_bytes())?,
    )?;
    tls.alpn_protocols = vec![b"h2".to_vec()];
    let tls = tokio_rustls::TlsConnector::from(Arc::new(tls));
    let connector = tower::service_fn(move |_: tonic::transport::Uri| {
        let tls = tls.clone();
        async move {
            let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
            tcp.set_nodelay(true)?;
            let name = ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into());
            Ok::<_, std::io::Error>(TokioIo::new(tls.connect(name, tcp).await?))
        }
    });
    let channel = Endpoint::from_shared(format!("http://127.0.0.1:{port}"))?
        .connect_timeout(Duration::from_secs(5))
        .connect_with_connector(connector)
        .await?;
    Ok(MachineServiceClient::new(channel))
}

async fn unix_client(socket: PathBuf) -> anyhow::Result<MachineServiceClient<Channel>> {
    let channel = Endpoint::from_static("http://machined.invalid")
        .connect_with_connector(tower::service_fn(move |_| {
            let socket = socket.clone();
            async move {
                Ok::<_, std::io::Error>(TokioIo::new(
                    tokio::net::UnixStream::connect(socket).await?,
                ))
            }
        }))
        .await?;
    Ok(MachineServiceClient::new(channel))
}

struct Figures {
    p50: Duration,
    p99: Duration,
    calls_per_s: f64,
}

/// The call a measurement makes: Version (apid answers it itself) or
/// ServiceList (forwarded to machined: the cost of the second hop).
#[derive(Clone, Copy)]
enum Call {
    Version,
    ServiceList,
}

impl Call {
    async fn make(self, c: &mut MachineServiceClient<Channel>) -> Result<(), tonic::Status> {
        match self {
            Call::Version => c.version(()).await.map(drop),
            Call::ServiceList => c.service_list(()).await.map(drop),
        }
    }
}

/// Latency one call at a time, then throughput with [`IN_FLIGHT`] calls
/// in flight.
async fn measure(
    client: &MachineServiceClient<Channel>,
    call: Call,
    calls: usize,
) -> anyhow::Result<Figures> {
    let mut c = client.clone();
    let mut times = Vec::with_capacity(LATENCY_CALLS);
    for _ in 0..LATENCY_CALLS {
        let t = Instant::now();
        call.make(&mut c).await?;
        times.push(t.elapsed());
    }
    times.sort();
    let started = Instant::now();
    run_calls(client, call, calls).await?;
    let calls_per_s = calls as f64 / started.elapsed().as_secs_f64();
    Ok(Figures {
        p50: times[times.len() / 2],
        p99: times[times.len() * 99 / 100],
        calls_per_s,
    })
}

async fn run_calls(
    client: &MachineServiceClient<Channel>,
    call: Call,
    calls: usize,
) -> anyhow::Result<()> {
    let mut tasks = Vec::new();
    for i in 0..IN_FLIGHT {
        let mut c = client.clone();
        let n = calls / IN_FLIGHT + usize::from(i < calls % IN_FLIGHT);
        tasks.push(tokio::spawn(async move {
            for _ in 0..n {
                call.make(&mut c).await?;
            }
            Ok::<_, tonic::Status>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}

fn bench() -> anyhow::Result<()> {
    let exe = std::env::current_exe()?;
    let apid_bin = exe.with_file_name("apid");
    if !apid_bin.is_file() {
        bail!(
            "{} missing: build it first with `cargo build --release -p apid`",
            apid_bin.display()
        );
    }
    let dir = tempfile::tempdir()?;
    let secrets = config::generate::generate_secrets()?;
    let ca = secrets.certs.os.clone();
    let input = config::generate::GenerateInput::new(
        "bench".parse().map_err(anyhow::Error::msg)?,
        "https://127.0.0.1:6443"
            .parse()
            .map_err(anyhow::Error::msg)?,
        secrets,
    );
    let (cp, _, _) = config::generate::generate_configs(&input)?;
    let admin = pki::issue_client_cert(&ca, "bench", Role::Admin, pki::LEAF_VALIDITY)?;
    let settings = machined::secure::secure_settings(&cp, "bench", &[])?;
    let settings_dir = dir.path().join("apid");
    machined::secure::ApidSettingsFile::new(settings_dir.clone(), None).write(&settings)?;
    let certs = dir.path().join("baseline");
    std::fs::create_dir_all(&certs)?;
    std::fs::write(certs.join("server.crt"), settings.server.crt.pem())?;
    std::fs::write(certs.join("server.key"), settings.server.key.pem())?;
    std::fs::write(certs.join("ca.crt"), ca.crt.pem())?;

    let socket = dir.path().join("machined.sock");
    let mut machined = Proc(
        Command::new(&exe)
            .args(["serve-machined", socket.to_str().context("path")?])
            .stdout(Stdio::piped())
            .spawn()?,
    );
    machined
        .ready_line()
        .context("starting the machined API server")?;
    let port = free_port()?;
    let apid = Proc(
        Command::new(&apid_bin)
            .args([
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--machined-socket",
            ])
            .arg(&socket)
            .arg("--settings-dir")
            .arg(&settings_dir)
            .stderr(Stdio::null())
            .spawn()?,
    );
    let mut baseline = Proc(
        Command::new(&exe)
            .arg("serve-baseline")
            .arg(&certs)
            .stdout(Stdio::piped())
            .spawn()?,
    );
    let baseline_port: u16 = baseline.ready_line()?.parse().context("baseline port")?;

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(10);
        let to_apid = loop {
            let last = match mtls_client(port, &ca, &admin).await {
                Ok(c) => match c.clone().version(()).await {
                    Ok(_) => break c,
                    Err(s) => format!("Version through apid: {s}"),
                },
                Err(e) => format!("cannot reach apid: {e:#}"),
            };
            if Instant::now() > deadline {
                bail!("{last}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let v = to_apid.clone().version(()).await?.into_inner();
        anyhow::ensure!(
            !v.maintenance && !v.hostname.is_empty(),
            "unexpected Version through apid: {v:?}"
        );
        let to_baseline = mtls_client(baseline_port, &ca, &admin)
            .await
            .context("baseline")?;
        let to_machined = unix_client(socket.clone()).await?;

        eprintln!("api bench: warming up…");
        run_calls(&to_apid, Call::Version, 1_000).await?;
        run_calls(&to_apid, Call::ServiceList, 1_000).await?;
        run_calls(&to_baseline, Call::Version, 1_000).await?;
        let rss0 = (apid.rss_kib()?, machined.rss_kib()?);
        eprintln!("api bench: apid + machined…");
        let before = (apid.cpu()?, machined.cpu()?, cpu_of("/proc/self/stat")?);
        let through_apid = measure(&to_apid, Call::Version, THROUGHPUT_CALLS).await?;
        let after = (apid.cpu()?, machined.cpu()?, cpu_of("/proc/self/stat")?);
        let rss1 = (apid.rss_kib()?, machined.rss_kib()?);
        eprintln!("api bench: minimal tonic + rustls server…");
        let b_before = (baseline.cpu()?, cpu_of("/proc/self/stat")?);
        let minimal = measure(&to_baseline, Call::Version, THROUGHPUT_CALLS).await?;
        let b_after = (baseline.cpu()?, cpu_of("/proc/self/stat")?);
        eprintln!("api bench: ServiceList through apid to machined…");
        let forwarded = measure(&to_apid, Call::ServiceList, THROUGHPUT_CALLS).await?;
        eprintln!("api bench: ServiceList on machined's socket alone…");
        let direct = measure(&to_machined, Call::ServiceList, THROUGHPUT_CALLS).await?;
        eprintln!("api bench: 10,000 more calls through apid (half forwarded)…");
        run_calls(&to_apid, Call::Version, THROUGHPUT_CALLS / 2).await?;
        run_calls(&to_apid, Call::ServiceList, THROUGHPUT_CALLS / 2).await?;
        let rss2 = (apid.rss_kib()?, machined.rss_kib()?);

        let ratio = through_apid.calls_per_s / minimal.calls_per_s;
        println!();
        println!("Secure API on the host (mutual TLS, Ed25519 OS CA)");
        println!(
            "{:<26} {:>16} {:>16} {:>16} {:>16}",
            "", "Version: apid", "minimal tonic", "List: apid+md", "List: md socket"
        );
        let row = |name: &str, f: &dyn Fn(&Figures) -> String| {
            println!(
                "{name:<26} {:>16} {:>16} {:>16} {:>16}",
                f(&through_apid),
                f(&minimal),
                f(&forwarded),
                f(&direct)
            )
        };
        row("latency p50", &|f| ms(f.p50));
        row("latency p99", &|f| ms(f.p99));
        row(&format!("calls/s ({IN_FLIGHT} in flight)"), &|f| {
            format!("{:.0}", f.calls_per_s)
        });
        println!(
            "Version throughput of apid vs the minimal server: {:.0}% (target >= {:.0}%: {})",
            ratio * 100.0,
            TARGET_RATIO * 100.0,
            if ratio >= TARGET_RATIO {
                "met"
            } else {
                "NOT met"
            }
        );
        let per_call = |a: Duration, b: Duration| {
            format!(
                "{:.0} us",
                (b.saturating_sub(a)).as_secs_f64() * 1e6
                    / (LATENCY_CALLS + THROUGHPUT_CALLS) as f64
            )
        };
        println!(
            "CPU per Version call: apid {}, machined {}, client {}; minimal server {}, client {}",
            per_call(before.0, after.0),
            per_call(before.1, after.1),
            per_call(before.2, after.2),
            per_call(b_before.0, b_after.0),
            per_call(b_before.1, b_after.1),
        );
        println!(
            "RSS apid:     {} KiB after warm-up, {} KiB after 14,000 calls, {} KiB after 36,000",
            rss0.0, rss1.0, rss2.0
        );
        println!(
            "RSS machined: {} KiB after warm-up, {} KiB after 14,000 calls, {} KiB after 36,000",
            rss0.1, rss1.1, rss2.1
        );
        // Growth beyond allocator noise after the first 14,000 calls would
        // be a leak.
        let grew = |a: u64, b: u64| b > a + a / 10 + 512;
        if grew(rss1.0, rss2.0) || grew(rss1.1, rss2.1) {
            println!("RSS grew between 14,000 and 36,000 calls: a leak?");
        } else {
            println!("RSS does not grow between 14,000 and 36,000 calls");
        }
        Ok(())
    })?;
    drop((apid, baseline, machined));
    Ok(())
}
