//! Syscalls that tests cannot make (mount, unmount, loop devices, switching
//! root, exec, reboot, killing every process) behind one small trait, with
//! the real implementation and a recording one for tests. `init` and
//! `machined` both use it: there is one trait for the whole stack.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use nix::mount::{MntFlags, MsFlags};
use nix::sys::reboot::RebootMode;
use nix::sys::signal::Signal;

/// The machine-changing syscalls machined makes.
pub trait Syscalls: Send + Sync {
    fn mount(
        &self,
        source: Option<&str>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> io::Result<()>;
    fn umount(&self, target: &Path, flags: MntFlags) -> io::Result<()>;
    /// The text of `/proc/self/mountinfo`.
    fn mountinfo(&self) -> io::Result<String>;
    /// `mkdir -p` with `mode` for the directories it creates.
    fn create_dir_all(&self, path: &Path, mode: u32) -> io::Result<()>;
    fn sync(&self);
    /// Signals every process but PID 1 (`kill(-1, sig)`).
    fn kill_all(&self, sig: Signal) -> io::Result<()>;
    /// Reboots or powers off; returns only on failure.
    fn reboot(&self, mode: RebootMode) -> io::Error;
    /// Attaches `image` read-only to a free loop device and returns the
    /// device's path. The device stays attached for the life of the system
    /// (it backs a mounted filesystem).
    fn attach_loop(&self, image: &Path) -> io::Result<PathBuf>;
    /// Replaces the initramfs root with the filesystem mounted at
    /// `new_root` (see [`crate::switch_root`]).
    fn switch_root(&self, new_root: &Path) -> io::Result<()>;
    /// Replaces this process with `program`; returns only on failure.
    fn exec(&self, program: &Path) -> io::Error;
}

/// The real thing.
pub struct Real;

fn to_io(e: nix::Error) -> io::Error {
    io::Error::from_raw_os_error(e as i32)
}

impl Syscalls for Real {
    fn mount(
        &self,
        source: Option<&str>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> io::Result<()> {
        nix::mount::mount(source, target, fstype, flags, data).map_err(to_io)
    }

    fn umount(&self, target: &Path, flags: MntFlags) -> io::Result<()> {
        nix::mount::umount2(target, flags).map_err(to_io)
    }

    fn mountinfo(&self) -> io::Result<String> {
        std::fs::read_to_string("/proc/self/mountinfo")
    }

    fn create_dir_all(&self, path: &Path, mode: u32) -> io::Result<()> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(mode)
            .create(path)
    }

    fn sync(&self) {
        nix::unistd::sync();
    }

    fn kill_all(&self, sig: Signal) -> io::Result<()> {
        match nix::sys::signal::kill(nix::unistd::Pid::from_raw(-1), sig) {
            // ESRCH: nothing left to signal.
            Ok(()) | Err(nix::Error::ESRCH) => Ok(()),
            Err(e) => Err(to_io(e)),
        }
    }

    fn reboot(&self, mode: RebootMode) -> io::Error {
        match nix::sys::reboot::reboot(mode) {
            Ok(never) => match never {},
            Err(e) => to_io(e),
        }
    }

    fn attach_loop(&self, image: &Path) -> io::Result<PathBuf> {
        let device = crate::loopdev::attach_read_only(image)?;
        let path = device.path.clone();
        // Attached without autoclear, the device outlives its descriptor;
        // closing it here (close-on-exec would anyway) keeps no fd around.
        drop(device);
        Ok(path)
    }

    fn switch_root(&self, new_root: &Path) -> io::Result<()> {
        crate::switch_root::switch_root(new_root)
    }

    fn exec(&self, program: &Path) -> io::Error {
        use std::os::unix::process::CommandExt;
        std::process::Command::new(program).exec()
    }
}

/// One recorded call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    Mount {
        source: Option<String>,
        target: PathBuf,
        fstype: Option<String>,
        flags: MsFlags,
        data: Option<String>,
    },
    Umount(PathBuf),
    CreateDir(PathBuf, u32),
    Sync,
    KillAll(Signal),
    Reboot(RebootMode),
    AttachLoop(PathBuf),
    SwitchRoot(PathBuf),
    Exec(PathBuf),
}

