//! ApplyConfiguration and ConfirmConfiguration: the only way a node's
//! machine config changes.
//!
//! A config is validated first (parse, then semantic checks): a rejected
//! config changes nothing. Then, by mode:
//! - `auto`: written to STATE; applied live, or with a reboot when a
//!   changed field needs one (see [`plan`]);
//! - `no-reboot`: written and applied live; refused if it needs a reboot;
//! - `reboot`: written, then the node reboots;
//! - `staged`: written as `config.staged.yaml`, applied at the next boot;
//! - `try`: applied live and written as `config.try.yaml`; reverts to the
//!   previous config after the timeout unless ConfirmConfiguration comes
//!   first (which makes it `config.yaml`).
//!
//! `dry_run` answers what would happen (diff, services, reboot) and
//! changes nothing. The first config (maintenance mode) takes the node out
//! of maintenance mode: apid switches to mutual TLS.

pub mod diff;
pub mod live;
pub mod node;
pub mod plan;
pub mod store;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use api::machine::{ApplyConfigurationRequest, ApplyConfigurationResponse, ApplyMode};
use config::validate::{self, Mode as ValidationMode};
use config::MachineConfig;
use futures::future::BoxFuture;
use tokio::sync::Mutex;
use tonic::Status;

use crate::lifecycle::{Action, Guard, Lifecycle};
use store::StateFiles;

/// A try that does not say how long: this many seconds.
pub const DEFAULT_TRY_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("the config was rejected ({} problem{}); nothing was changed:\n{}", .0.len(), if .0.len() == 1 { "" } else { "s" }, .0.join("\n"))]
    Invalid(Vec<String>),
    #[error("unknown apply mode {0}")]
    BadMode(i32),
    #[error("{0}")]
    CannotServe(#[from] crate::secure::SecureError),
    #[error(
        "these changes need a reboot: {}; apply with --mode auto, reboot or staged (nothing was changed)",
        .0.join(", ")
    )]
    NeedsReboot(Vec<String>),
    #[error("--mode try needs a running config to go back to; the first config is applied with another mode")]
    TryWithoutRunningConfig,
    #[error(
        "a config applied with --mode try is waiting for confirmation ({0} s left): run `cairnctl confirm` \
         to keep it, or wait for it to revert, then apply again"
    )]
    TryPending(u64),
    #[error(
        "no configuration is waiting for confirmation (confirm follows apply-config --mode try)"
    )]
    NothingToConfirm,
    #[error(
        "this node has no STATE partition (live boot): --mode {0} needs one, since the config must survive a reboot"
    )]
    NoState(&'static str),
    #[error("cannot write the config to STATE, nothing was changed: {0}")]
    Store(#[from] store::StoreError),
    #[error("machined is still starting; try again in a moment")]
    NotReady,
    #[error("{0}; nothing was changed")]
    Install(String),
    #[error("{0}; nothing was changed")]
    Lifecycle(#[from] crate::lifecycle::LifecycleError),
    #[error(
        "this node already runs a machine config: changing it needs a client certificate (mutual TLS); \
         an unauthenticated apply is only for a node in maintenance mode"
    )]
    AnonymousOnConfigured,
    #[error(
        "slot {0} is on trial after an upgrade: an unauthenticated apply is refused until the trial is decided"
    )]
    AnonymousOnTrial(&'static str),
}

/// Who asks for an apply: nobody known (maintenance mode, no client
/// certificate) or a caller apid authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    Anonymous,
    Authenticated,
}

/// The one place apply errors become gRPC statuses.
pub fn to_status(e: &ApplyError) -> Status {
    let msg = e.to_string();
    match e {
        ApplyError::Invalid(_) | ApplyError::BadMode(_) => Status::invalid_argument(msg),
        ApplyError::CannotServe(_)
        | ApplyError::NeedsReboot(_)
        | ApplyError::TryWithoutRunningConfig
        | ApplyError::TryPending(_)
        | ApplyError::NothingToConfirm
        | ApplyError::NoState(_)
        | ApplyError::Install(_)
        | ApplyError::Lifecycle(_)
        | ApplyError::AnonymousOnConfigured
        | ApplyError::AnonymousOnTrial(_) => Status::failed_precondition(msg),
        ApplyError::Store(_) => Status::internal(msg),
        ApplyError::NotReady => Status::unavailable(msg),
    }
}

