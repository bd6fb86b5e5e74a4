//! Orderly shutdown and reboot: stop services in reverse dependency order,
//! SIGTERM then SIGKILL whatever is left, sync, unmount, reboot(2).

use std::time::Duration;

use nix::sys::reboot::RebootMode;
use nix::sys::signal::Signal;

use runtime::supervisor::Supervisor;
use system::mounts;
use system::syscall::Syscalls;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerAction {
    Reboot,
    PowerOff,
}

impl PowerAction {
    fn mode(self) -> RebootMode {
        match self {
            PowerAction::Reboot => RebootMode::RB_AUTOBOOT,
            PowerAction::PowerOff => RebootMode::RB_POWER_OFF,
        }
    }

    fn verb(self) -> &'static str {
        match self {
            PowerAction::Reboot => "rebooting",
            PowerAction::PowerOff => "powering off",
        }
    }
}

/// How long processes get between SIGTERM and SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(5);

/// Number of processes other than PID 1 and kernel threads.
pub fn user_processes() -> usize {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != 1 && *pid != std::process::id())
        .filter(|pid| !is_kernel_thread(*pid))
        .count()
}

/// Kernel threads have the PF_KTHREAD flag (0x00200000) in field 9 of
/// /proc/<pid>/stat.
fn is_kernel_thread(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        // Gone already: not something to wait for.
        return true;
    };
    // The command name (field 2) is in parentheses and may contain spaces.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return true;
    };
    rest.split_whitespace()
        .nth(6)
        .and_then(|f| f.parse::<u64>().ok())
        .is_some_and(|flags| flags & 0x0020_0000 != 0)
}

/// Signals everything left, waits up to `grace` for it to go (polling
/// `remaining`), then kills the rest, syncs, unmounts and powers off or
/// reboots. Returns only if reboot(2) fails.
pub async fn terminate_and_power(
    sys: &dyn Syscalls,
    action: PowerAction,
    grace: Duration,
    remaining: impl Fn() -> usize,
) -> std::io::Error {
    if let Err(e) = sys.kill_all(Signal::SIGTERM) {
        tracing::warn!(error = %e, "kill(-1, SIGTERM)");
    }
    let deadline = tokio::time::Instant::now() + grace;
    while remaining() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let left = remaining();
    if left > 0 {
        runtime::console!("shutdown: {left} processes ignored SIGTERM; sending SIGKILL");
        if let Err(e) = sys.kill_all(Signal::SIGKILL) {
            tracing::warn!(error = %e, "kill(-1, SIGKILL)");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    sys.sync();
    for (target, problem) in mounts::unmount_all(sys) {
        runtime::console!("shutdown: {}: {problem}", target.display());
    }
    sys.sync();
    runtime::console!("shutdown: {}", action.verb());
    sys.reboot(action.mode())
}

/// The whole sequence, as PID 1 runs it.
pub async fn run(
    sys: &dyn Syscalls,
    supervisor: &Supervisor,
    action: PowerAction,
) -> std::io::Error {
    runtime::console!("shutdown: stopping services ({})", action.verb());
    supervisor.stop_all().await;
    terminate_and_power(sys, action, TERM_GRACE, user_processes).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use system::syscall::{Call, Recording};

    #[tokio::test]
    async fn order_is_term_kill_sync_unmount_reboot() {
        let sys = Recording::with_mountinfo(
            "20 1 0:18 / / ro - squashfs /dev/loop0 ro\n30 20 0:40 / /var rw - ext4 /dev/vda6 rw\n",
        );
        // Two processes that never exit: SIGKILL must follow.
        let err = terminate_and_power(
            &sys,
            PowerAction::PowerOff,
            Duration::from_millis(200),
            || 2,
        )
        .await;
        assert_eq!(err.to_string(), "recorded reboot");
        let calls = sys.calls();
        assert_eq!(
            calls,
            vec![
                Call::KillAll(Signal::SIGTERM),
                Call::KillAll(Signal::SIGKILL),
                Call::Sync,
                Call::Umount("/var".into()),
                Call::Sync,
                Call::Reboot(RebootMode::RB_POWER_OFF),
            ]
        );
    }

    #[tokio::test]
    async fn no_sigkill_when_everything_exits() {
        let sys = Recording::default();
        let polls = AtomicUsize::new(0);
        terminate_and_power(&sys, PowerAction::Reboot, Duration::from_secs(5), || {
            // Gone after the second look.
            if polls.fetch_add(1, Ordering::SeqCst) < 1 {
                1
            } else {
                0
            }
        })
        .await;
        let calls = sys.calls();
        assert!(!calls.contains(&Call::KillAll(Signal::SIGKILL)));
        assert_eq!(calls.last(), Some(&Call::Reboot(RebootMode::RB_AUTOBOOT)));
    }

    #[test]
    fn tells_kernel_threads_from_processes() {
        // kthreadd is pid 2 when this runs in the initial pid namespace.
        if std::fs::read_to_string("/proc/2/comm").is_ok_and(|c| c.trim() == "kthreadd") {
            assert!(is_kernel_thread(2));
        }
        assert!(!is_kernel_thread(std::process::id()));
    }
}
