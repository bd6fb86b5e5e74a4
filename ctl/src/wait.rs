//! Waiting for nodes to reboot: a spinner per node while Version is polled
//! until the node has gone down and answers again.

use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::session::{NodeClient, NodeResult};

/// How often Version is asked while waiting.
const POLL: Duration = Duration::from_secs(1);
/// How long one probe may take.
const PROBE_DEADLINE: Duration = Duration::from_secs(5);

/// Where a rebooting node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Still answering: the reboot has not taken it down yet.
    GoingDown,
    /// Not answering: booting.
    ComingBack,
}

/// What one probe says about a rebooting node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// Version answered; `mode` is "maintenance" or "configured".
    Answered { version: String, mode: &'static str },
    /// The node answered the TLS handshake by asking for a client
    /// certificate: it is up and configured (we came in with --insecure).
    WantsClientCert,
    /// No answer.
    Down(String),
}

impl Probe {
    fn from_result(result: Result<api::machine::VersionResponse, String>) -> Probe {
        match result {
            Ok(v) => Probe::Answered {
                version: v.version,
                mode: if v.maintenance {
                    "maintenance"
                } else {
                    "configured"
                },
            },
            Err(e) if e.contains("requires a client certificate") => Probe::WantsClientCert,
            Err(e) => Probe::Down(e),
        }
    }

    fn is_up(&self) -> bool {
        !matches!(self, Probe::Down(_))
    }
}

/// The next phase after `probe`, or `None` when the node is back.
pub fn next_phase(phase: Phase, probe: &Probe) -> Option<Phase> {
    match (phase, probe.is_up()) {
        (Phase::GoingDown, true) => Some(Phase::GoingDown),
        (Phase::GoingDown, false) => Some(Phase::ComingBack),
        (Phase::ComingBack, false) => Some(Phase::ComingBack),
        (Phase::ComingBack, true) => None,
    }
}

/// Waits until every node in `clients` has rebooted and answers again,
/// showing a spinner per node on stderr; one line per node when done.
pub async fn until_rebooted(clients: &[NodeClient], timeout: Duration) -> Vec<NodeResult<String>> {
    let bars = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
    let waits = clients.iter().map(|client| {
        let bar = bars.add(spinner(&client.node.to_string()));
        async move {
            let result = wait_one(client, timeout, &bar).await;
            bar.finish_and_clear();
            NodeResult {
                node: client.node.to_string(),
                result,
            }
        }
    });
    let results = futures::future::join_all(waits).await;
    for r in &results {
        if let Ok(line) = &r.result {
            eprintln!("{}: {line}", r.node);
        }
    }
    results
}

fn spinner(node: &str) -> ProgressBar {
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {prefix}: {msg} ({elapsed})")
            .expect("static template")
            .tick_chars("⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏ "),
    );
    bar.set_prefix(node.to_string());
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

async fn wait_one(
    client: &NodeClient,
    timeout: Duration,
    bar: &ProgressBar,
) -> Result<String, String> {
    let started = Instant::now();
    let mut phase = Phase::GoingDown;
    let mut last = String::new();
    loop {
        bar.set_message(match phase {
            Phase::GoingDown => "waiting for the node to go down".to_string(),
            Phase::ComingBack => "waiting for the node to come back".to_string(),
        });
        let probe = Probe::from_result(client.probe_version(PROBE_DEADLINE).await);
        if let Probe::Down(e) = &probe {
            last.clone_from(e);
        }
        match next_phase(phase, &probe) {
            Some(p) => phase = p,
            None => {
                let secs = started.elapsed().as_secs();
                return Ok(match probe {
                    Probe::Answered { version, mode } => {
                        format!("back after {secs} s ({version}, {mode})")
                    }
                    _ => {
                        format!("back after {secs} s (configured: it asks for client certificates)")
                    }
                });
            }
        }
        if started.elapsed() >= timeout {
            let what = match phase {
                Phase::GoingDown => "still answering, it did not go down",
                Phase::ComingBack => "not back",
            };
            let detail = if last.is_empty() {
                String::new()
            } else {
                format!(" (last: {last})")
            };
            return Err(format!(
                "{what} after {} s{detail}; check its console",
                timeout.as_secs()
            ));
        }
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answered() -> Probe {
        Probe::Answered {
            version: "v1".into(),
            mode: "configured",
        }
    }

    #[test]
    fn a_reboot_is_down_then_up() {
        let down = Probe::Down("refused".into());
        assert_eq!(
            next_phase(Phase::GoingDown, &answered()),
            Some(Phase::GoingDown)
        );
        assert_eq!(next_phase(Phase::GoingDown, &down), Some(Phase::ComingBack));
        assert_eq!(
            next_phase(Phase::ComingBack, &down),
            Some(Phase::ComingBack)
        );
        assert_eq!(next_phase(Phase::ComingBack, &answered()), None);
        assert_eq!(next_phase(Phase::ComingBack, &Probe::WantsClientCert), None);
    }

    #[test]
    fn probes_classify_answers_and_handshakes() {
        let v = api::machine::VersionResponse {
            version: "v0.1.0".into(),
            maintenance: true,
            ..Default::default()
        };
        assert_eq!(
            Probe::from_result(Ok(v)),
            Probe::Answered {
                version: "v0.1.0".into(),
                mode: "maintenance"
            }
        );
        let cert = "the node requires a client certificate: it is not in maintenance mode";
        assert_eq!(Probe::from_result(Err(cert.into())), Probe::WantsClientCert);
        assert_eq!(
            Probe::from_result(Err("connection refused".into())),
            Probe::Down("connection refused".into())
        );
    }
}
