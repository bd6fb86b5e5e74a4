//! The service supervisor: runs each [`Service`] in its own task, in
//! dependency order, and stops them in reverse dependency order.
//!
//! A service's task: Waiting (for dependencies to be up, then for its
//! condition) -> Preparing (pre hook) -> the runner (which reports Running,
//! and with `RestartRunner` loops through Failed/Waiting/Running) ->
//! Finished, Failed or Stopped -> post hook.

pub mod backoff;
pub mod health;
pub mod logbuf;
pub mod prepared;
pub mod process;
pub mod restart;
pub mod service;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use service::{
    Condition, Health, HealthCheck, Hook, RunContext, RunOutcome, Runner, Service, ServiceHandle,
    State, Status,
};

#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    #[error("service {0} is already registered")]
    AlreadyRegistered(String),
    #[error("no service named {0}")]
    NotFound(String),
    #[error("service {0} did not stop within {1:?}")]
    StopTimeout(String, Duration),
    #[error("service {0} is already running")]
    AlreadyRunning(String),
    #[error("service {0} has no running process")]
    NotRunning(String),
    #[error("signalling service {0} (pid {1}): {2}")]
    Signal(String, i32, nix::Error),
}

struct Entry {
    handle: Arc<ServiceHandle>,
    /// Kept so that a stopped service can be started again.
    service: Arc<Service>,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

pub struct Supervisor {
    services: Mutex<BTreeMap<String, Entry>>,
    /// Bumped whenever a service is registered, for dependents waiting on a
    /// dependency that is not registered yet.
    registered: watch::Sender<u64>,
}

/// How long `stop` waits for a service task (its runner has its own
/// SIGTERM -> SIGKILL grace period inside this).
const STOP_WAIT: Duration = Duration::from_secs(30);

impl Supervisor {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            services: Mutex::new(BTreeMap::new()),
            registered: watch::Sender::new(0),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Entry>> {
        self.services.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers and starts a service.
    pub fn start(
        self: &Arc<Self>,
        service: Service,
    ) -> Result<Arc<ServiceHandle>, SupervisorError> {
        let mut services = self.lock();
        if services.contains_key(&service.id) {
            return Err(SupervisorError::AlreadyRegistered(service.id));
        }
        let handle = Arc::new(ServiceHandle::new(
            &service.id,
            service.depends_on.clone(),
            service.health.is_some(),
        ));
        let service = Arc::new(service);
        let (stop_tx, stop_rx) = watch::channel(false);
        let task = tokio::spawn(run_service(
            Arc::downgrade(self),
            handle.clone(),
            service.clone(),
            stop_rx,
        ));
        services.insert(
            handle.id.clone(),
            Entry {
                handle: handle.clone(),
                service,
                stop: stop_tx,
                task: Some(task),
            },
        );
        drop(services);
        self.registered.send_modify(|n| *n += 1);
        Ok(handle)
    }

    /// Changes whenever a service is registered.
    pub fn subscribe_registered(&self) -> watch::Receiver<u64> {
        self.registered.subscribe()
    }

    /// Starts a registered service again after it stopped, finished or
    /// failed; the same handle (state, log ring, restart count) carries on.
    pub fn start_again(self: &Arc<Self>, id: &str) -> Result<(), SupervisorError> {
        let mut services = self.lock();
        let entry = services
            .get_mut(id)
            .ok_or_else(|| SupervisorError::NotFound(id.to_string()))?;
        if entry.task.as_ref().is_some_and(|t| !t.is_finished()) {
            return Err(SupervisorError::AlreadyRunning(id.to_string()));
        }
        let (stop_tx, stop_rx) = watch::channel(false);
        entry.stop = stop_tx;
        entry.task = Some(tokio::spawn(run_service(
            Arc::downgrade(self),
            entry.handle.clone(),
            entry.service.clone(),
            stop_rx,
        )));
        Ok(())
    }

    /// Stops a service (if it runs) and starts it again.
    pub async fn restart(self: &Arc<Self>, id: &str) -> Result<(), SupervisorError> {
        self.stop(id).await?;
        self.start_again(id)
    }

    /// Sends `signal` to a service's running process and leaves what
    /// follows to its runner: a restarting service restarts as after a
    /// crash. Returns the pid signalled.
    pub fn kill(&self, id: &str, signal: nix::sys::signal::Signal) -> Result<i32, SupervisorError> {
        let handle = self
            .handle(id)
            .ok_or_else(|| SupervisorError::NotFound(id.to_string()))?;
        let pid = handle
            .status
            .borrow()
            .pid
            .ok_or_else(|| SupervisorError::NotRunning(id.to_string()))?;
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal)
            .map_err(|e| SupervisorError::Signal(id.to_string(), pid, e))?;
        Ok(pid)
    }

