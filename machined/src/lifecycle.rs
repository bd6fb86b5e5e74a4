//! The one owner of the machine's lifecycle: install, upgrade, rollback,
//! marking a tried slot good, reset, reboot, shutdown, bootstrap, and
//! apply and confirm while they write STATE. It also holds what they
//! share: the installed system (BOOT, META, the booted slot) and whether
//! that slot is on trial. Each action holds the [`Lifecycle`] for as long as it runs
//! (an install's guard moves into its background task); a second action is
//! refused at once, naming the one that runs, never queued behind a
//! minutes-long install. A power action is the last one: once taken,
//! nothing else starts, and it is the only code that asks PID 1 to reboot
//! or power off. The slot booted on trial is kept here too, so no upgrade
//! writes over the only known-good slot and no anonymous apply lands while
//! the trial is undecided.
//!
//! Firecracker's `RuntimeApiController` (one owner of the VMM, actions from
//! one place) and Talos's sequencer lock are the anchors.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::shutdown::PowerAction;
use crate::upgrade::System;
use runtime::resources::events::EventLog;
use runtime::resources::specs::EventType;

/// How long a power action waits so that the reply to whoever asked
/// leaves first.
pub const REPLY_FIRST: Duration = Duration::from_millis(500);

/// A machine-level action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Apply,
    /// Keeping a config applied with `--mode try` (it writes STATE).
    Confirm,
    /// Starting etcd as a new cluster.
    Bootstrap,
    Install,
    Upgrade,
    Rollback,
    /// Making the slot on trial the default once the node is steady.
    MarkGood,
    Reset,
    Reboot,
    Shutdown,
}

impl Action {
    /// The named phases of the sequences that run long enough to follow,
    /// in order (see [`Guard::phase`]); empty for the others.
    pub fn phases(self) -> &'static [&'static str] {
        match self {
            Action::Install => &[
                "wiping",
                "partitioning",
                "EFI system partition",
                "BOOT, slot A",
                "META",
                "STATE, with the machine config",
            ],
            Action::Upgrade => &["receiving the new system", "switching slots"],
            Action::Reset => &["stopping services", "wiping"],
            _ => &[],
        }
    }

    fn name(self) -> &'static str {
        match self {
            Action::Apply => "apply",
            Action::Confirm => "confirm",
            Action::Bootstrap => "bootstrap",
            Action::Install => "install",
            Action::Upgrade => "upgrade",
            Action::Rollback => "rollback",
            Action::MarkGood => "mark-good",
            Action::Reset => "reset",
            Action::Reboot => "reboot",
            Action::Shutdown => "shutdown",
        }
    }

    /// The action a reboot or power-off is.
    fn of_power(action: PowerAction) -> Action {
        match action {
            PowerAction::Reboot => Action::Reboot,
            PowerAction::PowerOff => Action::Shutdown,
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Action::Apply => "an apply-config",
            Action::Confirm => "confirming a tried config",
            Action::Bootstrap => "a bootstrap",
            Action::Install => "an install",
            Action::Upgrade => "an upgrade",
            Action::Rollback => "a rollback",
            Action::MarkGood => "marking the new slot good",
            Action::Reset => "a reset",
            Action::Reboot => "a reboot",
            Action::Shutdown => "a shutdown",
        })
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LifecycleError {
    #[error("{running} is in progress (for {secs} s); {asked} cannot start until it ends")]
    Busy {
        running: Action,
        asked: Action,
        secs: u64,
    },
    #[error("{0} is under way; nothing else can start")]
    PoweringOff(Action),
    #[error(
        "slot {slot} booted on trial and is not confirmed good yet: {asked} would write over \
         the only known-good slot; wait until the node is steady and the slot becomes the \
         default (`cairnctl get meta`), or roll back"
    )]
    OnTrial { slot: &'static str, asked: Action },
}

/// The `lifecycle` resource: what [`Lifecycle`] holds, readable.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LifecycleSpec {
    /// The action under way (`install`, `upgrade`...), empty when idle.
    pub action: String,
    /// Its phase, as `k/n name`, when it has named phases.
    pub phase: String,
    /// When it started, RFC 3339.
    pub since: String,
    /// The booted slot while it is on trial after an upgrade.
    pub trial_slot: String,
    /// The reboot or shutdown taken, if any: the end of this boot.
    pub powering: String,
}

