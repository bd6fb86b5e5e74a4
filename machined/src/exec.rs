//! Running a helper program to completion (mke2fs) through the reaper,
//! collecting its combined output for error messages.

use std::io::Read as _;
use std::os::unix::process::ExitStatusExt as _;
use std::process::{Command, Stdio};

use tokio::io::AsyncReadExt;

use crate::reaper::{self, ExitStatus};

pub struct Output {
    pub status: ExitStatus,
    /// stdout then stderr, lossily decoded.
    pub output: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("cannot start {program}: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("lost track of {0}")]
    Lost(String),
}

async fn read_all(fd: Option<std::os::fd::OwnedFd>) -> String {
    let Some(fd) = fd else { return String::new() };
    let Ok(mut r) = tokio::net::unix::pipe::Receiver::from_owned_fd(fd) else {
        return String::new();
    };
    let mut buf = Vec::new();
    let _ = r.read_to_end(&mut buf).await;
    String::from_utf8_lossy(&buf).into_owned()
}

/// Runs `program args...` with a minimal environment and waits for it.
pub async fn run(program: &str, args: &[&str]) -> Result<Output, ExecError> {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env_clear()
        .env("PATH", "/sbin:/bin:/usr/sbin:/usr/bin")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut spawned = reaper::spawn(&mut cmd).map_err(|source| ExecError::Spawn {
        program: program.to_string(),
        source,
    })?;
    let stdout = spawned.child.stdout.take().map(Into::into);
    let stderr = spawned.child.stderr.take().map(Into::into);
    let (out, err) = tokio::join!(read_all(stdout), read_all(stderr));
    let status = spawned
        .exit
        .await
        .map_err(|_| ExecError::Lost(program.to_string()))?;
    Ok(Output {
        status,
        output: out + &err,
    })
}

/// `cmd`'s status and output, like `Command::output`, for synchronous
/// callers (tests). It goes through the reaper like every other child of
/// this process: once the reaper runs (any test may start it), a child
/// waited for with std's own `wait` can be reaped under its feet, and
/// `Command::output` then fails with ECHILD.
pub fn output_blocking(cmd: &mut Command) -> std::io::Result<std::process::Output> {
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut spawned = reaper::spawn(cmd)?;
    let mut stderr_pipe = spawned.child.stderr.take();
    let stderr = std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(p) = stderr_pipe.as_mut() {
            let _ = p.read_to_end(&mut buf);
        }
        buf
    });
    let mut stdout = Vec::new();
    if let Some(p) = spawned.child.stdout.as_mut() {
        p.read_to_end(&mut stdout)?;
    }
    let stderr = stderr.join().unwrap_or_default();
    let status = spawned.exit.blocking_recv().map_err(|_| std::io::Error::other("the reaper lost the child"))?;
    let raw = match status {
        ExitStatus::Exited(code) => (code & 0xff) << 8,
        ExitStatus::Signaled(sig) => sig as i32,
    };
    Ok(std::process::Output { status: std::process::ExitStatus::from_raw(raw), stdout, stderr })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_blocking_reports_status_and_both_streams() {
        let out = output_blocking(Command::new("/bin/sh").args(["-c", "echo out; echo err >&2; exit 3"])).unwrap();
        assert_eq!(out.status.code(), Some(3));
        assert_eq!(out.stdout, b"out\n");
        assert_eq!(out.stderr, b"err\n");
        let killed = output_blocking(Command::new("/bin/sh").args(["-c", "kill -9 $$"])).unwrap();
        assert_eq!(killed.status.signal(), Some(9));
        assert!(output_blocking(&mut Command::new("/nonexistent/program")).is_err());
    }
}
