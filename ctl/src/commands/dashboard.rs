//! `cairnctl dashboard`: a live view of one or more nodes in the terminal.
//! Every refresh asks each node over the session's mTLS connections (the
//! same calls as `version`, `memory`, `processes`, `services`, `get` and
//! `logs`; CPU and load come from the node's /proc/stat and /proc/loadavg
//! through ReadFile, which needs the admin role) and redraws. The terminal
//! is put back (cooked mode, main screen, cursor) however the verb ends.

mod view;
pub mod web;

use std::collections::HashMap;
use std::io::Stdout;
use std::process::ExitCode;
use std::time::Duration;

use api::machine::{LogsRequest, ReadFileRequest, ResourceListRequest};
use crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use crossterm::terminal::{self, EnterAlternateScreen, LeaveAlternateScreen};
use ratatui::backend::CrosstermBackend;
use ratatui::Terminal;
use tokio::sync::mpsc;

use crate::global::GlobalArgs;
use crate::session::{NodeClient, Session};
pub use view::{Dashboard, NodeView, ProcessRow, ServiceRow};

#[derive(clap::Args, Debug)]
#[command(after_help = "\
Examples:
  cairnctl -n 10.5.0.2 dashboard
  cairnctl -n 10.5.0.2,10.5.0.3 dashboard --interval 5s --log kubelet
  cairnctl -n 10.5.0.2 dashboard --web            # the cluster's Web UI
  cairnctl dashboard --web --kubeconfig ~/.kube/config --port 9443

--web forwards https://127.0.0.1:<port> to the Web UI add-on (Service
kube-system/cairn-webui) through the Kubernetes API, with the admin
kubeconfig from the node (or --kubeconfig), prints the URL and how to get a
sign-in token, and runs until Ctrl-C.

Keys: q (or Esc, Ctrl-C) quits, Left/Right or Tab and 1-9 switch between
nodes, r refreshes now. CPU is the busy share of all CPUs between two
refreshes.")]
pub struct Args {
    /// Time between refreshes.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub interval: Duration,
    /// The service whose last log lines are shown.
    #[arg(long, default_value = "machined")]
    pub log: String,
    /// Open the cluster's Web UI instead: forward it to 127.0.0.1.
    #[arg(long)]
    pub web: bool,
    /// With --web: the local port (0 picks a free one).
    #[arg(long, default_value_t = 8443, requires = "web")]
    pub port: u16,
    /// With --web: a kubeconfig to use instead of fetching the admin one
    /// from the node.
    #[arg(long, requires = "web")]
    pub kubeconfig: Option<std::path::PathBuf>,
}

/// How many processes and log lines a sample keeps.
const PROCESSES: usize = 30;
const LOG_LINES: i32 = 30;

/// What the previous sample of a node left for computing rates.
#[derive(Default, Clone)]
struct Previous {
    /// (busy, total) jiffies from /proc/stat.
    cpu: Option<(u64, u64)>,
    /// CPU seconds of each pid.
    processes: HashMap<i32, f64>,
    at: Option<std::time::Instant>,
}

/// Busy and total jiffies from /proc/stat's aggregate `cpu` line.
pub fn parse_stat(stat: &str) -> Option<(u64, u64)> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    let total: u64 = fields.iter().take(8).sum();
    // idle + iowait
    let idle = fields.get(3)? + fields.get(4).copied().unwrap_or(0);
    Some((total.saturating_sub(idle), total))
}

/// The busy share between two samples of [`parse_stat`].
pub fn cpu_share(before: (u64, u64), after: (u64, u64)) -> Option<f64> {
    let total = after.1.checked_sub(before.1)?;
    let busy = after.0.checked_sub(before.0)?;
    (total > 0).then(|| busy as f64 / total as f64)
}

/// The three load averages from /proc/loadavg.
pub fn parse_loadavg(text: &str) -> Option<[f64; 3]> {
    let mut it = text.split_whitespace().map(|f| f.parse::<f64>().ok());
    Some([it.next()??, it.next()??, it.next()??])
}

