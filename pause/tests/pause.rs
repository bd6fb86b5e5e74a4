//! Runs the built `pause` binary: it reaps a zombie child and exits 0 on
//! SIGTERM and SIGINT.

use std::os::unix::process::CommandExt;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

fn spawn_pause() -> Reaped {
    Reaped(
        Command::new(env!("CARGO_BIN_EXE_pause"))
            .spawn()
            .expect("spawn pause"),
    )
}

/// Kills and waits for pause when a test ends, even by a failed assertion.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn kill(child: &Child, sig: libc::c_int) {
    // SAFETY: kill(2) on the pid of a child we own and have not waited for.
    assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, sig) }, 0);
}

/// Waits up to `timeout` for the child to exit.
fn wait_exit(child: &mut Child, timeout: Duration) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        assert!(
            start.elapsed() < timeout,
            "pause did not exit within {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The pids of the processes whose parent is `parent`, with their state letter.
fn children_of(parent: u32) -> Vec<(u32, char)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // "pid (comm) S ppid ...": comm may hold spaces, so split after ')'.
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next().and_then(|s| s.chars().next()).unwrap_or('?');
        if fields.next().and_then(|p| p.parse::<u32>().ok()) == Some(parent) {
            out.push((pid, state));
        }
    }
    out
}

#[test]
fn exits_zero_on_sigterm() {
    let mut guard = spawn_pause();
    let child = &mut guard.0;
    std::thread::sleep(Duration::from_millis(200));
    kill(child, libc::SIGTERM);
    let status = wait_exit(child, Duration::from_secs(5));
    assert_eq!(status.code(), Some(0), "status {status:?}");
}

#[test]
fn exits_zero_on_sigint() {
    let mut guard = spawn_pause();
    let child = &mut guard.0;
    std::thread::sleep(Duration::from_millis(200));
    kill(child, libc::SIGINT);
    let status = wait_exit(child, Duration::from_secs(5));
    assert_eq!(status.code(), Some(0), "status {status:?}");
}

#[test]
fn ignores_other_children_exiting_and_reaps_them() {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pause"));
    // SAFETY: between fork and exec only async-signal-safe calls are made:
    // fork, and in the grandchild sleep and _exit. The grandchild is a child
    // of the process that becomes pause, so pause must reap it.
    unsafe {
        cmd.pre_exec(|| {
            if libc::fork() == 0 {
                // Close std's exec-status pipe (and every other inherited
                // descriptor), or spawn() would wait for this process to exit.
                for fd in 3..1024 {
                    libc::close(fd);
                }
                libc::usleep(600_000);
                libc::_exit(7);
            }
            Ok(())
        });
    }
    let mut child = Reaped(cmd.spawn().expect("spawn pause"));
    let child = &mut child.0;
    std::thread::sleep(Duration::from_millis(250));
    let before = children_of(child.id());
    assert_eq!(
        before.len(),
        1,
        "pause should have the one grandchild: {before:?}"
    );
    let grandchild = before[0].0;
    // The grandchild exits after 600 ms; pause must collect it (no 'Z' left).
    let start = Instant::now();
    loop {
        let now = children_of(child.id());
        if now.iter().all(|(pid, _)| *pid != grandchild) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "child not reaped: {now:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        child.try_wait().unwrap().is_none(),
        "pause exited when its child did"
    );
    kill(child, libc::SIGTERM);
    assert_eq!(wait_exit(child, Duration::from_secs(5)).code(), Some(0));
}
