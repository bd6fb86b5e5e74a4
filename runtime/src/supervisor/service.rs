//! The one `Service` abstraction: an id, dependencies, a condition, pre and
//! post hooks, a runner and an optional health check; and the status the
//! supervisor keeps for it.

use std::collections::VecDeque;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::future::BoxFuture;
use tokio::sync::watch;

use super::logbuf::LogRing;
use crate::reaper::ExitStatus;

/// Lifecycle states, named as the API reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Waiting for dependencies or a condition, or for a restart.
    Waiting,
    /// Running the pre hook.
    Preparing,
    Running,
    /// Ran to completion successfully.
    Finished,
    Failed,
    /// Stopped on request.
    Stopped,
    /// The condition said not to run.
    Skipped,
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            State::Waiting => "Waiting",
            State::Preparing => "Preparing",
            State::Running => "Running",
            State::Finished => "Finished",
            State::Failed => "Failed",
            State::Stopped => "Stopped",
            State::Skipped => "Skipped",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// No health check, or not checked yet in this run.
    Unknown,
    Ok,
    Failing,
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Health::Unknown => "unknown",
            Health::Ok => "ok",
            Health::Failing => "failing",
        })
    }
}

/// One state change, kept for `cairnctl services`.
#[derive(Debug, Clone)]
pub struct Event {
    pub state: State,
    pub message: String,
    pub time: SystemTime,
}

/// How many events a service remembers.
const MAX_EVENTS: usize = 30;

#[derive(Debug, Clone)]
pub struct Status {
    pub state: State,
    pub message: String,
    pub pid: Option<i32>,
    pub restarts: u32,
    pub health: Health,
    pub health_message: String,
    pub events: VecDeque<Event>,
    pub has_health_check: bool,
    /// State changes so far; tells watchers how many of `events` are new.
    pub transitions: u64,
}

impl Status {
    /// Whether dependents may start: running (and healthy, when there is a
    /// health check) or finished successfully.
    pub fn is_up(&self) -> bool {
        match self.state {
            State::Running => !self.has_health_check || self.health == Health::Ok,
            State::Finished => true,
            _ => false,
        }
    }
}

/// What the supervisor and the API share about one service.
pub struct ServiceHandle {
    pub id: String,
    pub depends_on: Vec<String>,
    pub status: watch::Sender<Status>,
    pub logs: Arc<LogRing>,
}

impl ServiceHandle {
    pub fn new(id: &str, depends_on: Vec<String>, has_health_check: bool) -> Self {
        let status = Status {
            state: State::Waiting,
            message: String::new(),
            pid: None,
            restarts: 0,
            health: Health::Unknown,
            health_message: String::new(),
            events: VecDeque::new(),
            has_health_check,
            transitions: 0,
        };
        Self {
            id: id.to_string(),
            depends_on,
            status: watch::Sender::new(status),
            logs: Arc::new(LogRing::new(super::logbuf::DEFAULT_CAPACITY)),
        }
    }

    pub fn snapshot(&self) -> Status {
        self.status.borrow().clone()
    }

    /// Records a state change and prints it on the console as
    /// `cairn: service <id>: <state> (<message>)`.
    pub fn set_state(&self, state: State, message: impl Into<String>) {
        let message = message.into();
        if message.is_empty() {
            crate::console!("service {}: {}", self.id, state);
        } else {
            crate::console!("service {}: {} ({})", self.id, state, message);
        }
        self.status.send_modify(|s| {
            s.state = state;
            s.message = message.clone();
            if state != State::Running {
                s.health = Health::Unknown;
                s.health_message.clear();
            }
            if s.events.len() == MAX_EVENTS {
                s.events.pop_front();
            }
            s.events.push_back(Event {
                state,
                message,
                time: SystemTime::now(),
            });
            s.transitions += 1;
        });
    }

    pub fn set_pid(&self, pid: Option<i32>) {
        self.status.send_modify(|s| s.pid = pid);
    }

    pub fn count_restart(&self) {
        self.status.send_modify(|s| s.restarts += 1);
    }

    /// Records a health result without a console line (startup phase).
    pub fn set_health_quietly(&self, health: Health, message: String) {
        self.status.send_modify(|s| {
            s.health = health;
            s.health_message = message;
        });
    }

    /// Records a health result; prints a console line when it changes.
    pub fn set_health(&self, health: Health, message: String) {
        let changed = {
            let s = self.status.borrow();
            s.health != health || s.health_message != message
        };
        if changed {
            if message.is_empty() {
                crate::console!("service {}: health {}", self.id, health);
            } else {
                crate::console!("service {}: health {} ({})", self.id, health, message);
            }
            self.status.send_modify(|s| {
                s.health = health;
                s.health_message = message;
            });
        }
    }
}

