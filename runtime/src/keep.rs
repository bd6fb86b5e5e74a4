//! Tasks that run for as long as machined does (Kubernetes' keepers: the
//! PKI, the static Pods, the Node's labels and taints, the Pod network
//! routes, the CSR approver). Such a task never returns by design; if one
//! does, or panics, [`keep`] starts it again after a backoff and says so,
//! so one bad pass never leaves the node without it until a reboot.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use crate::resources::controller::{RESTART_FIRST, RESTART_MAX, STABLE_AFTER};
use crate::supervisor::backoff::Backoff;

/// Runs what `start` returns, again and again: after it ends or panics,
/// [`RESTART_FIRST`] doubling to [`RESTART_MAX`] later (from the start once
/// a run lasted [`STABLE_AFTER`]).
pub fn keep<F, Fut>(name: &'static str, start: F) -> tokio::task::JoinHandle<()>
where
    F: Fn() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    tokio::spawn(async move {
        let mut backoff = Backoff::new(RESTART_FIRST, RESTART_MAX);
        let mut ends = 0u64;
        loop {
            let started = Instant::now();
            // A task of its own, so a panic ends this run only.
            let outcome = tokio::spawn(start()).await;
            ends += 1;
            if started.elapsed() >= STABLE_AFTER {
                backoff.reset();
            }
            let delay = backoff.next_delay();
            let how = match outcome {
                Ok(()) => "ended".to_string(),
                Err(e) if e.is_panic() => format!("panicked ({})", panic_text(e.into_panic())),
                Err(e) => format!("stopped ({e})"),
            };
            crate::console!(
                "{name} {how}; starting it again in {} s ({ends} so far)",
                delay.as_secs().max(1)
            );
            tokio::time::sleep(delay.max(Duration::from_millis(1))).await;
        }
    })
}

fn panic_text(payload: Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    #[tokio::test(start_paused = true)]
    async fn a_task_that_panics_or_ends_is_started_again_with_backoff() {
        let runs = Arc::new(AtomicU32::new(0));
        let r = runs.clone();
        let started = Instant::now();
        let _kept = keep("flaky keeper", move || {
            let r = r.clone();
            async move {
                match r.fetch_add(1, Ordering::SeqCst) {
                    0 => panic!("a bug in one pass"),
                    1 => {}
                    // The third run keeps running.
                    _ => std::future::pending::<()>().await,
                }
            }
        });
        // Run 1 panics; 1 s later run 2 ends; 2 s later run 3 stays.
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(runs.load(Ordering::SeqCst), 3);
        tokio::time::sleep(Duration::from_secs(600)).await;
        assert_eq!(
            runs.load(Ordering::SeqCst),
            3,
            "a running task is left alone"
        );
        assert!(started.elapsed() >= Duration::from_secs(610));
    }
}