/// What applying touches on the node, behind a trait so the modes are
/// tested without a node (see `node::NodeEffects` for the real one).
pub trait Effects: Send + Sync + 'static {
    /// The running config; `None` in maintenance mode.
    fn running(&self) -> Option<MachineConfig>;
    /// Puts `config` into effect: what applies live, apid's certificates
    /// (leaving maintenance mode when `previous` is `None`), and restarts
    /// `services` that run. Returns problems worth telling the caller.
    fn activate<'a>(
        &'a self,
        previous: Option<&'a MachineConfig>,
        config: &'a MachineConfig,
        services: &'a BTreeSet<&'static str>,
        source: &'a str,
    ) -> BoxFuture<'a, Vec<String>>;
    /// Services whose specs differ between `old` and `new` on this node:
    /// they restart with the new spec once `new` runs.
    fn spec_restarts(&self, _old: &MachineConfig, _new: &MachineConfig) -> Vec<&'static str> {
        Vec::new()
    }
    /// Records what `config`'s files and sysctls would overwrite, so an
    /// unconfirmed try can be undone exactly.
    fn snapshot(&self, _config: &MachineConfig) -> Option<live::Undo> {
        None
    }
    /// Puts back what [`Effects::snapshot`] recorded.
    fn restore(&self, _undo: &live::Undo) -> Vec<String> {
        Vec::new()
    }
    /// Reboots the node, ending the apply that `guard` holds.
    fn reboot(&self, guard: Guard);
    /// Installs to `config`'s `machine.install.disk` (live boot, first
    /// config) in the background, holding `guard` until it is done, then
    /// reboots; refuses at once a disk that cannot be used. Returns the
    /// summary for the caller.
    fn install(
        &self,
        _bytes: &[u8],
        _config: &MachineConfig,
        _guard: Guard,
    ) -> Result<String, String> {
        Err("this node cannot install itself".into())
    }
}

struct PendingTry {
    id: u64,
    previous: MachineConfig,
    /// What the tried config overwrote, put back on revert.
    undo: Option<live::Undo>,
    deadline: Instant,
}

#[derive(Default)]
struct Inner {
    pending: Option<PendingTry>,
    next_try: u64,
}

/// Applies configs: one at a time, with at most one pending try.
pub struct Configurator {
    files: Option<StateFiles>,
    validation: ValidationMode,
    effects: Arc<dyn Effects>,
    lifecycle: Arc<Lifecycle>,
    inner: Mutex<Inner>,
}

fn mode_name(mode: ApplyMode) -> &'static str {
    match mode {
        ApplyMode::Auto => "auto",
        ApplyMode::NoReboot => "no-reboot",
        ApplyMode::Reboot => "reboot",
        ApplyMode::Staged => "staged",
        ApplyMode::Try => "try",
    }
}

/// Parses and validates a config file for a node that `validation`
/// describes; every problem, one per line, as `cairnctl validate` prints
/// them.
pub fn validate_bytes(
    bytes: &[u8],
    validation: ValidationMode,
) -> Result<MachineConfig, Vec<String>> {
    let config = MachineConfig::parse(bytes).map_err(|e| {
        e.errors()
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
    })?;
    validate::validate(&config, validation).map_err(|e| {
        e.locate(bytes)
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
    })?;
    Ok(config)
}

impl Configurator {
    /// `files`: STATE's config files, `None` on a node without STATE (the
    /// config then lives in memory only). `validation`: cloud when the node
    /// boots from its disk, metal on a live boot (an install disk is needed).
    pub fn new(
        files: Option<StateFiles>,
        validation: ValidationMode,
        effects: Arc<dyn Effects>,
        lifecycle: Arc<Lifecycle>,
    ) -> Arc<Configurator> {
        Arc::new(Configurator {
            files,
            validation,
            effects,
            lifecycle,
            inner: Mutex::new(Inner::default()),
        })
    }

