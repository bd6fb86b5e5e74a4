//! Running a helper program to completion (mke2fs) through the reaper,
//! collecting its combined output for error messages.

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
