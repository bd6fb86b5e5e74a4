//! Progress of `cluster create` for people: a line per step and per change
//! of a node's state, with the time since the start and the node columns
//! aligned; on a terminal also a spinner saying what is being waited for.
//! Calm: nothing is printed again while nothing changes.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

pub struct Progress {
    started: Instant,
    spinner: Option<ProgressBar>,
    /// The last state printed for each node.
    states: BTreeMap<String, String>,
    /// Width of the node column.
    width: usize,
}

impl Progress {
    /// `names`: every node, for the column width.
    pub fn new(names: &[String]) -> Progress {
        let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
        let spinner = tty.then(|| {
            let pb = ProgressBar::new_spinner();
            pb.set_style(
                ProgressStyle::with_template("{spinner} {elapsed:>4} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            pb.enable_steady_tick(Duration::from_millis(120));
            pb
        });
        Progress {
            started: Instant::now(),
            spinner,
            states: BTreeMap::new(),
            width: names.iter().map(String::len).max().unwrap_or(0),
        }
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    fn print(&self, line: String) {
        let line = format!("[{:>5}s] {line}", self.started.elapsed().as_secs());
        match &self.spinner {
            Some(pb) => pb.println(line),
            None => eprintln!("{line}"),
        }
    }

    /// A step of the whole cluster.
    pub fn step(&self, message: &str) {
        self.print(message.to_string());
    }

    /// What the spinner says is being waited for (terminal only).
    pub fn waiting(&self, message: &str) {
        if let Some(pb) = &self.spinner {
            pb.set_message(message.to_string());
        }
    }

    /// Node `name` is now in `state`: printed when it changed.
    pub fn node(&mut self, name: &str, state: &str) {
        if self.states.get(name).map(String::as_str) == Some(state) {
            return;
        }
        self.states.insert(name.to_string(), state.to_string());
        self.print(line(name, self.width, state));
    }

    pub fn finish(&self) {
        if let Some(pb) = &self.spinner {
            pb.finish_and_clear();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}

/// `name` padded to `width`, then `state`.
pub fn line(name: &str, width: usize, state: &str) -> String {
    format!("{name:<width$}  {state}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_columns_line_up() {
        assert_eq!(line("cp-1", 8, "Ready"), "cp-1      Ready");
        assert_eq!(line("worker-1", 8, "Ready"), "worker-1  Ready");
    }

    #[test]
    fn a_state_is_printed_once() {
        let mut p = Progress::new(&["cp-1".into()]);
        p.node("cp-1", "booting");
        p.node("cp-1", "booting");
        assert_eq!(p.states.len(), 1);
        p.node("cp-1", "Ready");
        assert_eq!(p.states["cp-1"], "Ready");
    }
}