impl LifecycleSpec {
    pub const ID: &'static str = "machine";
}

impl runtime::resources::Spec for LifecycleSpec {
    const KIND: &'static runtime::resources::Kind = runtime::resources::kind::LIFECYCLE;
    fn to_yaml(&self, _: runtime::resources::Secrets) -> String {
        runtime::resources::yaml_of(self)
    }
}

#[derive(Default)]
struct Inner {
    running: Option<(Action, Instant)>,
    /// When the running action started (wall clock, for the resource).
    since: Option<std::time::SystemTime>,
    /// The running action's phase (one of [`Action::phases`]).
    phase: Option<&'static str>,
    /// The power action taken, if any: the end of this boot.
    powering: Option<Action>,
    /// The booted slot while it is on trial.
    trial: Option<&'static str>,
}

pub struct Lifecycle {
    inner: Mutex<Inner>,
    /// The installed system (BOOT, META, the booted slot) once the boot
    /// sequence found it; never on a live boot.
    system: OnceLock<Arc<System>>,
    power: mpsc::Sender<PowerAction>,
    events: Option<Arc<EventLog>>,
    /// Publishes the `lifecycle` resource (none in tests that do not look).
    publish: OnceLock<runtime::resources::Writer>,
}

/// Holds the lifecycle for one action; dropping it ends the action.
#[must_use = "the action ends when the guard is dropped"]
pub struct Guard {
    owner: Arc<Lifecycle>,
    action: Action,
}

impl Lifecycle {
    /// `power` reaches PID 1's shutdown sequence; `events` records power
    /// actions (none in tests that do not look).
    pub fn new(power: mpsc::Sender<PowerAction>, events: Option<Arc<EventLog>>) -> Arc<Self> {
        Arc::new(Self {
            inner: Mutex::new(Inner::default()),
            system: OnceLock::new(),
            power,
            events,
            publish: OnceLock::new(),
        })
    }

