//! The process runner: starts a program through the reaper, captures its
//! stdout and stderr line by line into the service's log ring, and stops it
//! with SIGTERM, then SIGKILL after a grace period.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

use super::logbuf::LogRing;
use super::service::{RunContext, RunOutcome, Runner, State};
use crate::reaper;

/// Starts `program` with a clean environment, stdin from /dev/null and
/// stdout/stderr into the log ring.
pub struct ProcessRunner {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// Files machined opens (read-only) for each start and hands to the
    /// child at fixed descriptor numbers (>= 3), e.g. a key the child may not
    /// open itself. Opened afresh every run, so a restarted child reads from
    /// the start again.
    pub pass_files: Vec<(PathBuf, RawFd)>,
    /// Set `no_new_privs` so the child can never gain privileges (setuid
    /// binaries, file capabilities).
    pub no_new_privs: bool,
    /// Grace period between SIGTERM and SIGKILL on stop.
    pub stop_timeout: Duration,
    /// The cgroup (v2) directory the child runs in, created if missing;
    /// `None` leaves it in machined's. The child moves itself before exec,
    /// so nothing it starts is ever left behind.
    pub cgroup: Option<PathBuf>,
}

impl ProcessRunner {
    pub fn new(program: impl Into<PathBuf>) -> Self {
        Self {
            program: program.into(),
            args: Vec::new(),
            env: vec![("PATH".into(), "/sbin:/bin:/usr/sbin:/usr/bin".into())],
            uid: None,
            gid: None,
            pass_files: Vec::new(),
            no_new_privs: false,
            stop_timeout: Duration::from_secs(10),
            cgroup: None,
        }
    }

    pub fn args<I: IntoIterator<Item = S>, S: Into<String>>(mut self, args: I) -> Self {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// `cgroup.procs` of the service's cgroup, opened for the child to
    /// write itself into. Opened here, as root: the kernel checks a move
    /// against the opener's credentials, and the child may have dropped
    /// them by then (a uid of its own).
    fn cgroup_procs(&self) -> Result<Option<OwnedFd>, String> {
        let Some(dir) = &self.cgroup else {
            return Ok(None);
        };
        let procs = dir.join("cgroup.procs");
        std::fs::create_dir_all(dir)
            .and_then(|_| std::fs::OpenOptions::new().write(true).open(&procs))
            .map(|f| Some(OwnedFd::from(f)))
            .map_err(|e| format!("cannot enter cgroup {}: {e}", dir.display()))
    }

    fn command(&self, files: &[(OwnedFd, RawFd)], cgroup: Option<&OwnedFd>) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args)
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(gid) = self.gid {
            cmd.gid(gid);
        }
        if let Some(uid) = self.uid {
            // std also drops supplementary groups when root sets a uid.
            cmd.uid(uid);
        }
        let fds: Vec<(RawFd, RawFd)> = files
            .iter()
            .map(|(f, target)| (f.as_raw_fd(), *target))
            .collect();
        let no_new_privs = self.no_new_privs;
        let procs = cgroup.map(|f| f.as_raw_fd());
        if !fds.is_empty() || no_new_privs || procs.is_some() {
            // SAFETY: the closure runs in the forked child before exec and
            // only makes async-signal-safe syscalls (write, fcntl, dup2,
            // prctl) on plain integers captured by value.
            unsafe {
                cmd.pre_exec(move || {
                    // "0" is the writer itself.
                    if let Some(fd) = procs {
                        if libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                            return Err(std::io::Error::last_os_error());
                        }
                    }
                    // Move every source out of the way first so that one
                    // target number cannot clobber another source.
                    let mut high = [0 as RawFd; 8];
                    for (i, (src, _)) in fds.iter().enumerate().take(high.len()) {
                        let fd = libc::fcntl(*src, libc::F_DUPFD_CLOEXEC, 100);
                        if fd < 0 {
                            return Err(std::io::Error::last_os_error());
                        }
                        high[i] = fd;
                    }
                    for (i, (_, target)) in fds.iter().enumerate().take(high.len()) {
                        // dup2 clears close-on-exec on the target.
                        if libc::dup2(high[i], *target) < 0 {
                            return Err(std::io::Error::last_os_error());
                        }
                    }
                    if no_new_privs && libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        cmd
    }
}

/// Copies lines from a pipe into the ring until the writer closes it.
async fn pump<R: AsyncRead + Unpin>(id: String, reader: R, ring: Arc<LogRing>) {
    let mut reader = BufReader::new(reader);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                let line = String::from_utf8_lossy(&buf);
                let line = line.trim_end_matches(['\n', '\r']);
                tracing::debug!(service = %id, "{line}");
                ring.push(line);
            }
        }
    }
}

