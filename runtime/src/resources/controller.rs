//! Controllers: long-running tasks that read their inputs (the kernel, the
//! supervisor, other resources) and keep their outputs in the store
//! current. Each declares both; the store lets a controller write only
//! its outputs. The runner ([`spawn`]) restarts a controller whose run
//! failed, with backoff (Talos's controller runtime does the same).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::time::Instant;

use super::{Kind, Store, StoreError, Writer};
use crate::supervisor::backoff::Backoff;

/// Something a controller reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    /// Resources of a type in the store.
    Resource(&'static Kind),
    /// Something outside the store, e.g. `rtnetlink` or `/proc/self/mountinfo`.
    External(&'static str),
}

impl fmt::Display for Input {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Input::Resource(k) => f.write_str(k.name),
            Input::External(s) => f.write_str(s),
        }
    }
}

/// Why a run of a controller ended: the runner logs it and runs the
/// controller again after a backoff.
pub type ControllerError = Box<dyn std::error::Error + Send + Sync>;

/// The first wait before a failed controller runs again; it doubles up to
/// [`RESTART_MAX`], and starts over once a run lasted [`STABLE_AFTER`].
pub const RESTART_FIRST: Duration = Duration::from_secs(1);
pub const RESTART_MAX: Duration = Duration::from_secs(60);
pub const STABLE_AFTER: Duration = Duration::from_secs(60);

pub trait Controller: Clone + Send + 'static {
    fn name(&self) -> &'static str;
    fn inputs(&self) -> Vec<Input>;
    fn outputs(&self) -> Vec<&'static Kind>;
    /// Keeps the outputs current through `writer` until it fails. An error
    /// ends this run only: the runner runs a fresh clone of the controller
    /// after a backoff, so a failed step is retried, never abandoned until
    /// a reboot. `Ok(())` ends the controller for good (its input is gone).
    fn run(self, writer: Writer) -> BoxFuture<'static, Result<(), ControllerError>>;
}

/// Registers a controller's outputs and starts it under the runner: a run
/// that fails is logged (and recorded by `on_failure`, e.g. in the event
/// log) and started again after a backoff.
pub fn spawn(
    store: &Arc<Store>,
    controller: impl Controller,
) -> Result<tokio::task::JoinHandle<()>, StoreError> {
    let outputs = controller.outputs();
    let writer = store.writer(controller.name(), &outputs)?;
    let list = |v: Vec<String>| {
        if v.is_empty() {
            "none".to_string()
        } else {
            v.join(", ")
        }
    };
    tracing::debug!(
        controller = controller.name(),
        inputs = %list(controller.inputs().iter().map(ToString::to_string).collect()),
        outputs = %list(outputs.iter().map(|k| k.name.to_string()).collect()),
        "starting controller"
    );
    Ok(tokio::spawn(supervise(controller, writer)))
}

/// Runs `controller` until it ends for good, restarting failed runs.
async fn supervise(controller: impl Controller, writer: Writer) {
    let name = controller.name();
    let mut backoff = Backoff::new(RESTART_FIRST, RESTART_MAX);
    let mut failures = 0u64;
    loop {
        let started = Instant::now();
        match controller.clone().run(writer.clone()).await {
            Ok(()) => {
                tracing::debug!(controller = name, "controller finished");
                return;
            }
            Err(e) => {
                failures += 1;
                if started.elapsed() >= STABLE_AFTER {
                    backoff.reset();
                }
                let delay = backoff.next_delay();
                crate::console!(
                    "controller {name} failed: {e}; running it again in {} s (failure {failures})",
                    delay.as_secs().max(1)
                );
                tokio::time::sleep(delay).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// Fails its first `fail` runs, then writes one resource and ends.
    #[derive(Clone)]
    struct Flaky {
        runs: Arc<AtomicU32>,
        fail: u32,
    }

    impl Controller for Flaky {
        fn name(&self) -> &'static str {
            "flaky"
        }
        fn inputs(&self) -> Vec<Input> {
            vec![Input::External("test")]
        }
        fn outputs(&self) -> Vec<&'static Kind> {
            vec![crate::resources::kind::HOSTNAME]
        }
        fn run(self, writer: Writer) -> BoxFuture<'static, Result<(), ControllerError>> {
            Box::pin(async move {
                let n = self.runs.fetch_add(1, Ordering::SeqCst) + 1;
                if n <= self.fail {
                    return Err(format!("run {n} failed").into());
                }
                writer.put(
                    crate::resources::specs::HostnameSpec::ID,
                    crate::resources::specs::HostnameSpec::new("after-retries"),
                )?;
                Ok(())
            })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_run_is_retried_with_backoff_until_it_succeeds() {
        let store = Store::new();
        let runs = Arc::new(AtomicU32::new(0));
        let started = tokio::time::Instant::now();
        let handle = spawn(
            &store,
            Flaky {
                runs: runs.clone(),
                fail: 3,
            },
        )
        .unwrap();
        handle.await.unwrap();
        assert_eq!(runs.load(Ordering::SeqCst), 4);
        // 1 s + 2 s + 4 s between the four runs.
        assert_eq!(started.elapsed().as_secs(), 7);
        let h = store
            .spec::<crate::resources::specs::HostnameSpec>(
                crate::resources::specs::HostnameSpec::ID,
            )
            .unwrap();
        assert_eq!(h.hostname, "after-retries");
    }

    #[tokio::test(start_paused = true)]
    async fn outputs_stay_owned_across_restarts() {
        let store = Store::new();
        let _running = spawn(
            &store,
            Flaky {
                runs: Arc::new(AtomicU32::new(0)),
                fail: 1,
            },
        )
        .unwrap();
        // The restarted run writes with the same writer: nobody else can.
        assert!(store
            .writer("other", &[crate::resources::kind::HOSTNAME])
            .is_err());
    }
}
