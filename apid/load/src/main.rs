//! apid under load, for `make bench`: the release apid binary serves mutual
//! TLS on loopback in front of a fake machined (fake_machined.rs), and for
//! a bounded time
//! - legitimate clients (four per address, from 127.0.0.10 on) make a mix
//!   of cheap calls (Version, answered by apid; ServiceList, forwarded) and
//!   streaming calls (Logs), and slow readers hold endless log streams
//!   open;
//! - an attacker floods apid with TLS handshakes and keeps hundreds of
//!   half-open connections (from 127.0.0.1), and another one sends
//!   malformed HTTP/2 and gRPC frames (from 127.0.0.5; malformed.rs);
//! - a health probe (from 127.0.0.2) connects afresh and calls Version
//!   every 250 ms.
//!
//! It passes when apid is still running at the end, every probe succeeded
//! and apid's peak RSS (VmHWM) stayed under the bound; it prints calls/s,
//! p50/p99 latencies, errors and memory either way.

mod conn;
mod fake_machined;
mod malformed;
mod stats;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use api::machine::LogsRequest;
use clap::Parser;
use config::apid::{ApidMode, ApidSettings};
use config::pki::{self, CertifiedKey, Role};
use config::types::SubjectAltName;
use stats::Stats;
use tokio::io::AsyncWriteExt;

const FLOODER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
const PROBE: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
const MALFORMER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 5));

/// The address of legitimate client `n`: four per address.
fn client_address(n: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, 10 + (n / 4 % 200) as u8))
}

#[derive(Parser, Debug)]
struct Args {
    /// How long the load runs, in seconds.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Concurrent clients making calls, each on its own connection.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Clients reading endless log streams slowly.
    #[arg(long, default_value_t = 16)]
    slow_readers: usize,
    /// Half-open connections the attacker keeps (TCP only, or a partial
    /// TLS record).
    #[arg(long, default_value_t = 300)]
    half_open: usize,
    /// TLS handshakes per flood wave (one wave every 2 s).
    #[arg(long, default_value_t = 200)]
    flood: usize,
    /// The apid binary; by default the one beside this program.
    #[arg(long)]
    apid: Option<PathBuf>,
    /// The malformed-input attacks to run (by name; all by default).
    #[arg(long, value_delimiter = ',')]
    attacks: Vec<String>,
    /// Fail when apid's peak RSS exceeds this many MiB.
    #[arg(long, default_value_t = 128)]
    max_rss_mib: u64,
}

struct Kill(std::process::Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Setup {
    _dir: tempfile::TempDir,
    apid: Kill,
    addr: SocketAddr,
    ca: CertifiedKey,
    admin: CertifiedKey,
    reader: CertifiedKey,
    log: PathBuf,
}

fn apid_binary(arg: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    let path = match arg {
        Some(p) => p,
        None => std::env::current_exe()?
            .parent()
            .context("this program's directory")?
            .join("apid"),
    };
    anyhow::ensure!(
        path.is_file(),
        "no apid binary at {} (cargo build --release -p apid, or --apid PATH)",
        path.display()
    );
    Ok(path)
}

async fn setup(args: &Args) -> anyhow::Result<Setup> {
    let bin = apid_binary(args.apid.clone())?;
    let dir = tempfile::tempdir()?;
    let ca = pki::create_os_ca()?;
    let server = pki::issue_server_cert(
        &ca,
        "load",
        &[SubjectAltName::Ip(IpAddr::V4(Ipv4Addr::LOCALHOST))],
        pki::LEAF_VALIDITY,
    )?;
    let settings = ApidSettings {
        mode: ApidMode::Secure,
        server,
        ca: Some(ca.crt.clone()),
        forwarding: None,
        rbac: true,
        join: false,
        members: Vec::new(),
    };
    let settings_dir = dir.path().join("apid");
    std::fs::create_dir(&settings_dir)?;
    std::fs::write(
        settings_dir.join(config::apid::SETTINGS_FILE),
        settings.render(),
    )?;
    let socket = dir.path().join("machined.sock");
    fake_machined::start(&socket)?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port);
    let log = dir.path().join("apid.log");
    let child = std::process::Command::new(&bin)
        .arg("--listen")
        .arg(addr.to_string())
        .arg("--machined-socket")
        .arg(&socket)
        .arg("--settings-dir")
        .arg(&settings_dir)
        .stderr(std::fs::File::create(&log)?)
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let apid = Kill(child);
    let admin = pki::issue_client_cert(&ca, "load-admin", Role::Admin, pki::LEAF_VALIDITY)?;
    let reader = pki::issue_client_cert(&ca, "load-reader", Role::Reader, pki::LEAF_VALIDITY)?;
    let tls = conn::client_config(&ca, Some(&admin))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(mut c) = conn::client(PROBE, addr, tls.clone()).await {
            if c.version(()).await.is_ok() {
                break;
            }
        }
        anyhow::ensure!(Instant::now() < deadline, "apid did not come up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(Setup {
        _dir: dir,
        apid,
        addr,
        ca,
        admin,
        reader,
        log,
    })
}