    /// From now on every change shows in the `lifecycle` resource.
    pub fn publish_to(&self, writer: runtime::resources::Writer) {
        if self.publish.set(writer).is_ok() {
            self.publish(&self.lock());
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What the lifecycle holds now, as the resource shows it.
    fn spec_of(inner: &Inner) -> LifecycleSpec {
        let (action, phase) = match inner.running {
            Some((action, _)) => {
                let phases = action.phases();
                let phase = inner
                    .phase
                    .map(|p| {
                        let k = phases.iter().position(|q| *q == p).map_or(0, |i| i + 1);
                        format!("{k}/{} {p}", phases.len())
                    })
                    .unwrap_or_default();
                (action.name().to_string(), phase)
            }
            None => (String::new(), String::new()),
        };
        LifecycleSpec {
            action,
            phase,
            since: inner
                .since
                .map(|t| humantime::format_rfc3339_seconds(t).to_string())
                .unwrap_or_default(),
            trial_slot: inner.trial.unwrap_or_default().to_string(),
            powering: inner
                .powering
                .map(|a| a.name().to_string())
                .unwrap_or_default(),
        }
    }

    /// Writes the resource; called with the lock held, so writes land in
    /// the order of the changes.
    fn publish(&self, inner: &Inner) {
        if let Some(w) = self.publish.get() {
            // Fails only for an undeclared output: the writer is LIFECYCLE's.
            let _ = w.put(LifecycleSpec::ID, Self::spec_of(inner));
        }
    }

    /// Starts `action`, or says why it cannot start now.
    pub fn begin(self: &Arc<Self>, action: Action) -> Result<Guard, LifecycleError> {
        let mut inner = self.lock();
        if let Some(p) = inner.powering {
            return Err(LifecycleError::PoweringOff(p));
        }
        if let Some((running, since)) = inner.running {
            return Err(LifecycleError::Busy {
                running,
                asked: action,
                secs: since.elapsed().as_secs(),
            });
        }
        if let (Some(slot), Action::Upgrade) = (inner.trial, action) {
            return Err(LifecycleError::OnTrial {
                slot,
                asked: action,
            });
        }
        inner.running = Some((action, Instant::now()));
        inner.since = Some(std::time::SystemTime::now());
        inner.phase = None;
        self.publish(&inner);
        Ok(Guard {
            owner: self.clone(),
            action,
        })
    }

    /// The action running now, if any.
    pub fn running(&self) -> Option<Action> {
        self.lock().running.map(|(a, _)| a)
    }

    /// Whether a reboot or shutdown has been taken.
    pub fn powering_off(&self) -> bool {
        self.lock().powering.is_some()
    }

    /// Records the installed system the boot sequence found (first call
    /// wins: it is found once per boot).
    pub fn set_system(&self, system: Arc<System>) {
        let _ = self.system.set(system);
    }

    /// The installed system, `None` on a live boot.
    pub fn system(&self) -> Option<Arc<System>> {
        self.system.get().cloned()
    }

    /// Records that the booted slot is on trial (`None`: decided).
    pub fn set_trial(&self, slot: Option<&'static str>) {
        let mut inner = self.lock();
        inner.trial = slot;
        self.publish(&inner);
    }

    pub fn trial(&self) -> Option<&'static str> {
        self.lock().trial
    }

    /// A reboot or shutdown on its own (the Reboot and Shutdown RPCs, a
    /// signal to PID 1): refused while another action runs.
    pub fn power(self: &Arc<Self>, action: PowerAction, why: &str) -> Result<(), LifecycleError> {
        self.begin(Action::of_power(action))?.power(action, why);
        Ok(())
    }
}

/// After a power signal is refused, the same signal again within this
/// long forces the action: whoever pressed Ctrl-Alt-Del twice means it.
pub const SIGNAL_CONFIRM: Duration = Duration::from_secs(10);

/// What became of a power signal to PID 1.
#[derive(Debug, PartialEq, Eq)]
pub enum SignalOutcome {
    Taken,
    /// Taken although another action runs (`SIGPWR`, or a repeat).
    Forced,
    /// Refused; the same signal within [`SIGNAL_CONFIRM`] forces it.
    Refused(LifecycleError),
    /// A reboot or shutdown is under way already.
    AlreadyPowering,
}

impl Lifecycle {
    /// A reboot or power-off asked by a signal to PID 1, taken like the
    /// Reboot and Shutdown RPCs: refused while another action runs (an
    /// install, an upgrade writing a slot) unless `force` (power failing:
    /// `SIGPWR`) or the same signal was refused less than
    /// [`SIGNAL_CONFIRM`] ago (`last_refused`, kept by the caller).
    pub fn power_signal(
        self: &Arc<Self>,
        action: PowerAction,
        why: &str,
        force: bool,
        last_refused: &mut Option<Instant>,
    ) -> SignalOutcome {
        if self.powering_off() {
            return SignalOutcome::AlreadyPowering;
        }
        match self.power(action, why) {
            Ok(()) => SignalOutcome::Taken,
            Err(e) => {
                let repeated = last_refused.is_some_and(|t| t.elapsed() < SIGNAL_CONFIRM);
                if force || repeated {
                    self.force_power(action, why);
                    SignalOutcome::Forced
                } else {
                    *last_refused = Some(Instant::now());
                    SignalOutcome::Refused(e)
                }
            }
        }
    }

    /// Takes `action` whatever runs: nothing starts after it. The running
    /// action keeps its guard; the power action's own guard ends it all.
    fn force_power(self: &Arc<Self>, action: PowerAction, why: &str) {
        Guard {
            owner: self.clone(),
            action: Action::of_power(action),
        }
        .power(action, why);
    }
}

impl Guard {
    pub fn action(&self) -> Action {
        self.action
    }

    /// Hands the lifecycle on to the next action of the same sequence
    /// without letting go (an apply that turns into an install).
    pub fn switch(mut self, action: Action) -> Guard {
        let mut inner = self.owner.lock();
        if let Some((running, _)) = &mut inner.running {
            *running = action;
        }
        inner.phase = None;
        self.owner.publish(&inner);
        drop(inner);
        self.action = action;
        self
    }

