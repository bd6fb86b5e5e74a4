//! Running a helper program to completion (mke2fs) through the reaper,
//! collecting its combined output for error messages.

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

async fn read_all(fd: Option<std::os::fd::OwnedFd>) -> Vec<u8> {
    let mut buf = Vec::new();
    if let Some(mut r) = fd.and_then(|fd| tokio::net::unix::pipe::Receiver::from_owned_fd(fd).ok())
    {
        let _ = r.read_to_end(&mut buf).await;
    }
    buf
}

/// Spawns `cmd` through the reaper with stdout and stderr piped.
fn spawn_piped(cmd: &mut Command) -> std::io::Result<reaper::Spawned> {
    reaper::spawn(
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    )
}

/// Both output streams and the exit status of a child from [`spawn_piped`];
/// None when the reaper lost it.
async fn collect(mut spawned: reaper::Spawned) -> Option<(ExitStatus, Vec<u8>, Vec<u8>)> {
    let stdout = spawned.child.stdout.take().map(Into::into);
    let stderr = spawned.child.stderr.take().map(Into::into);
    let (out, err) = tokio::join!(read_all(stdout), read_all(stderr));
    Some((spawned.exit.await.ok()?, out, err))
}

/// Runs `program args...` with a minimal environment and waits for it.
pub async fn run(program: &str, args: &[&str]) -> Result<Output, ExecError> {
    run_with_env(program, args, &[]).await
}

/// [`run`] with `env` added to the minimal environment.
pub async fn run_with_env(
    program: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> Result<Output, ExecError> {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env_clear()
        .env("PATH", "/sbin:/bin:/usr/sbin:/usr/bin")
        .envs(env.iter().copied());
    let spawned = spawn_piped(&mut cmd).map_err(|source| ExecError::Spawn {
        program: program.to_string(),
        source,
    })?;
    let (status, out, err) = collect(spawned)
        .await
        .ok_or_else(|| ExecError::Lost(program.to_string()))?;
    Ok(Output {
        status,
        output: String::from_utf8_lossy(&out).into_owned() + &String::from_utf8_lossy(&err),
    })
}

/// `cmd`'s status and output, like `Command::output`, for synchronous
/// callers (tests). It goes through the reaper like every other child of
/// this process: once the reaper runs (any test may start it), a child
/// waited for with std's own `wait` can be reaped under its feet, and
/// `Command::output` then fails with ECHILD.
pub fn output_blocking(cmd: &mut Command) -> std::io::Result<std::process::Output> {
    let spawned = spawn_piped(cmd)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    let (status, stdout, stderr) = rt
        .block_on(collect(spawned))
        .ok_or_else(|| std::io::Error::other("the reaper lost the child"))?;
    let raw = match status {
        ExitStatus::Exited(code) => (code & 0xff) << 8,
        ExitStatus::Signaled(sig) => sig as i32,
    };
    Ok(std::process::Output {
        status: std::process::ExitStatus::from_raw(raw),
        stdout,
        stderr,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_blocking_reports_status_and_both_streams() {
        let out =
            output_blocking(Command::new("/bin/sh").args(["-c", "echo out; echo err >&2; exit 3"]))
                .unwrap();
        assert_eq!(out.status.code(), Some(3));
        assert_eq!(out.stdout, b"out\n");
        assert_eq!(out.stderr, b"err\n");
        let killed = output_blocking(Command::new("/bin/sh").args(["-c", "kill -9 $$"])).unwrap();
        assert_eq!(killed.status.signal(), Some(9));
        assert!(output_blocking(&mut Command::new("/nonexistent/program")).is_err());
    }
}