/// One legitimate client: its own connection, a mix of calls.
async fn client(s: Arc<Shared>, n: usize) {
    let cert = if n.is_multiple_of(2) {
        &s.admin
    } else {
        &s.reader
    };
    let mut c = match conn::client(client_address(n), s.addr, cert.clone()).await {
        Ok(c) => c,
        Err(e) => return s.stats.error("connect", e.to_string()),
    };
    let mut i = n;
    while Instant::now() < s.until {
        i += 1;
        let started = Instant::now();
        let (op, r) = match i % 20 {
            0..=11 => ("Version", c.version(()).await.map(|_| ())),
            12..=16 => (
                "ServiceList (forwarded)",
                c.service_list(()).await.map(|_| ()),
            ),
            _ => {
                let req = LogsRequest {
                    id: "apid".into(),
                    tail_lines: -1,
                    ..Default::default()
                };
                let r = async {
                    let mut stream = c.logs(req).await?.into_inner();
                    let mut n = 0;
                    while let Some(m) = stream.message().await? {
                        n += m.bytes.len();
                    }
                    if n != 64 << 10 {
                        return Err(tonic::Status::data_loss(format!("{n} bytes of 65536")));
                    }
                    Ok(())
                }
                .await;
                ("Logs (64 KiB stream)", r)
            }
        };
        match r {
            Ok(()) => s.stats.ok(op, started.elapsed()),
            Err(e) => s.stats.error(op, status_label(&e)),
        }
    }
}

/// A failed call, for the report: its code, and its message cut short.
fn status_label(e: &tonic::Status) -> String {
    let m: String = e.message().chars().take(300).collect();
    format!("{:?} ({m})", e.code())
}

