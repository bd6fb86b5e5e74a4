//! The restart-with-backoff runner: wraps another runner and runs it again
//! whenever it ends, waiting longer after each quick failure.

use std::time::{Duration, Instant};

use futures::future::BoxFuture;

use super::backoff::Backoff;
use super::service::{RunContext, RunOutcome, Runner, State};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartPolicy {
    /// Restart whenever the service ends (daemons).
    Always,
    /// Restart only when it fails; a clean exit finishes the service.
    OnFailure,
}

pub struct RestartRunner<R> {
    inner: R,
    policy: RestartPolicy,
    backoff: Backoff,
    /// A run that lasted this long resets the backoff.
    stable_after: Duration,
}

impl<R: Runner> RestartRunner<R> {
    pub fn new(inner: R, policy: RestartPolicy) -> Self {
        Self {
            inner,
            policy,
            backoff: Backoff::default(),
            stable_after: Duration::from_secs(60),
        }
    }

    pub fn backoff(mut self, backoff: Backoff, stable_after: Duration) -> Self {
        self.backoff = backoff;
        self.stable_after = stable_after;
        self
    }
}

impl<R: Runner> Runner for RestartRunner<R> {
    fn run<'a>(&'a self, ctx: &'a RunContext) -> BoxFuture<'a, RunOutcome> {
        Box::pin(async move {
            let mut backoff = self.backoff.clone();
            loop {
                let started = Instant::now();
                let outcome = self.inner.run(ctx).await;
                if ctx.stop_requested() || outcome == RunOutcome::Stopped {
                    return RunOutcome::Stopped;
                }
                let clean = matches!(outcome, RunOutcome::Exited(s) if s.success());
                if clean && self.policy == RestartPolicy::OnFailure {
                    return outcome;
                }
                if started.elapsed() >= self.stable_after {
                    backoff.reset();
                }
                let delay = backoff.next_delay();
                ctx.handle.set_state(State::Failed, outcome.to_string());
                ctx.handle.count_restart();
                let restarts = ctx.handle.snapshot().restarts;
                ctx.handle.set_state(
                    State::Waiting,
                    format!("restart {restarts} in {:.1}s", delay.as_secs_f64()),
                );
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = ctx.stopped() => return RunOutcome::Stopped,
                }
            }
        })
    }
}