/// One ReadFile as text.
async fn read_file(c: &NodeClient, path: &str) -> Result<String, String> {
    let request = c.request(ReadFileRequest { path: path.into() });
    let mut stream = c
        .machine()
        .read_file(request)
        .await
        .map_err(|s| c.explain(&s, "ReadFile"))?
        .into_inner();
    let mut bytes = Vec::new();
    while let Some(d) = stream
        .message()
        .await
        .map_err(|s| c.explain(&s, "ReadFile"))?
    {
        bytes.extend_from_slice(&d.bytes);
    }
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

async fn logs(c: &NodeClient, id: &str) -> Result<Vec<String>, String> {
    let request = c.request(LogsRequest {
        id: id.into(),
        follow: false,
        tail_lines: LOG_LINES,
        kubernetes: false,
    });
    let mut stream = c
        .machine()
        .logs(request)
        .await
        .map_err(|s| c.explain(&s, "Logs"))?
        .into_inner();
    let mut bytes = Vec::new();
    while let Some(d) = stream.message().await.map_err(|s| c.explain(&s, "Logs"))? {
        bytes.extend_from_slice(&d.bytes);
    }
    Ok(String::from_utf8_lossy(&bytes)
        .lines()
        .map(str::to_string)
        .collect())
}

async fn resource_ids(c: &NodeClient, kind: &str) -> Result<Vec<(String, String)>, String> {
    let list = c
        .call(
            "ResourceList",
            ResourceListRequest {
                namespace: String::new(),
                r#type: kind.into(),
            },
            |mut m, r| async move { m.resource_list(r).await },
        )
        .await?;
    Ok(list
        .resources
        .into_iter()
        .map(|r| (r.metadata.map(|m| m.id).unwrap_or_default(), r.spec))
        .collect())
}

/// "stage, apid mode" from the machinestatus resource's YAML spec.
pub fn machine_status(spec: &str) -> String {
    let Ok(v) = serde_yaml::from_str::<serde_yaml::Value>(spec) else {
        return spec.trim().to_string();
    };
    let field = |k: &str| match &v[k] {
        serde_yaml::Value::String(s) => s.clone(),
        serde_yaml::Value::Null => String::new(),
        other => serde_yaml::to_string(other)
            .unwrap_or_default()
            .trim()
            .to_string(),
    };
    let (stage, apid) = (field("stage"), field("apid"));
    match (stage.is_empty(), apid.is_empty()) {
        (false, false) => format!("{stage}, apid {apid}"),
        (false, true) => stage,
        _ => spec.trim().to_string(),
    }
}

/// A fresh sample of one node into `view`, with rates against `prev`.
async fn sample(c: NodeClient, log_id: String, prev: Previous) -> (NodeView, Previous) {
    let (version, memory, processes, services, status, addresses, stat, loadavg, log) = tokio::join!(
        c.call("Version", (), |mut m, r| async move { m.version(r).await }),
        c.call("Memory", (), |mut m, r| async move { m.memory(r).await }),
        c.call(
            "Processes",
            (),
            |mut m, r| async move { m.processes(r).await }
        ),
        c.call("ServiceList", (), |mut m, r| async move {
            m.service_list(r).await
        }),
        resource_ids(&c, "machinestatus"),
        resource_ids(&c, "addresses"),
        read_file(&c, "/proc/stat"),
        read_file(&c, "/proc/loadavg"),
        logs(&c, &log_id),
    );
    let now = std::time::Instant::now();
    let elapsed = prev.at.map(|t| now.duration_since(t).as_secs_f64());
    let mut v = NodeView {
        node: c.node.to_string(),
        loaded: true,
        ..Default::default()
    };
    let mut next = Previous {
        at: Some(now),
        ..Default::default()
    };
    let mut errors = Vec::new();
    match version {
        Ok(r) => {
            v.hostname = r.hostname;
            v.version = r.version;
        }
        Err(e) => errors.push(format!("Version: {e}")),
    }
    match memory {
        Ok(m) => {
            let used = m.mem_total.saturating_sub(m.mem_available);
            v.memory = Some((used, m.mem_total));
        }
        Err(e) => errors.push(format!("Memory: {e}")),
    }
    match processes {
        Ok(r) => {
            let mut rows: Vec<ProcessRow> = r
                .processes
                .iter()
                .map(|p| {
                    next.processes.insert(p.pid, p.cpu_seconds);
                    let cpu = match (elapsed, prev.processes.get(&p.pid)) {
                        (Some(dt), Some(before)) if dt > 0.0 => {
                            ((p.cpu_seconds - before) / dt).max(0.0)
                        }
                        _ => 0.0,
                    };
                    ProcessRow {
                        pid: p.pid,
                        cpu,
                        resident: p.resident_memory,
                        command: if p.args.is_empty() {
                            p.command.clone()
                        } else {
                            p.args.clone()
                        },
                    }
                })
                .collect();
            rows.sort_by(|a, b| b.cpu.total_cmp(&a.cpu).then(b.resident.cmp(&a.resident)));
            rows.truncate(PROCESSES);
            v.processes = rows;
        }
        Err(e) => errors.push(format!("Processes: {e}")),
    }
    match services {
        Ok(list) => {
            v.services = list
                .services
                .into_iter()
                .map(|s| ServiceRow {
                    id: s.id,
                    state: s.state,
                    health: if s.health.is_empty() {
                        "unknown".into()
                    } else {
                        s.health
                    },
                })
                .collect()
        }
        Err(e) => errors.push(format!("ServiceList: {e}")),
    }
    match status {
        Ok(list) => {
            v.status = list
                .first()
                .map(|(_, s)| machine_status(s))
                .unwrap_or_default()
        }
        Err(e) => errors.push(format!("machinestatus: {e}")),
    }
    match addresses {
        Ok(list) => v.addresses = list.into_iter().map(|(id, _)| id).collect(),
        Err(e) => errors.push(format!("addresses: {e}")),
    }
    match stat.map(|s| parse_stat(&s)) {
        Ok(Some(now)) => {
            next.cpu = Some(now);
            v.cpu = prev.cpu.and_then(|before| cpu_share(before, now));
        }
        Ok(None) => errors.push("/proc/stat: no cpu line".into()),
        Err(e) => errors.push(format!("CPU: {e}")),
    }
    match loadavg {
        Ok(text) => v.load = parse_loadavg(&text),
        Err(e) => errors.push(format!("load: {e}")),
    }
    match log {
        Ok(lines) => v.logs = lines,
        Err(e) => errors.push(format!("Logs: {e}")),
    }
    v.errors = errors;
    (v, next)
}

/// Raw mode and the alternate screen while it lives; put back on drop
/// (and by the panic hook, which runs before unwinding prints).
struct TerminalGuard;

impl TerminalGuard {
    fn enter() -> anyhow::Result<(TerminalGuard, Terminal<CrosstermBackend<Stdout>>)> {
        terminal::enable_raw_mode()?;
        let guard = TerminalGuard;
        crossterm::execute!(std::io::stdout(), EnterAlternateScreen)?;
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore();
            previous(info);
        }));
        let mut terminal = Terminal::new(CrosstermBackend::new(std::io::stdout()))?;
        terminal.hide_cursor()?;
        terminal.clear()?;
        Ok((guard, terminal))
    }
}

