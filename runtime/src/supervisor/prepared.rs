//! A runner that builds its process afresh at every start: `prepare` reads
//! the service's spec (and writes whatever files the spec says), so a
//! restart, whether after a crash or because the spec changed, always runs
//! with what is current. No service captures its settings when created.

use std::sync::Arc;

use futures::future::BoxFuture;

use super::process::ProcessRunner;
use super::service::{RunContext, RunOutcome, Runner};

/// Returns the process to run now, or why it cannot run (the runner
/// reports that as a failed run, so `RestartRunner` retries it).
pub type Prepare = Arc<dyn Fn() -> Result<ProcessRunner, String> + Send + Sync>;

pub struct PreparedRunner {
    prepare: Prepare,
}

impl PreparedRunner {
    pub fn new(prepare: Prepare) -> Self {
        Self { prepare }
    }
}

impl Runner for PreparedRunner {
    fn run<'a>(&'a self, ctx: &'a RunContext) -> BoxFuture<'a, RunOutcome> {
        Box::pin(async move {
            match (self.prepare)() {
                Ok(process) => process.run(ctx).await,
                Err(e) => RunOutcome::Failed(e),
            }
        })
    }
}