fn pipe_reader(fd: OwnedFd) -> std::io::Result<tokio::net::unix::pipe::Receiver> {
    tokio::net::unix::pipe::Receiver::from_owned_fd(fd)
}

impl Runner for ProcessRunner {
    fn run<'a>(&'a self, ctx: &'a RunContext) -> BoxFuture<'a, RunOutcome> {
        Box::pin(async move {
            let id = ctx.handle.id.clone();
            let mut files = Vec::with_capacity(self.pass_files.len());
            for (path, target) in &self.pass_files {
                match std::fs::File::open(path) {
                    Ok(f) => files.push((OwnedFd::from(f), *target)),
                    Err(e) => {
                        return RunOutcome::Failed(format!("cannot open {}: {e}", path.display()))
                    }
                }
            }
            let cgroup = match self.cgroup_procs() {
                Ok(c) => c,
                Err(e) => return RunOutcome::Failed(e),
            };
            // The parent's copies close when `files` drops, after the spawn.
            let mut spawned = match reaper::spawn(&mut self.command(&files, cgroup.as_ref())) {
                Ok(s) => s,
                Err(e) => {
                    return RunOutcome::Failed(format!(
                        "cannot start {}: {e}",
                        self.program.display()
                    ))
                }
            };
            let pid = spawned.pid();
            let mut pumps = Vec::new();
            let outputs: Vec<OwnedFd> = [
                spawned.child.stdout.take().map(OwnedFd::from),
                spawned.child.stderr.take().map(OwnedFd::from),
            ]
            .into_iter()
            .flatten()
            .collect();
            for fd in outputs {
                match pipe_reader(fd) {
                    Ok(r) => pumps.push(tokio::spawn(pump(id.clone(), r, ctx.handle.logs.clone()))),
                    Err(e) => {
                        tracing::warn!(service = %id, error = %e, "cannot read service output")
                    }
                }
            }
            ctx.handle.set_pid(Some(pid));
            ctx.handle.set_state(State::Running, format!("pid {pid}"));

            let mut exit = spawned.exit;
            let outcome = tokio::select! {
                status = &mut exit => match status {
                    Ok(s) => RunOutcome::Exited(s),
                    Err(_) => RunOutcome::Failed("lost track of the process".into()),
                },
                () = ctx.stopped() => {
                    // If the process exited just now, its pid could in
                    // theory be reused before this kill; that needs the pid
                    // space to wrap in between, so it is accepted here (a
                    // pidfd would close the window).
                    let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
                    match tokio::time::timeout(self.stop_timeout, &mut exit).await {
                        Ok(_) => {}
                        Err(_) => {
                            tracing::warn!(service = %id, pid, "did not stop after SIGTERM, sending SIGKILL");
                            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                            let _ = exit.await;
                        }
                    }
                    RunOutcome::Stopped
                }
            };
            ctx.handle.set_pid(None);
            // Let the pumps drain what the process wrote last; a daemonized
            // grandchild holding the pipe open must not block us.
            for p in pumps {
                let _ = tokio::time::timeout(Duration::from_millis(500), p).await;
            }
            outcome
        })
    }
}
