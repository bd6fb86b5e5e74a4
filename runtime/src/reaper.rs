//! The one owner of `waitpid`. As PID 1, machined inherits every orphan, so
//! something must reap all children; and a process whose status someone else
//! reaped can no longer be waited for. So exactly one reaper thread calls
//! `waitpid(-1)`, and whoever starts a child spawns it through [`spawn`],
//! registering for that child's exit status, delivered on a channel.
//!
//! The race between "child exits" and "spawner registers" is closed with one
//! lock: the reaper only reaps while holding it, and [`spawn`] holds it from
//! fork to registration. That also keeps std's own internal `waitpid` (on an
//! exec failure inside `Command::spawn`) from racing the reaper.
//!
//! Nothing else in machined may call `waitpid`/`wait` or use
//! `tokio::process` (which waits for its own children).

use std::collections::HashMap;
use std::fmt;
use std::process::{Child, Command};
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::Signal;
use nix::sys::wait::{waitid, waitpid, Id, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use tokio::sync::oneshot;

/// How a child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    Exited(i32),
    Signaled(Signal),
}

impl ExitStatus {
    pub fn success(&self) -> bool {
        *self == ExitStatus::Exited(0)
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitStatus::Exited(code) => write!(f, "exited with code {code}"),
            ExitStatus::Signaled(sig) => write!(f, "killed by {}", sig.as_str()),
        }
    }
}

/// A child started through the reaper: the std handle (for its pipes; never
/// wait on it) and the channel its exit status arrives on.
pub struct Spawned {
    pub child: Child,
    pub exit: oneshot::Receiver<ExitStatus>,
}

impl Spawned {
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }
}

#[derive(Default)]
struct Inner {
    waiters: HashMap<i32, oneshot::Sender<ExitStatus>>,
    /// Bumped on every spawn so the reaper, idle with no children, knows
    /// to look again.
    generation: u64,
}

struct Reaper {
    inner: Mutex<Inner>,
    spawned: Condvar,
}

static REAPER: OnceLock<&'static Reaper> = OnceLock::new();

fn reaper() -> &'static Reaper {
    REAPER.get_or_init(|| {
        let r: &'static Reaper = Box::leak(Box::new(Reaper {
            inner: Mutex::new(Inner::default()),
            spawned: Condvar::new(),
        }));
        std::thread::Builder::new()
            .name("reaper".into())
            .spawn(move || r.run())
            .expect("cannot start the reaper thread");
        r
    })
}

/// Starts the reaper thread (idempotent). PID 1 calls this first thing so
/// orphans are reaped even before machined spawns anything itself.
pub fn start() {
    reaper();
}

/// Spawns `cmd` and registers for its exit status.
pub fn spawn(cmd: &mut Command) -> std::io::Result<Spawned> {
    let r = reaper();
    let mut inner = r.lock();
    let child = cmd.spawn()?;
    let (tx, rx) = oneshot::channel();
    inner.waiters.insert(child.id() as i32, tx);
    inner.generation += 1;
    drop(inner);
    r.spawned.notify_all();
    Ok(Spawned { child, exit: rx })
}

impl Reaper {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding this lock already reboots PID 1; a poisoned
        // lock holds consistent data (inserts and removes are single steps).
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn run(&self) {
        loop {
            let generation = self.lock().generation;
            // Block until some child can be reaped, without reaping it, so
            // that the reaping itself happens under the lock.
            match waitid(Id::All, WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT) {
                Ok(_) => {}
                Err(Errno::EINTR) => continue,
                Err(Errno::ECHILD) => {
                    let inner = self.lock();
                    if inner.generation == generation {
                        // No children at all: sleep until one is spawned.
                        // The timeout covers orphans handed to us by the
                        // kernel (only possible while we have children, but
                        // cheap insurance).
                        let _ = self.spawned.wait_timeout(inner, Duration::from_secs(1));
                    }
                    continue;
                }
                Err(e) => {
                    tracing::error!(error = %e, "reaper: waitid failed");
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
            }
            let mut inner = self.lock();
            self.reap_all(&mut inner);
        }
    }

    fn reap_all(&self, inner: &mut Inner) {
        loop {
            let (pid, status) = match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => (pid, ExitStatus::Exited(code)),
                Ok(WaitStatus::Signaled(pid, sig, _)) => (pid, ExitStatus::Signaled(sig)),
                Ok(WaitStatus::StillAlive) => return,
                Ok(_) => continue,
                Err(Errno::EINTR) => continue,
                Err(Errno::ECHILD) => return,
                Err(e) => {
                    tracing::error!(error = %e, "reaper: waitpid failed");
                    return;
                }
            };
            match inner.waiters.remove(&pid.as_raw()) {
                // The receiver may be gone (nobody cares any more): fine.
                Some(tx) => {
                    let _ = tx.send(status);
                }
                None => tracing::debug!(pid = pid.as_raw(), %status, "reaped orphan"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn delivers_exit_codes_and_signals() {
        let ok = spawn(Command::new("/bin/true").arg("x")).unwrap();
        assert_eq!(ok.exit.await.unwrap(), ExitStatus::Exited(0));
        let code = spawn(Command::new("/bin/sh").args(["-c", "exit 7"])).unwrap();
        assert_eq!(code.exit.await.unwrap(), ExitStatus::Exited(7));
        let sleeper = spawn(Command::new("/bin/sleep").arg("30")).unwrap();
        nix::sys::signal::kill(Pid::from_raw(sleeper.pid()), Signal::SIGKILL).unwrap();
        assert_eq!(
            sleeper.exit.await.unwrap(),
            ExitStatus::Signaled(Signal::SIGKILL)
        );
    }

    #[tokio::test]
    async fn exec_failure_is_an_error_not_a_panic() {
        for _ in 0..20 {
            let err = spawn(&mut Command::new("/nonexistent/binary"))
                .err()
                .unwrap();
            assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
        }
        // The reaper still works afterwards.
        let ok = spawn(&mut Command::new("/bin/true")).unwrap();
        assert!(ok.exit.await.unwrap().success());
    }

    #[tokio::test]
    async fn many_short_children_all_report() {
        let children: Vec<_> = (0..50)
            .map(|i| {
                spawn(Command::new("/bin/sh").args(["-c", &format!("exit {}", i % 5)])).unwrap()
            })
            .collect();
        for (i, c) in children.into_iter().enumerate() {
            assert_eq!(c.exit.await.unwrap(), ExitStatus::Exited((i % 5) as i32));
        }
    }
}