/// A client that reads an endless stream one message at a time, slowly.
async fn slow_reader(s: Arc<Shared>, n: usize) {
    let mut c = match conn::client(client_address(4 * n), s.addr, s.reader.clone()).await {
        Ok(c) => c,
        Err(e) => return s.stats.error("slow reader", e.to_string()),
    };
    let req = LogsRequest {
        id: "apid".into(),
        follow: true,
        ..Default::default()
    };
    let mut stream = match c.logs(req).await {
        Ok(r) => r.into_inner(),
        Err(e) => return s.stats.error("slow reader", format!("{:?}", e.code())),
    };
    while Instant::now() < s.until {
        let started = Instant::now();
        match stream.message().await {
            Ok(Some(m)) => {
                s.slow_bytes
                    .fetch_add(m.bytes.len() as u64, Ordering::Relaxed);
                s.stats.ok("slow reader message", started.elapsed());
            }
            Ok(None) => return s.stats.error("slow reader", "stream ended"),
            Err(e) => return s.stats.error("slow reader", format!("{:?}", e.code())),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Malformed HTTP/2 and gRPC input, attack after attack.
async fn malformed(s: Arc<Shared>, n: usize) {
    let mut i = n;
    if s.attacks.is_empty() {
        return;
    }
    while Instant::now() < s.until {
        let name = s.attacks[i % s.attacks.len()];
        i += 1;
        let started = Instant::now();
        match conn::tls(MALFORMER, s.addr, s.admin.clone()).await {
            Ok(tls) => match malformed::run(tls, name).await {
                Ok(_) => s.stats.ok("malformed frames sent", started.elapsed()),
                Err(e) => s.stats.error("malformed frames sent", e.to_string()),
            },
            Err(e) => s.stats.error("malformed frames sent", e.to_string()),
        }
    }
}

/// Waves of TLS handshakes that are closed at once, and handshakes
/// without a client certificate (refused).
async fn flood(s: Arc<Shared>, per_wave: usize) {
    while Instant::now() < s.until {
        let wave = Instant::now();
        let mut tasks = Vec::new();
        for i in 0..per_wave {
            let s = s.clone();
            tasks.push(tokio::spawn(async move {
                let started = Instant::now();
                if i.is_multiple_of(10) {
                    // No client certificate: apid must refuse. With TLS 1.3
                    // the refusal shows on the first read after the
                    // client's side of the handshake.
                    let op = "flood, no cert (refused)";
                    match conn::tls(FLOODER, s.addr, s.anonymous.clone()).await {
                        Ok(mut t) => {
                            let _ = t.write_all(b"x").await;
                            let mut b = [0u8; 1];
                            match tokio::time::timeout(
                                Duration::from_secs(10),
                                tokio::io::AsyncReadExt::read(&mut t, &mut b),
                            )
                            .await
                            {
                                Ok(Ok(0)) | Ok(Err(_)) => s.stats.ok(op, started.elapsed()),
                                _ => s.stats.error(op, "ACCEPTED without a certificate"),
                            }
                        }
                        Err(_) => s.stats.ok(op, started.elapsed()),
                    }
                    return;
                }
                let op = "flood handshake";
                match conn::tls(FLOODER, s.addr, s.admin.clone()).await {
                    Ok(_) => s.stats.ok(op, started.elapsed()),
                    Err(e) => s.stats.error(op, e.kind().to_string()),
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
        tokio::time::sleep(Duration::from_secs(2).saturating_sub(wave.elapsed())).await;
    }
}

/// Keeps `n` half-open connections: TCP that never speaks, or the first
/// bytes of a TLS record and then nothing. Reopens those apid closes.
async fn half_open(s: Arc<Shared>, n: usize) {
    let mut tasks = Vec::new();
    for i in 0..n {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            while Instant::now() < s.until {
                let Ok(mut tcp) = conn::tcp(FLOODER, s.addr).await else {
                    s.stats.error("half-open", "connect");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                };
                if i.is_multiple_of(4) {
                    let _ = tcp.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01]).await;
                }
                let held = Instant::now();
                let mut buf = [0u8; 64];
                let left = s.until.saturating_duration_since(Instant::now());
                let _ =
                    tokio::time::timeout(left, tokio::io::AsyncReadExt::read(&mut tcp, &mut buf))
                        .await;
                if Instant::now() < s.until {
                    // apid closed it: how long it let it hang. Then again,
                    // a little later (a tight loop would only load this
                    // program).
                    s.stats.ok("half-open closed by apid", held.elapsed());
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
}

/// A fresh connection and a Version call every 250 ms.
async fn probe(s: Arc<Shared>) {
    while Instant::now() < s.until {
        let tick = Instant::now();
        let r = tokio::time::timeout(Duration::from_secs(3), async {
            let mut c = conn::client(PROBE, s.addr, s.admin.clone()).await?;
            c.version(()).await?;
            anyhow::Ok(())
        })
        .await;
        match r {
            Ok(Ok(())) => s.stats.ok("health probe (new conn)", tick.elapsed()),
            Ok(Err(e)) => s.stats.error("health probe (new conn)", e.to_string()),
            Err(_) => s
                .stats
                .error("health probe (new conn)", "no answer within 3 s"),
        }
        tokio::time::sleep(Duration::from_millis(250).saturating_sub(tick.elapsed())).await;
    }
}

struct Shared {
    addr: SocketAddr,
    until: Instant,
    admin: Arc<rustls::ClientConfig>,
    reader: Arc<rustls::ClientConfig>,
    anonymous: Arc<rustls::ClientConfig>,
    stats: Stats,
    slow_bytes: AtomicU64,
    attacks: Vec<&'static str>,
}

fn main() -> anyhow::Result<ExitCode> {
    let args = Args::parse();
    // The fake machined's HTTP/2 warnings (RUST_LOG=h2=debug for more).
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("h2=warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut setup = setup(&args).await?;
    let pid = setup.apid.0.id();
    let idle_rss = stats::status_kib(pid, "VmRSS").unwrap_or(0);
    let started = Instant::now();
    let shared = Arc::new(Shared {
        addr: setup.addr,
        until: started + Duration::from_secs(args.seconds),
        admin: conn::client_config(&setup.ca, Some(&setup.admin))?,
        reader: conn::client_config(&setup.ca, Some(&setup.reader))?,
        anonymous: conn::client_config(&setup.ca, None)?,
        stats: Stats::default(),
        slow_bytes: AtomicU64::new(0),
        attacks: malformed::ATTACKS
            .iter()
            .copied()
            .filter(|a| args.attacks.is_empty() || args.attacks.iter().any(|x| x == a))
            .collect(),
    });
    eprintln!(
        "apid-load: apid pid {pid} on {}, {} s: {} clients, {} slow readers, {} half-open, \
         {} handshakes every 2 s, malformed frames; idle RSS {} KiB",
        setup.addr,
        args.seconds,
        args.clients,
        args.slow_readers,
        args.half_open,
        args.flood,
        idle_rss
    );
    let mut tasks = Vec::new();
    for n in 0..args.clients {
        tasks.push(tokio::spawn(client(shared.clone(), n)));
    }
    for n in 0..args.slow_readers {
        tasks.push(tokio::spawn(slow_reader(shared.clone(), n)));
    }
    for n in 0..2 {
        tasks.push(tokio::spawn(malformed(shared.clone(), n * 5)));
    }
    tasks.push(tokio::spawn(flood(shared.clone(), args.flood)));
    tasks.push(tokio::spawn(half_open(shared.clone(), args.half_open)));
    tasks.push(tokio::spawn(probe(shared.clone())));

    let (mut peak_rss, mut peak_fds) = (0, 0);
    let mut exited = None;
    while Instant::now() < shared.until {
        if let Some(rss) = stats::status_kib(pid, "VmRSS") {
            peak_rss = peak_rss.max(rss);
        }
        peak_fds = peak_fds.max(stats::open_fds(pid).unwrap_or(0));
        if let Ok(Some(status)) = setup.apid.0.try_wait() {
            exited = Some(status);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let hwm = stats::status_kib(pid, "VmHWM").unwrap_or(peak_rss);
    let end_rss = stats::status_kib(pid, "VmRSS").unwrap_or(0);
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(15), t).await;
    }
    let elapsed = started.elapsed();
    let after = stats::status_kib(pid, "VmRSS").unwrap_or(0);
    if exited.is_none() {
        if let Ok(Some(status)) = setup.apid.0.try_wait() {
            exited = Some(status);
        }
    }

    print!("{}", shared.stats.report(elapsed));
    println!(
        "slow readers took {} KiB in {:.0} s",
        shared.slow_bytes.load(Ordering::Relaxed) >> 10,
        elapsed.as_secs_f64()
    );
    println!(
        "apid RSS: idle {idle_rss} KiB, peak {} KiB (VmHWM {hwm} KiB), at the end of the load {end_rss} KiB, \
         after it {after} KiB; peak open descriptors {peak_fds}",
        peak_rss
    );
    let (probes_ok, probes_failed) = shared.stats.counts("health probe (new conn)");
    let mut failed = Vec::new();
    if let Some(status) = exited {
        failed.push(format!("apid exited: {status}"));
    }
    if probes_failed > 0 || probes_ok == 0 {
        failed.push(format!(
            "{probes_failed} of {} health probes failed",
            probes_ok + probes_failed
        ));
    }
    if hwm > args.max_rss_mib << 10 {
        failed.push(format!(
            "apid's peak RSS {} MiB is over {} MiB",
            hwm >> 10,
            args.max_rss_mib
        ));
    }
    let log_lines = std::fs::read_to_string(&setup.log)
        .map(|l| l.lines().count())
        .unwrap_or(0);
    println!("apid logged {log_lines} lines");
    if failed.is_empty() {
        println!("apid-load: PASS");
        Ok(ExitCode::SUCCESS)
    } else {
        println!("apid-load: FAIL: {}", failed.join("; "));
        Ok(ExitCode::FAILURE)
    }
}
