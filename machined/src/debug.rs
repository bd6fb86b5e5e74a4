//! Test hooks, off unless the kernel command line turns them on (there is
//! no shell in the image to do these things from):
//! `cairn.debug.kill=<service>@<secs>` SIGKILLs a service's process once;
//! `cairn.debug.panic=<secs>` panics machined (which then reboots);
//! `cairn.debug.cut=<point>` stops machined for good at a named point of a
//! STATE write, an upgrade or an install ([`power_cut`]), for a test to
//! cut the power there.

use std::sync::Arc;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use host::cmdline::Cmdline;
use runtime::supervisor::Supervisor;

/// The points [`power_cut`] knows, in the order the work reaches them.
pub const CUT_POINTS: &[&str] = &[
    // A config file of STATE: its temp file written and synced, not
    // renamed yet; then renamed and the directory synced.
    "state:temp-written",
    "state:written",
    // An upgrade: the new slot's files all in staging; the staging made
    // the slot; the slot set to boot once.
    "upgrade:staged",
    "upgrade:committed",
    "upgrade:switched",
    // An install: the disk partitioned; BOOT filled; STATE written.
    "install:partitioned",
    "install:boot-written",
    "install:done",
];

/// `cairn.debug.cut=<point>` on the kernel command line: when the work
/// reaches `point`, says so on the console and stops there for good,
/// without syncing anything, so the test can kill QEMU: a power cut at
/// exactly that point. The command line is read here (a few points, each
/// rarely reached), so no state is kept for it.
pub fn power_cut(point: &'static str) {
    debug_assert!(CUT_POINTS.contains(&point), "{point} is not in CUT_POINTS");
    let Ok(cmdline) = Cmdline::read() else {
        return;
    };
    if cmdline.debug_cut() != Some(point) {
        return;
    }
    runtime::console!("debug: power cut point {point} reached; stopping here (cairn.debug.cut)");
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}

pub fn spawn_hooks(cmdline: &Cmdline, supervisor: Arc<Supervisor>) {
    if let Some(k) = cmdline.debug_kill() {
        runtime::console!(
            "debug: will SIGKILL service {} in {}s (cairn.debug.kill)",
            k.service,
            k.after.as_secs()
        );
        tokio::spawn(async move {
            tokio::time::sleep(k.after).await;
            match supervisor.handle(&k.service).and_then(|h| h.snapshot().pid) {
                Some(pid) => {
                    runtime::console!(
                        "debug: sending SIGKILL to service {} (pid {pid})",
                        k.service
                    );
                    if let Err(e) = kill(Pid::from_raw(pid), Signal::SIGKILL) {
                        runtime::console!("debug: kill failed: {e}");
                    }
                }
                None => runtime::console!(
                    "debug: service {} has no running process to kill",
                    k.service
                ),
            }
        });
    }
    if let Some(after) = cmdline.debug_panic() {
        runtime::console!(
            "debug: machined will panic in {}s (cairn.debug.panic)",
            after.as_secs()
        );
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            panic!("deliberate panic requested by cairn.debug.panic");
        });
    }
}