    pub fn validate(&self, bytes: &[u8]) -> Result<MachineConfig, ApplyError> {
        validate_bytes(bytes, self.validation).map_err(ApplyError::Invalid)
    }

    /// Makes a config found at boot the running one (no maintenance mode).
    /// A config from elsewhere than STATE is written to STATE, so the next
    /// boot finds it there.
    pub async fn boot(
        &self,
        bytes: &[u8],
        config: &MachineConfig,
        source: &str,
        from_state: bool,
    ) -> Vec<String> {
        let mut problems = Vec::new();
        if !from_state {
            if let Some(files) = &self.files {
                if let Err(e) = files.write(store::CONFIG, bytes) {
                    problems.push(format!("cannot keep the config on STATE: {e}"));
                }
            }
        }
        problems.extend(
            self.effects
                .activate(None, config, &BTreeSet::new(), source)
                .await,
        );
        problems
    }

    /// An apply by an authenticated caller.
    pub async fn apply(
        self: &Arc<Self>,
        req: &ApplyConfigurationRequest,
    ) -> Result<ApplyConfigurationResponse, ApplyError> {
        self.apply_as(req, Caller::Authenticated).await
    }

    /// An apply by `caller`. Only a node without a config (maintenance
    /// mode) takes one from an anonymous caller: apid's own check may have
    /// passed a request just before the first config made it mutual TLS.
    pub async fn apply_as(
        self: &Arc<Self>,
        req: &ApplyConfigurationRequest,
        caller: Caller,
    ) -> Result<ApplyConfigurationResponse, ApplyError> {
        // Parsing is CPU and memory bound (up to a 4 MiB file from an
        // unauthenticated caller in maintenance mode): off PID 1's runtime.
        let (bytes, validation) = (req.data.clone(), self.validation);
        let new = tokio::task::spawn_blocking(move || validate_bytes(&bytes, validation))
            .await
            .map_err(|e| {
                ApplyError::Invalid(vec![format!("the config could not be checked: {e}")])
            })?
            .map_err(ApplyError::Invalid)?;
        let mode = ApplyMode::try_from(req.mode).map_err(|_| ApplyError::BadMode(req.mode))?;
        crate::secure::check(&new)?;
        let mut inner = self.inner.lock().await;
        let running = self.effects.running();
        if caller == Caller::Anonymous {
            if running.is_some() {
                return Err(ApplyError::AnonymousOnConfigured);
            }
            if let Some(slot) = self.lifecycle.trial() {
                return Err(ApplyError::AnonymousOnTrial(slot));
            }
        }
        let plan = plan::plan(running.as_ref(), &new);
        let spec_restarts = running
            .as_ref()
            .map(|old| self.effects.spec_restarts(old, &new))
            .unwrap_or_default();
        let restarts: BTreeSet<&'static str> = plan
            .services
            .iter()
            .copied()
            .chain(spec_restarts.iter().copied())
            .collect();
        let mut response = ApplyConfigurationResponse {
            summary: String::new(),
            diff: diff::diff(running.as_ref(), &new),
            services_to_restart: restarts.iter().map(|s| s.to_string()).collect(),
            mode: req.mode,
            reboot_required: plan.reboot_required(),
        };
        if req.dry_run {
            response.summary = self.dry_run_summary(&plan, mode, running.is_none());
            return Ok(response);
        }
        if let Some(p) = &inner.pending {
            return Err(ApplyError::TryPending(
                p.deadline
                    .saturating_duration_since(Instant::now())
                    .as_secs(),
            ));
        }
        // From here the apply changes the node: one machine-level action
        // at a time (a running install refuses it).
        let guard = self.lifecycle.begin(Action::Apply)?;
        // A live boot's first config with an install disk installs the
        // node rather than running it from the ISO.
        if running.is_none() && self.files.is_none() && new.machine.install.disk.is_some() {
            if !matches!(mode, ApplyMode::Auto | ApplyMode::Reboot) {
                return Err(ApplyError::NeedsReboot(vec![
                    "machine.install.disk (installing)".into(),
                ]));
            }
            response.reboot_required = true;
            response.summary = self
                .effects
                .install(&req.data, &new, guard.switch(Action::Install))
                .map_err(ApplyError::Install)?;
            return Ok(response);
        }
        let reboot = match mode {
            ApplyMode::Reboot => true,
            ApplyMode::Auto => plan.reboot_required(),
            ApplyMode::NoReboot | ApplyMode::Try if plan.reboot_required() => {
                return Err(ApplyError::NeedsReboot(plan.needs_reboot.clone()))
            }
            _ => false,
        };
        let source = format!("apply-config --mode {}", mode_name(mode));
        let memory_only = "; this node has no STATE partition (live boot), so it is kept in memory only and lost at reboot";
        response.summary = match mode {
            ApplyMode::Staged => {
                self.files
                    .as_ref()
                    .ok_or(ApplyError::NoState("staged"))?
                    .write(store::STAGED, &req.data)?;
                "staged: the config is applied at the next reboot".to_string()
            }
            ApplyMode::Try => {
                let previous = running.clone().ok_or(ApplyError::TryWithoutRunningConfig)?;
                if let Some(files) = &self.files {
                    files.write(store::TRY, &req.data)?;
                }
                let timeout = match req.try_timeout_seconds {
                    0 => DEFAULT_TRY_TIMEOUT,
                    s => Duration::from_secs(u64::from(s)),
                };
                let undo = self.effects.snapshot(&new);
                let problems = self
                    .effects
                    .activate(Some(&previous), &new, &plan.services, &source)
                    .await;
                inner.next_try += 1;
                let id = inner.next_try;
                inner.pending = Some(PendingTry {
                    id,
                    previous,
                    undo,
                    deadline: Instant::now() + timeout,
                });
                tokio::spawn(self.clone().revert_after(id, timeout));
                runtime::console!("config: applied for a trial of {} s", timeout.as_secs());
                with_problems(
                    format!(
                        "applied for a trial: it reverts in {} s unless confirmed; run `cairnctl confirm` within {} s to keep it",
                        timeout.as_secs(),
                        timeout.as_secs()
                    ),
                    problems,
                )
            }
            _ if reboot => {
                self.files
                    .as_ref()
                    .ok_or(ApplyError::NoState(mode_name(mode)))?
                    .write(store::CONFIG, &req.data)?;
                runtime::console!("config: applied; rebooting to put it into effect");
                self.effects.reboot(guard);
                if mode == ApplyMode::Reboot {
                    "applied: the node reboots now".to_string()
                } else {
                    format!(
                        "applied: the node reboots now, as these changes need it: {}",
                        plan.needs_reboot.join(", ")
                    )
                }
            }
            _ => {
                if let Some(files) = &self.files {
                    files.write(store::CONFIG, &req.data)?;
                }
                let problems = self
                    .effects
                    .activate(running.as_ref(), &new, &plan.services, &source)
                    .await;
                let mut s = if running.is_none() {
                    "applied: the node left maintenance mode; from now on the API needs a client certificate (mutual TLS)".to_string()
                } else if plan.changed.is_empty() {
                    "applied: nothing changed".to_string()
                } else {
                    "applied without a reboot".to_string()
                };
                if !plan.services.is_empty() {
                    s.push_str(&format!(
                        "; restarted: {}",
                        plan.services.iter().copied().collect::<Vec<_>>().join(", ")
                    ));
                }
                if !spec_restarts.is_empty() {
                    s.push_str(&format!(
                        "; restarting with their new specs: {}",
                        spec_restarts.join(", ")
                    ));
                }
                if self.files.is_none() {
                    s.push_str(memory_only);
                }
                with_problems(s, problems)
            }
        };
        Ok(response)
    }

