//! What `cairnctl dashboard` shows, as plain data, and how it is drawn.
//! Drawing is a pure function of [`Dashboard`], so the layout is tested
//! with ratatui's `TestBackend` and no node.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, Gauge, Paragraph, Row, Table, Tabs, Wrap};
use ratatui::Frame;

use crate::output;

/// Everything the dashboard knows, for every node.
#[derive(Debug, Default, Clone)]
pub struct Dashboard {
    pub nodes: Vec<NodeView>,
    /// Index into `nodes` of the node on screen.
    pub selected: usize,
    /// The service whose log is tailed.
    pub log_id: String,
}

/// One node's latest sample. Each part is `Err` with a message when its
/// call failed, so one refused call does not blank the rest.
#[derive(Debug, Default, Clone)]
pub struct NodeView {
    /// The node as given with `-n`.
    pub node: String,
    pub hostname: String,
    pub version: String,
    /// Boot stage and apid mode from the machinestatus resource.
    pub status: String,
    /// Busy share of all CPUs since the previous sample, 0..=1.
    pub cpu: Option<f64>,
    /// 1, 5 and 15 minute load averages.
    pub load: Option<[f64; 3]>,
    /// Used and total memory in bytes.
    pub memory: Option<(u64, u64)>,
    pub services: Vec<ServiceRow>,
    /// The busiest processes first.
    pub processes: Vec<ProcessRow>,
    /// `link/address/prefix` as machined names them.
    pub addresses: Vec<String>,
    pub logs: Vec<String>,
    /// Calls that failed in the last refresh, for the status line.
    pub errors: Vec<String>,
    /// Whether any sample has arrived yet.
    pub loaded: bool,
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct ServiceRow {
    pub id: String,
    pub state: String,
    pub health: String,
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct ProcessRow {
    pub pid: i32,
    /// Share of one CPU since the previous sample, 0..=n.
    pub cpu: f64,
    pub resident: u64,
    pub command: String,
}

impl Dashboard {
    /// The next node (wrapping).
    pub fn next(&mut self) {
        if !self.nodes.is_empty() {
            self.selected = (self.selected + 1) % self.nodes.len();
        }
    }

    /// The previous node (wrapping).
    pub fn previous(&mut self) {
        if !self.nodes.is_empty() {
            self.selected = (self.selected + self.nodes.len() - 1) % self.nodes.len();
        }
    }

    /// Node `i` (0-based) when it exists.
    pub fn select(&mut self, i: usize) {
        if i < self.nodes.len() {
            self.selected = i;
        }
    }
}

const MUTED: Style = Style::new().fg(Color::DarkGray);
const TITLE: Style = Style::new().add_modifier(Modifier::BOLD);

/// Draws `d` over the whole frame.
pub fn draw(frame: &mut Frame, d: &Dashboard) {
    let [tabs, summary, middle, bottom, help] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(7),
        Constraint::Min(8),
        Constraint::Length(8),
        Constraint::Length(1),
    ])
    .areas(frame.area());

    let titles: Vec<Line> = d
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let name = if n.hostname.is_empty() {
                n.node.clone()
            } else {
                format!("{} ({})", n.hostname, n.node)
            };
            Line::from(format!("{} {name}", i + 1))
        })
        .collect();
    frame.render_widget(
        Tabs::new(titles)
            .select(d.selected)
            .highlight_style(Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD)),
        tabs,
    );
    frame.render_widget(
        Paragraph::new(Line::from(vec![
            Span::styled("q", TITLE),
            Span::raw(" quit   "),
            Span::styled("←/→ 1-9", TITLE),
            Span::raw(" switch node   "),
            Span::styled("r", TITLE),
            Span::raw(" refresh now"),
        ]))
        .style(MUTED),
        help,
    );
    let Some(n) = d.nodes.get(d.selected) else {
        return;
    };
    draw_summary(frame, summary, n);
    let [services, processes] =
        Layout::horizontal([Constraint::Percentage(45), Constraint::Percentage(55)]).areas(middle);
    draw_services(frame, services, n);
    draw_processes(frame, processes, n);
    let [addresses, logs] =
        Layout::horizontal([Constraint::Length(30), Constraint::Min(20)]).areas(bottom);
    frame.render_widget(
        Paragraph::new(
            n.addresses
                .iter()
                .map(|a| Line::from(a.as_str()))
                .collect::<Vec<_>>(),
        )
        .block(Block::bordered().title(" Addresses ")),
        addresses,
    );
    let tail = logs.height.saturating_sub(2) as usize;
    let lines: Vec<Line> = n
        .logs
        .iter()
        .skip(n.logs.len().saturating_sub(tail))
        .map(|l| Line::from(l.as_str()))
        .collect();
    frame.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .block(Block::bordered().title(format!(" Log: {} ", d.log_id))),
        logs,
    );
}

