//! The pause program: the first process of every Pod sandbox.
//!
//! It holds the Pod's namespaces open and does nothing else: it sleeps,
//! reaps the zombies that end up as its children (it is PID 1 when the Pod
//! shares its process namespace), and exits 0 on SIGTERM or SIGINT, like
//! Kubernetes' own `pause`. Built static, so the image is this one file.
//!
//! Signals are blocked and taken synchronously with `sigwait`, so no handler
//! runs at an arbitrary point and nothing can be missed between two waits.

use nix::errno::Errno;
use nix::sys::signal::{SigSet, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use std::process::ExitCode;

fn main() -> ExitCode {
    if std::env::args().nth(1).as_deref() == Some("-v") {
        println!("pause (cairn) {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    let mut signals = SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGCHLD] {
        signals.add(s);
    }
    if let Err(e) = signals.thread_block() {
        eprintln!("pause: cannot block signals: {e}");
        return ExitCode::FAILURE;
    }
    loop {
        // Children that exited before the signals were blocked, or while
        // the previous batch was being reaped, are collected here too.
        reap_zombies();
        match signals.wait() {
            Ok(Signal::SIGTERM) | Ok(Signal::SIGINT) => {
                eprintln!("pause: shutting down");
                return ExitCode::SUCCESS;
            }
            Ok(_) => {}
            Err(e) => {
                eprintln!("pause: sigwait: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
}

/// Collects every child that has exited, without blocking.
fn reap_zombies() {
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return,
            Ok(_) | Err(Errno::EINTR) => continue,
            Err(_) => return,
        }
    }
}