    fn dry_run_summary(&self, plan: &plan::Plan, mode: ApplyMode, maintenance: bool) -> String {
        let what = if maintenance {
            "the node would leave maintenance mode".to_string()
        } else if plan.changed.is_empty() {
            "nothing would change".to_string()
        } else if plan.reboot_required() {
            format!("a reboot is needed for: {}", plan.needs_reboot.join(", "))
        } else {
            "the changes apply without a reboot".to_string()
        };
        let refused =
            matches!(mode, ApplyMode::NoReboot | ApplyMode::Try) && plan.reboot_required();
        format!(
            "dry run, nothing was changed: {what}{}",
            if refused {
                "; --mode no-reboot and try would be refused"
            } else {
                ""
            }
        )
    }

    /// Keeps the config on trial: it becomes the config the node boots with.
    pub async fn confirm(&self) -> Result<String, ApplyError> {
        let _confirm = self.lifecycle.begin(Action::Confirm)?;
        let mut inner = self.inner.lock().await;
        if inner.pending.is_none() {
            return Err(ApplyError::NothingToConfirm);
        }
        if let Some(files) = &self.files {
            files.promote(store::TRY, store::CONFIG)?;
        }
        inner.pending = None;
        runtime::console!("config: the tried config was confirmed");
        Ok("confirmed: the tried config is kept and is the one the node boots with".to_string())
    }