fn draw_summary(frame: &mut Frame, area: Rect, n: &NodeView) {
    let block = Block::bordered().title(" Machine ");
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let [text, gauges] =
        Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(inner);
    let load = match n.load {
        Some([a, b, c]) => format!("{a:.2} {b:.2} {c:.2}"),
        None => "-".into(),
    };
    let status = if n.loaded {
        n.status.clone()
    } else {
        "connecting...".into()
    };
    let mut lines = vec![
        Line::from(vec![
            Span::styled("Hostname ", MUTED),
            Span::styled(n.hostname.clone(), TITLE),
        ]),
        Line::from(vec![
            Span::styled("Version  ", MUTED),
            Span::raw(n.version.clone()),
        ]),
        Line::from(vec![Span::styled("Status   ", MUTED), Span::raw(status)]),
        Line::from(vec![Span::styled("Load     ", MUTED), Span::raw(load)]),
    ];
    if let Some(e) = n.errors.first() {
        lines.push(Line::styled(e.clone(), Style::new().fg(Color::Red)));
    }
    frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: true }), text);
    let [cpu, _, memory] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(gauges);
    let ratio = |r: f64| r.clamp(0.0, 1.0);
    frame.render_widget(
        Gauge::default()
            .gauge_style(Style::new().fg(Color::Green))
            .ratio(ratio(n.cpu.unwrap_or(0.0)))
            .label(match n.cpu {
                Some(c) => format!("CPU {:.0} %", c * 100.0),
                None => "CPU -".into(),
            }),
        cpu,
    );
    let (used, total) = n.memory.unwrap_or((0, 0));
    frame.render_widget(
        Gauge::default()
            .gauge_style(Style::new().fg(Color::Blue))
            .ratio(if total == 0 {
                0.0
            } else {
                ratio(used as f64 / total as f64)
            })
            .label(match n.memory {
                Some(_) => format!("Memory {} / {} MiB", output::mib(used), output::mib(total)),
                None => "Memory -".into(),
            }),
        memory,
    );
}

/// Green for healthy, red for failed, yellow for the rest.
fn state_colour(state: &str, health: &str) -> Color {
    match (state, health) {
        ("Failed", _) | (_, "failing") => Color::Red,
        ("Running", "ok") | ("Finished", _) => Color::Green,
        ("Running", _) | ("Skipped", _) => Color::Reset,
        _ => Color::Yellow,
    }
}

fn draw_services(frame: &mut Frame, area: Rect, n: &NodeView) {
    let rows = n.services.iter().map(|s| {
        Row::new([
            Cell::from(s.id.clone()),
            Cell::from(s.state.clone()),
            Cell::from(s.health.clone()),
        ])
        .style(Style::new().fg(state_colour(&s.state, &s.health)))
    });
    frame.render_widget(
        Table::new(
            rows,
            [
                Constraint::Min(14),
                Constraint::Length(9),
                Constraint::Length(8),
            ],
        )
        .header(Row::new(["SERVICE", "STATE", "HEALTH"]).style(TITLE))
        .block(Block::bordered().title(" Services ")),
        area,
    );
}

