//! Runs a service's health check periodically while it is Running.

use std::sync::Arc;

use tokio::sync::watch;
use tokio::time::Instant;

use super::service::{Health, HealthCheck, ServiceHandle, State};

/// Loops until `stop` turns true: waits for Running, checks, sleeps.
pub async fn watch_health(
    handle: Arc<ServiceHandle>,
    check: HealthCheck,
    mut stop: watch::Receiver<bool>,
) {
    let mut status = handle.status.subscribe();
    loop {
        // Wait for the service to be Running (again): a new run starts
        // with a new startup phase.
        tokio::select! {
            r = status.wait_for(|s| s.state == State::Running) => if r.is_err() { return },
            _ = stop.wait_for(|s| *s) => return,
        }
        let started = Instant::now();
        let mut starting = true;
        while handle.status.borrow().state == State::Running {
            let result = match tokio::time::timeout(check.timeout, (check.check)()).await {
                Ok(r) => r,
                Err(_) => Err(format!("health check timed out after {:?}", check.timeout)),
            };
            // A result that arrives after the service left Running is stale.
            if handle.status.borrow().state != State::Running {
                break;
            }
            match result {
                Ok(()) => {
                    starting = false;
                    handle.set_health(Health::Ok, String::new());
                }
                Err(m) if starting && started.elapsed() < check.startup_grace => {
                    handle.set_health_quietly(Health::Unknown, format!("starting: {m}"));
                }
                Err(m) => {
                    starting = false;
                    handle.set_health(Health::Failing, m);
                }
            }
            let pause = if starting {
                check.startup_interval
            } else {
                check.interval
            };
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }
}
