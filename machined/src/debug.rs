//! Test hooks, off unless the kernel command line turns them on (there is
//! no shell in the image to do these things from):
//! `cairn.debug.kill=<service>@<secs>` SIGKILLs a service's process once;
//! `cairn.debug.panic=<secs>` panics machined (which then reboots).

use std::sync::Arc;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use host::cmdline::Cmdline;
use runtime::supervisor::Supervisor;

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