fn draw_processes(frame: &mut Frame, area: Rect, n: &NodeView) {
    let rows = n.processes.iter().map(|p| {
        Row::new([
            Cell::from(p.pid.to_string()),
            Cell::from(format!("{:5.1}", p.cpu * 100.0)),
            Cell::from(output::bytes(p.resident)),
            Cell::from(p.command.clone()),
        ])
    });
    frame.render_widget(
        Table::new(
            rows,
            [
                Constraint::Length(7),
                Constraint::Length(6),
                Constraint::Length(10),
                Constraint::Min(10),
            ],
        )
        .header(Row::new(["PID", "CPU%", "RSS", "COMMAND"]).style(TITLE))
        .block(Block::bordered().title(" Processes ")),
        area,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use ratatui::backend::TestBackend;
    use ratatui::Terminal;

    fn node(name: &str, hostname: &str) -> NodeView {
        NodeView {
            node: name.into(),
            hostname: hostname.into(),
            version: "v0.1.0".into(),
            status: "running, apid secure".into(),
            cpu: Some(0.25),
            load: Some([0.5, 0.25, 0.0]),
            memory: Some((512 << 20, 2048 << 20)),
            services: vec![
                ServiceRow {
                    id: "apid".into(),
                    state: "Running".into(),
                    health: "ok".into(),
                },
                ServiceRow {
                    id: "etcd".into(),
                    state: "Failed".into(),
                    health: "failing".into(),
                },
            ],
            processes: vec![ProcessRow {
                pid: 1,
                cpu: 0.125,
                resident: 10 << 20,
                command: "/sbin/machined".into(),
            }],
            addresses: vec!["eth0/10.0.2.15/24".into()],
            logs: (0..20).map(|i| format!("log line {i}")).collect(),
            errors: vec![],
            loaded: true,
        }
    }

    fn render(d: &Dashboard) -> String {
        let mut terminal = Terminal::new(TestBackend::new(100, 30)).unwrap();
        terminal.draw(|f| draw(f, d)).unwrap();
        let buffer = terminal.backend().buffer().clone();
        (0..buffer.area.height)
            .map(|y| {
                (0..buffer.area.width)
                    .map(|x| buffer[(x, y)].symbol())
                    .collect::<String>()
                    + "\n"
            })
            .collect()
    }

    #[test]
    fn the_selected_node_is_drawn_with_its_parts() {
        let mut d = Dashboard {
            nodes: vec![
                node("10.5.0.2:50000", "cp-1"),
                node("10.5.0.3:50000", "w-1"),
            ],
            selected: 0,
            log_id: "machined".into(),
        };
        let screen = render(&d);
        for want in [
            "1 cp-1 (10.5.0.2:50000)",
            "2 w-1 (10.5.0.3:50000)",
            "Hostname cp-1",
            "Load     0.50 0.25 0.00",
            "CPU 25 %",
            "Memory 512 / 2048 MiB",
            "apid",
            "Running",
            "/sbin/machined",
            " 12.5",
            "10.0 MiB",
            "eth0/10.0.2.15/24",
            "Log: machined",
            "log line 19",
            "q quit",
        ] {
            assert!(screen.contains(want), "{want:?} not on screen:\n{screen}");
        }
        assert!(!screen.contains("log line 0\n"), "only the tail fits");
        d.next();
        assert!(render(&d).contains("Hostname w-1"));
        d.next();
        assert_eq!(d.selected, 0, "wraps");
        d.previous();
        assert_eq!(d.selected, 1);
        d.select(7);
        assert_eq!(d.selected, 1, "no node 8");
    }

    #[test]
    fn a_node_without_a_sample_says_so_and_shows_errors() {
        let d = Dashboard {
            nodes: vec![NodeView {
                node: "10.5.0.9:50000".into(),
                errors: vec!["ReadFile: permission denied".into()],
                ..Default::default()
            }],
            selected: 0,
            log_id: "machined".into(),
        };
        let screen = render(&d);
        assert!(screen.contains("connecting..."), "{screen}");
        assert!(screen.contains("ReadFile: permission denied"), "{screen}");
        assert!(screen.contains("CPU -"), "{screen}");
    }

    #[test]
    fn colours_follow_state_and_health() {
        assert_eq!(state_colour("Running", "ok"), Color::Green);
        assert_eq!(state_colour("Failed", ""), Color::Red);
        assert_eq!(state_colour("Running", "failing"), Color::Red);
        assert_eq!(state_colour("Waiting", "unknown"), Color::Yellow);
    }
}