    /// Enters `phase`, one of this action's [`Action::phases`]: the
    /// `lifecycle` resource and the event log show it.
    pub fn phase(&self, phase: &'static str) {
        debug_assert!(
            self.action.phases().contains(&phase),
            "{phase:?} is not a phase of {}",
            self.action
        );
        let mut inner = self.owner.lock();
        if inner.running.map(|(a, _)| a) != Some(self.action) {
            return;
        }
        inner.phase = Some(phase);
        self.owner.publish(&inner);
        drop(inner);
        if let Some(events) = &self.owner.events {
            events.record(
                EventType::Lifecycle,
                format!("{}: {phase}", self.action.name()),
            );
        }
    }

    /// Ends this action with a reboot or power-off, [`REPLY_FIRST`] from
    /// now. From here on nothing else starts.
    pub fn power(self, action: PowerAction, why: &str) {
        let owner = self.owner.clone();
        {
            let mut inner = owner.lock();
            inner.powering = Some(Action::of_power(action));
            owner.publish(&inner);
        }
        drop(self);
        let what = match action {
            PowerAction::Reboot => "reboot",
            PowerAction::PowerOff => "shutdown",
        };
        if let Some(events) = &owner.events {
            events.record(EventType::Power, format!("{what}: {why}"));
        }
        let power = owner.power.clone();
        tokio::spawn(async move {
            tokio::time::sleep(REPLY_FIRST).await;
            let _ = power.send(action).await;
        });
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let mut inner = self.owner.lock();
        if inner.running.map(|(a, _)| a) == Some(self.action) {
            inner.running = None;
            inner.since = None;
            inner.phase = None;
            self.owner.publish(&inner);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lifecycle() -> (Arc<Lifecycle>, mpsc::Receiver<PowerAction>) {
        let (tx, rx) = mpsc::channel(4);
        (Lifecycle::new(tx, None), rx)
    }

    #[test]
    fn one_action_at_a_time_and_the_refusal_names_the_running_one() {
        let (l, _rx) = lifecycle();
        let install = l.begin(Action::Install).unwrap();
        let e = l.begin(Action::Apply).err().unwrap();
        assert!(matches!(
            e,
            LifecycleError::Busy {
                running: Action::Install,
                asked: Action::Apply,
                ..
            }
        ));
        assert!(
            e.to_string().starts_with("an install is in progress"),
            "{e}"
        );
        assert_eq!(l.running(), Some(Action::Install));
        drop(install);
        assert_eq!(l.running(), None);
        drop(l.begin(Action::Apply).unwrap());
    }

    /// The `lifecycle` resource follows the action, its named phase, the
    /// trial slot and the power action.
    #[tokio::test]
    async fn the_resource_shows_the_action_its_phase_and_the_power_state() {
        let (l, _rx) = lifecycle();
        let store = runtime::resources::Store::new();
        l.publish_to(
            store
                .writer("lifecycle", &[runtime::resources::kind::LIFECYCLE])
                .unwrap(),
        );
        let spec = || store.spec::<LifecycleSpec>(LifecycleSpec::ID).unwrap();
        assert_eq!(spec(), LifecycleSpec::default());
        let install = l.begin(Action::Install).unwrap();
        assert_eq!(
            (spec().action.as_str(), spec().phase.as_str()),
            ("install", "")
        );
        assert!(spec().since.ends_with('Z'), "{:?}", spec());
        install.phase("partitioning");
        assert_eq!(spec().phase, "2/6 partitioning");
        install.phase("STATE, with the machine config");
        assert_eq!(spec().phase, "6/6 STATE, with the machine config");
        drop(install);
        assert_eq!(spec(), LifecycleSpec::default());
        l.set_trial(Some("B"));
        assert_eq!(spec().trial_slot, "B");
        l.begin(Action::Rollback)
            .unwrap()
            .power(PowerAction::Reboot, "rollback");
        assert_eq!(
            (spec().action.as_str(), spec().powering.as_str()),
            ("", "reboot")
        );
    }

    #[test]
    fn bootstrap_and_confirm_wait_for_a_reset_and_each_other() {
        let (l, _rx) = lifecycle();
        let reset = l.begin(Action::Reset).unwrap();
        for asked in [Action::Bootstrap, Action::Confirm] {
            assert_eq!(
                l.begin(asked)
                    .err()
                    .map(|e| e.to_string().starts_with("a reset")),
                Some(true)
            );
        }
        drop(reset);
        let bootstrap = l.begin(Action::Bootstrap).unwrap();
        assert!(matches!(
            l.begin(Action::Bootstrap),
            Err(LifecycleError::Busy {
                running: Action::Bootstrap,
                ..
            })
        ));
        drop(bootstrap);
        drop(l.begin(Action::Confirm).unwrap());
    }

    #[test]
    fn no_upgrade_while_a_slot_is_on_trial_but_rollback_and_mark_good_go() {
        let (l, _rx) = lifecycle();
        l.set_trial(Some("B"));
        let e = l.begin(Action::Upgrade).err().unwrap();
        assert_eq!(
            e,
            LifecycleError::OnTrial {
                slot: "B",
                asked: Action::Upgrade
            }
        );
        drop(l.begin(Action::MarkGood).unwrap());
        drop(l.begin(Action::Rollback).unwrap());
        l.set_trial(None);
        drop(l.begin(Action::Upgrade).unwrap());
    }

    #[tokio::test]
    async fn a_power_action_is_the_last_one() {
        let (l, mut rx) = lifecycle();
        let g = l.begin(Action::Install).unwrap();
        // A reboot asked while the install runs is refused...
        assert!(matches!(
            l.power(PowerAction::Reboot, "asked"),
            Err(LifecycleError::Busy { .. })
        ));
        // ...the install's own reboot ends it, and nothing starts after.
        g.power(PowerAction::Reboot, "installed");
        assert!(l.powering_off());
        assert_eq!(
            l.begin(Action::Apply).err(),
            Some(LifecycleError::PoweringOff(Action::Reboot))
        );
        assert_eq!(
            l.power(PowerAction::PowerOff, "again").err(),
            Some(LifecycleError::PoweringOff(Action::Reboot))
        );
        let sent = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await;
        assert_eq!(sent.unwrap(), Some(PowerAction::Reboot));
    }
    #[tokio::test]
    async fn ctrl_alt_del_during_an_install_is_refused_once_then_forced_and_sigpwr_at_once() {
        let (l, mut rx) = lifecycle();
        let install = l.begin(Action::Install).unwrap();
        let mut last = None;
        let first = l.power_signal(PowerAction::Reboot, "SIGINT", false, &mut last);
        assert!(
            matches!(
                first,
                SignalOutcome::Refused(LifecycleError::Busy {
                    running: Action::Install,
                    ..
                })
            ),
            "{first:?}"
        );
        assert!(!l.powering_off());
        assert_eq!(
            l.power_signal(PowerAction::Reboot, "SIGINT", false, &mut last),
            SignalOutcome::Forced
        );
        assert!(l.powering_off());
        assert_eq!(
            l.power_signal(PowerAction::Reboot, "SIGINT", false, &mut last),
            SignalOutcome::AlreadyPowering
        );
        let sent = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await;
        assert_eq!(sent.unwrap(), Some(PowerAction::Reboot));
        drop(install);

        // Power failing: at once, whatever runs.
        let (l, mut rx) = lifecycle();
        let _upgrade = l.begin(Action::Upgrade).unwrap();
        assert_eq!(
            l.power_signal(PowerAction::PowerOff, "SIGPWR", true, &mut None),
            SignalOutcome::Forced
        );
        let sent = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await;
        assert_eq!(sent.unwrap(), Some(PowerAction::PowerOff));

        // An idle node takes it at once.
        let (l, _rx) = lifecycle();
        assert_eq!(
            l.power_signal(PowerAction::Reboot, "SIGINT", false, &mut None),
            SignalOutcome::Taken
        );
    }
}