fn restore() {
    let _ = terminal::disable_raw_mode();
    let _ = crossterm::execute!(
        std::io::stdout(),
        LeaveAlternateScreen,
        crossterm::cursor::Show
    );
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore();
    }
}

/// What a key asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    Quit,
    Next,
    Previous,
    Select(usize),
    Refresh,
    None,
}

pub fn action(code: KeyCode, modifiers: KeyModifiers) -> Action {
    match code {
        KeyCode::Char('q') | KeyCode::Esc => Action::Quit,
        KeyCode::Char('c') if modifiers.contains(KeyModifiers::CONTROL) => Action::Quit,
        KeyCode::Right | KeyCode::Tab | KeyCode::Char('l') => Action::Next,
        KeyCode::Left | KeyCode::BackTab | KeyCode::Char('h') => Action::Previous,
        KeyCode::Char(c @ '1'..='9') => Action::Select(c as usize - '1' as usize),
        KeyCode::Char('r') => Action::Refresh,
        _ => Action::None,
    }
}

pub async fn run(args: Args, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    if args.web {
        return web::run(args.port, args.kubeconfig.as_deref(), global).await;
    }
    let session = Session::open(global).await?;
    let mut state = Dashboard {
        nodes: session
            .clients
            .iter()
            .map(|c| match c {
                Ok(c) => NodeView {
                    node: c.node.to_string(),
                    ..Default::default()
                },
                Err(e) => NodeView {
                    node: e.node.clone(),
                    errors: vec![e.message.clone()],
                    ..Default::default()
                },
            })
            .collect(),
        selected: 0,
        log_id: args.log.clone(),
    };
    let mut previous: Vec<Previous> = vec![Previous::default(); state.nodes.len()];

    // Keys come from a blocking thread; it stops when the receiver is gone.
    let (keys, mut key_rx) = mpsc::channel(16);
    std::thread::spawn(move || loop {
        match event::poll(Duration::from_millis(100)) {
            Ok(true) => match event::read() {
                Ok(Event::Key(k)) if k.kind != KeyEventKind::Release => {
                    if keys.blocking_send(action(k.code, k.modifiers)).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(_) => return,
            },
            Ok(false) if keys.is_closed() => return,
            Ok(false) => {}
            Err(_) => return,
        }
    });

    let (_guard, mut terminal) = TerminalGuard::enter()?;
    let mut tick = tokio::time::interval(args.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        terminal.draw(|f| view::draw(f, &state))?;
        tokio::select! {
            _ = tick.tick() => {
                let samples = session.clients.iter().zip(previous.iter()).map(|(c, p)| {
                    let c = c.as_ref().ok().cloned();
                    let (log, p) = (args.log.clone(), p.clone());
                    async move {
                        match c {
                            Some(c) => Some(sample(c, log, p).await),
                            None => None,
                        }
                    }
                });
                let samples = futures::future::join_all(samples).await;
                for (i, s) in samples.into_iter().enumerate() {
                    if let Some((v, p)) = s {
                        state.nodes[i] = v;
                        previous[i] = p;
                    }
                }
            }
            key = key_rx.recv() => match key {
                Some(Action::Quit) | None => break,
                Some(Action::Next) => state.next(),
                Some(Action::Previous) => state.previous(),
                Some(Action::Select(i)) => state.select(i),
                Some(Action::Refresh) => tick.reset_immediately(),
                Some(Action::None) => {}
            },
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_from_two_stat_samples() {
        let a = parse_stat("cpu  100 0 100 700 100 0 0 0 0 0\ncpu0 1 2 3 4\n").unwrap();
        assert_eq!(a, (200, 1000));
        let b = parse_stat("cpu  150 0 150 1300 100 0 0 0 0 0\n").unwrap();
        assert_eq!(cpu_share(a, b), Some(100.0 / 700.0));
        assert_eq!(cpu_share(b, a), None, "a counter that went back");
        assert_eq!(cpu_share(a, a), None, "no time passed");
        assert!(parse_stat("intr 1 2 3").is_none());
    }

    #[test]
    fn load_and_status_parse() {
        assert_eq!(
            parse_loadavg("0.52 0.30 0.11 2/170 4242\n"),
            Some([0.52, 0.30, 0.11])
        );
        assert_eq!(parse_loadavg("bad"), None);
        assert_eq!(
            machine_status("stage: running\napid: secure\nconfig_source: STATE\n"),
            "running, apid secure"
        );
    }

    #[test]
    fn keys() {
        let none = KeyModifiers::NONE;
        assert_eq!(action(KeyCode::Char('q'), none), Action::Quit);
        assert_eq!(
            action(KeyCode::Char('c'), KeyModifiers::CONTROL),
            Action::Quit
        );
        assert_eq!(action(KeyCode::Char('c'), none), Action::None);
        assert_eq!(action(KeyCode::Char('3'), none), Action::Select(2));
        assert_eq!(action(KeyCode::Right, none), Action::Next);
        assert_eq!(action(KeyCode::Left, none), Action::Previous);
    }
}