    async fn revert_after(self: Arc<Self>, id: u64, timeout: Duration) {
        tokio::time::sleep(timeout).await;
        // The revert is an apply too; it waits for a running action to end
        // (a reboot or shutdown makes it moot: the tried config is not the
        // one the node boots with).
        let _guard = loop {
            match self.lifecycle.begin(Action::Apply) {
                Ok(g) => break g,
                Err(crate::lifecycle::LifecycleError::PoweringOff(_)) => return,
                Err(_) => tokio::time::sleep(Duration::from_secs(1)).await,
            }
        };
        let mut inner = self.inner.lock().await;
        let (previous, undo) = match inner.pending.take() {
            Some(p) if p.id == id => (p.previous, p.undo),
            other => {
                inner.pending = other;
                return;
            }
        };
        if let Some(files) = &self.files {
            if let Err(e) = files.remove(store::TRY) {
                runtime::console!("config: {e}");
            }
        }
        let current = self.effects.running();
        let plan = plan::plan(current.as_ref(), &previous);
        for p in self
            .effects
            .activate(
                current.as_ref(),
                &previous,
                &plan.services,
                "revert of an unconfirmed try",
            )
            .await
        {
            runtime::console!("config: {p}");
        }
        // The previous config rewrote its own files; what the try added or
        // changed beyond them goes back to how it was.
        if let Some(undo) = undo {
            for p in self.effects.restore(&undo) {
                runtime::console!("config: {p}");
            }
        }
        runtime::console!(
            "config: the tried config was not confirmed within {} s; reverted to the previous config",
            timeout.as_secs()
        );
    }
}

fn with_problems(summary: String, problems: Vec<String>) -> String {
    if problems.is_empty() {
        summary
    } else {
        format!("{summary}\nbut:\n{}", problems.join("\n"))
    }
}

/// ApplyConfiguration for the API: delegate and map the error.
pub async fn handle_apply(
    node: &crate::state::Node,
    req: ApplyConfigurationRequest,
    caller: Caller,
) -> Result<tonic::Response<ApplyConfigurationResponse>, Status> {
    let c = node
        .configurator
        .get()
        .ok_or_else(|| to_status(&ApplyError::NotReady))?;
    c.apply_as(&req, caller)
        .await
        .map(tonic::Response::new)
        .map_err(|e| {
            tracing::info!(error = %e, "apply-config refused");
            to_status(&e)
        })
}

/// ConfirmConfiguration for the API.
pub async fn handle_confirm(node: &crate::state::Node) -> Result<tonic::Response<()>, Status> {
    let c = node
        .configurator
        .get()
        .ok_or_else(|| to_status(&ApplyError::NotReady))?;
    c.confirm()
        .await
        .map(|_| tonic::Response::new(()))
        .map_err(|e| to_status(&e))
}

#[cfg(test)]
pub(crate) mod tests;