/// How one run of a runner ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunOutcome {
    Exited(ExitStatus),
    /// Stopped because the supervisor asked.
    Stopped,
    /// Could not run at all (e.g. the binary is missing).
    Failed(String),
}

impl fmt::Display for RunOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunOutcome::Exited(s) => write!(f, "{s}"),
            RunOutcome::Stopped => f.write_str("stopped"),
            RunOutcome::Failed(m) => f.write_str(m),
        }
    }
}

/// What a runner gets: where to report, where to log, when to stop.
pub struct RunContext {
    pub handle: Arc<ServiceHandle>,
    pub stop: watch::Receiver<bool>,
}

impl RunContext {
    pub fn stop_requested(&self) -> bool {
        *self.stop.borrow()
    }

    /// Resolves once a stop is requested.
    pub async fn stopped(&self) {
        let mut rx = self.stop.clone();
        // Err means the supervisor is gone: treat as stop.
        let _ = rx.wait_for(|s| *s).await;
    }
}

/// Runs a service; composable (see `RestartRunner`).
pub trait Runner: Send + Sync + 'static {
    /// Runs once until the service ends or `ctx` asks to stop.
    fn run<'a>(&'a self, ctx: &'a RunContext) -> BoxFuture<'a, RunOutcome>;
}

type CheckFn = Arc<dyn Fn() -> BoxFuture<'static, Result<(), String>> + Send + Sync>;

/// An async hook run before or after a service.
pub type Hook = Arc<dyn Fn() -> BoxFuture<'static, anyhow::Result<()>> + Send + Sync>;

/// Something that must hold before a service starts; `Err` skips the
/// service with the reason.
#[derive(Clone)]
pub struct Condition {
    pub description: String,
    pub wait: CheckFn,
}

impl Condition {
    /// Waits up to `timeout` for `path` to exist.
    pub fn file_exists(path: impl Into<PathBuf>, timeout: Duration) -> Self {
        let path = path.into();
        Self {
            description: format!("{} exists", path.display()),
            wait: Arc::new(move || {
                let path = path.clone();
                Box::pin(async move {
                    let deadline = tokio::time::Instant::now() + timeout;
                    while !path.exists() {
                        if tokio::time::Instant::now() >= deadline {
                            return Err(format!(
                                "{} did not appear within {timeout:?}",
                                path.display()
                            ));
                        }
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    Ok(())
                })
            }),
        }
    }
}

/// A periodic health check while the service runs.
///
/// Until the first success of a run the check is repeated every
/// `startup_interval` and failures are not reported as Failing (health
/// stays Unknown, message "starting: ...") unless `startup_grace` passes:
/// a daemon that is still binding its socket is not unhealthy.
#[derive(Clone)]
pub struct HealthCheck {
    pub interval: Duration,
    pub timeout: Duration,
    pub startup_interval: Duration,
    pub startup_grace: Duration,
    pub check: CheckFn,
}

impl HealthCheck {
    pub fn new<F, Fut>(interval: Duration, timeout: Duration, f: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<(), String>> + Send + 'static,
    {
        Self {
            interval,
            timeout,
            startup_interval: Duration::from_millis(250).min(interval),
            startup_grace: Duration::from_secs(30),
            check: Arc::new(move || Box::pin(f())),
        }
    }

    /// How long failures may go unreported after the service starts.
    pub fn startup_grace(mut self, grace: Duration) -> Self {
        self.startup_grace = grace;
        self
    }

    /// Healthy when a TCP connection to `addr` succeeds.
    pub fn tcp_connect(addr: SocketAddr, interval: Duration) -> Self {
        Self::new(interval, Duration::from_secs(2), move || async move {
            tokio::net::TcpStream::connect(addr)
                .await
                .map(drop)
                .map_err(|e| format!("connect {addr}: {e}"))
        })
    }
}

/// A service the supervisor runs.
pub struct Service {
    pub id: String,
    pub depends_on: Vec<String>,
    pub condition: Option<Condition>,
    pub pre: Option<Hook>,
    pub post: Option<Hook>,
    pub runner: Box<dyn Runner>,
    pub health: Option<HealthCheck>,
}

impl Service {
    pub fn new(id: &str, runner: impl Runner) -> Self {
        Self {
            id: id.to_string(),
            depends_on: Vec::new(),
            condition: None,
            pre: None,
            post: None,
            runner: Box::new(runner),
            health: None,
        }
    }

    pub fn depends_on(mut self, id: &str) -> Self {
        self.depends_on.push(id.to_string());
        self
    }

    pub fn condition(mut self, c: Condition) -> Self {
        self.condition = Some(c);
        self
    }

    pub fn pre(mut self, hook: Hook) -> Self {
        self.pre = Some(hook);
        self
    }

    pub fn post(mut self, hook: Hook) -> Self {
        self.post = Some(hook);
        self
    }

    pub fn health(mut self, h: HealthCheck) -> Self {
        self.health = Some(h);
        self
    }
}