    pub fn handle(&self, id: &str) -> Option<Arc<ServiceHandle>> {
        self.lock().get(id).map(|e| e.handle.clone())
    }

    /// Every registered service, by id.
    pub fn list(&self) -> Vec<Arc<ServiceHandle>> {
        self.lock().values().map(|e| e.handle.clone()).collect()
    }

    /// Stops one service and waits for its task to end.
    pub async fn stop(&self, id: &str) -> Result<(), SupervisorError> {
        let task = {
            let mut services = self.lock();
            let entry = services
                .get_mut(id)
                .ok_or_else(|| SupervisorError::NotFound(id.to_string()))?;
            let _ = entry.stop.send(true);
            entry.task.take()
        };
        if let Some(task) = task {
            if tokio::time::timeout(STOP_WAIT, task).await.is_err() {
                return Err(SupervisorError::StopTimeout(id.to_string(), STOP_WAIT));
            }
        }
        Ok(())
    }

    /// Service ids ordered so that every service comes after the services
    /// it depends on (dependencies missing from the registry are ignored).
    pub fn start_order(&self) -> Vec<String> {
        let deps: BTreeMap<String, Vec<String>> = self
            .lock()
            .values()
            .map(|e| (e.handle.id.clone(), e.handle.depends_on.clone()))
            .collect();
        fn visit(
            id: &str,
            deps: &BTreeMap<String, Vec<String>>,
            seen: &mut BTreeSet<String>,
            out: &mut Vec<String>,
        ) {
            if !seen.insert(id.to_string()) {
                return;
            }
            for d in deps.get(id).into_iter().flatten() {
                if deps.contains_key(d) {
                    visit(d, deps, seen, out);
                }
            }
            out.push(id.to_string());
        }
        let mut seen = BTreeSet::new();
        let mut out = Vec::new();
        for id in deps.keys() {
            visit(id, &deps, &mut seen, &mut out);
        }
        out
    }

    /// Stops every service, dependents before their dependencies.
    pub async fn stop_all(&self) {
        for id in self.start_order().into_iter().rev() {
            if let Err(e) = self.stop(&id).await {
                tracing::warn!(service = %id, error = %e, "stop failed");
            }
        }
    }
}

/// Waits until the dependency `id` is registered and up.
async fn wait_for_dependency(sup: &std::sync::Weak<Supervisor>, id: &str) {
    let Some(mut registered) = sup.upgrade().map(|s| s.registered.subscribe()) else {
        return;
    };
    let handle = loop {
        let Some(h) = sup.upgrade().and_then(|s| s.handle(id)) else {
            if registered.changed().await.is_err() {
                return;
            }
            continue;
        };
        break h;
    };
    let mut rx = handle.status.subscribe();
    let _ = rx.wait_for(Status::is_up).await;
}

async fn run_service(
    sup: std::sync::Weak<Supervisor>,
    handle: Arc<ServiceHandle>,
    service: Arc<Service>,
    stop: watch::Receiver<bool>,
) {
    let ctx = RunContext {
        handle: handle.clone(),
        stop: stop.clone(),
    };
    if !service.depends_on.is_empty() {
        handle.set_state(
            State::Waiting,
            format!("for {}", service.depends_on.join(", ")),
        );
        let all = async {
            for d in &service.depends_on {
                wait_for_dependency(&sup, d).await;
            }
        };
        tokio::select! {
            () = all => {}
            () = ctx.stopped() => {
                handle.set_state(State::Stopped, "");
                return;
            }
        }
    }
    if let Some(c) = &service.condition {
        handle.set_state(State::Waiting, format!("for {}", c.description));
        tokio::select! {
            r = (c.wait)() => if let Err(reason) = r {
                handle.set_state(State::Skipped, reason);
                return;
            },
            () = ctx.stopped() => {
                handle.set_state(State::Stopped, "");
                return;
            }
        }
    }
    if let Some(pre) = &service.pre {
        handle.set_state(State::Preparing, "");
        if let Err(e) = pre().await {
            handle.set_state(State::Failed, format!("pre: {e:#}"));
            return;
        }
    }
    let health = service
        .health
        .clone()
        .map(|h| tokio::spawn(health::watch_health(handle.clone(), h, stop.clone())));

    let outcome = service.runner.run(&ctx).await;
    match &outcome {
        RunOutcome::Exited(s) if s.success() => handle.set_state(State::Finished, ""),
        RunOutcome::Stopped => handle.set_state(State::Stopped, ""),
        other => handle.set_state(State::Failed, other.to_string()),
    }
    if let Some(h) = health {
        h.abort();
    }
    if let Some(post) = &service.post {
        if let Err(e) = post().await {
            tracing::warn!(service = %handle.id, error = format!("{e:#}"), "post hook failed");
        }
    }
}

#[cfg(test)]
mod tests;