/// Records calls and keeps a pretend mount table, so idempotency and
/// ordering can be tested without root or a VM.
#[derive(Default)]
pub struct Recording {
    pub calls: Mutex<Vec<Call>>,
    /// Initial `/proc/self/mountinfo` lines (e.g. what init mounted).
    pub initial_mountinfo: String,
    /// Targets whose mount (or images whose loop attach) fails with this
    /// errno.
    pub failing: Vec<(PathBuf, i32)>,
}

impl Recording {
    pub fn with_mountinfo(mountinfo: &str) -> Self {
        Self {
            initial_mountinfo: mountinfo.to_string(),
            ..Default::default()
        }
    }

    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    fn record(&self, call: Call) {
        self.calls.lock().unwrap().push(call);
    }

    /// Targets mounted so far, in order, minus the unmounted ones.
    fn mounted(&self) -> Vec<(PathBuf, String)> {
        let mut out: Vec<(PathBuf, String)> = Vec::new();
        for c in self.calls.lock().unwrap().iter() {
            match c {
                Call::Mount {
                    target,
                    flags,
                    source,
                    ..
                } if flags.contains(MsFlags::MS_MOVE) => {
                    // The mount moves from `source` to `target`.
                    if let Some(m) = out
                        .iter_mut()
                        .rev()
                        .find(|(p, _)| Some(p.as_path()) == source.as_deref().map(Path::new))
                    {
                        m.0 = target.clone();
                    }
                }
                Call::Mount {
                    target,
                    fstype,
                    flags,
                    ..
                } if !flags
                    .intersects(MsFlags::MS_REMOUNT | MsFlags::MS_SHARED | MsFlags::MS_BIND) =>
                {
                    out.push((target.clone(), fstype.clone().unwrap_or_default()))
                }
                Call::Umount(t) => {
                    if let Some(i) = out.iter().rposition(|(p, _)| p == t) {
                        out.remove(i);
                    }
                }
                _ => {}
            }
        }
        out
    }
}

impl Syscalls for Recording {
    fn mount(
        &self,
        source: Option<&str>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> io::Result<()> {
        if let Some((_, errno)) = self.failing.iter().find(|(p, _)| p == target) {
            return Err(io::Error::from_raw_os_error(*errno));
        }
        self.record(Call::Mount {
            source: source.map(str::to_string),
            target: target.to_path_buf(),
            fstype: fstype.map(str::to_string),
            flags,
            data: data.map(str::to_string),
        });
        Ok(())
    }

    fn umount(&self, target: &Path, _flags: MntFlags) -> io::Result<()> {
        self.record(Call::Umount(target.to_path_buf()));
        Ok(())
    }

    fn mountinfo(&self) -> io::Result<String> {
        let mut text = self.initial_mountinfo.clone();
        for (i, (target, fstype)) in self.mounted().iter().enumerate() {
            text.push_str(&format!(
                "{} 1 0:{} / {} rw - {} {} rw\n",
                100 + i,
                100 + i,
                target.display(),
                fstype,
                fstype
            ));
        }
        Ok(text)
    }

    fn create_dir_all(&self, path: &Path, mode: u32) -> io::Result<()> {
        self.record(Call::CreateDir(path.to_path_buf(), mode));
        Ok(())
    }

    fn sync(&self) {
        self.record(Call::Sync);
    }

    fn kill_all(&self, sig: Signal) -> io::Result<()> {
        self.record(Call::KillAll(sig));
        Ok(())
    }

    fn reboot(&self, mode: RebootMode) -> io::Error {
        self.record(Call::Reboot(mode));
        io::Error::other("recorded reboot")
    }

    fn attach_loop(&self, image: &Path) -> io::Result<PathBuf> {
        if let Some((_, errno)) = self.failing.iter().find(|(p, _)| p == image) {
            return Err(io::Error::from_raw_os_error(*errno));
        }
        self.record(Call::AttachLoop(image.to_path_buf()));
        Ok(PathBuf::from("/dev/loop0"))
    }

    fn switch_root(&self, new_root: &Path) -> io::Result<()> {
        self.record(Call::SwitchRoot(new_root.to_path_buf()));
        Ok(())
    }

    fn exec(&self, program: &Path) -> io::Error {
        self.record(Call::Exec(program.to_path_buf()));
        io::Error::from_raw_os_error(libc::ENOENT)
    }
}
