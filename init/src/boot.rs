//! The boot sequence of the initramfs, written against [`Sys`] so tests can
//! run it with a recording fake: every step says what it is doing, and the
//! first failing step stops the sequence with that description.

use std::convert::Infallible;
use std::fmt;
use std::io;
use std::path::Path;

use crate::kmsg::{Kmsg, Level};
use crate::loopdev::{self, LoopDevice};
use crate::mounts::{self, Mount, NEW_ROOT, ROOTFS_IMAGE};
use crate::switch_root;

/// The PID 1 agent in the root filesystem.
pub const MACHINED: &str = "/sbin/machined";

/// The system calls the boot sequence makes. Tests cannot make them (they
/// need root and would change the host), so they sit behind this trait.
pub trait Sys {
    fn log(&mut self, level: Level, message: &str);
    /// Creates a directory (and parents) unless it exists.
    fn mkdir(&mut self, path: &str) -> io::Result<()>;
    fn is_mount_point(&mut self, path: &str) -> io::Result<bool>;
    fn mount(&mut self, mount: &Mount) -> io::Result<()>;
    /// Called once devtmpfs is mounted: open /dev/kmsg, and /dev/console as
    /// stdin/stdout/stderr if the kernel could not give init a console.
    fn devices_ready(&mut self);
    /// Attaches an image file read-only to a loop device; returns its path.
    fn attach_loop(&mut self, image: &str) -> io::Result<String>;
    fn move_mount(&mut self, from: &str, to: &str) -> io::Result<()>;
    /// The text of `/proc/self/mountinfo`.
    fn mountinfo(&mut self) -> io::Result<String>;
    fn switch_root(&mut self, new_root: &str) -> io::Result<()>;
    /// Replaces this process with `program`; returns only on failure.
    fn exec(&mut self, program: &str) -> io::Error;
}

/// A failed boot step: what init was doing, and why it failed.
#[derive(Debug)]
pub struct Failure {
    pub doing: String,
    pub error: io::Error,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.doing, self.error)
    }
}

fn step<T>(doing: impl Into<String>, result: io::Result<T>) -> Result<T, Failure> {
    result.map_err(|error| Failure {
        doing: doing.into(),
        error,
    })
}

/// Applies a mount table entry unless its target is already a mount point.
pub fn mount_once(sys: &mut impl Sys, m: &Mount) -> Result<(), Failure> {
    step(format!("creating {}", m.target), sys.mkdir(m.target))?;
    let mounted = step(
        format!("checking {}", m.target),
        sys.is_mount_point(m.target),
    )?;
    if !mounted {
        step(m.describe(), sys.mount(m))?;
    }
    Ok(())
}

/// Runs the whole initramfs stage; on success it never returns, because
/// machined has replaced this process.
pub fn boot(sys: &mut impl Sys) -> Result<Infallible, Failure> {
    for m in mounts::EARLY {
        mount_once(sys, m)?;
        if m.fstype == "devtmpfs" {
            sys.devices_ready();
        }
    }

    step(format!("creating {NEW_ROOT}"), sys.mkdir(NEW_ROOT))?;
    let device = step(
        format!("attaching {ROOTFS_IMAGE} to a loop device"),
        sys.attach_loop(ROOTFS_IMAGE),
    )?;
    step(
        format!("mounting {ROOTFS_IMAGE} on {NEW_ROOT}"),
        sys.mount(&mounts::rootfs(&device)),
    )?;
    for from in mounts::moved_into_new_root() {
        let to = format!("{NEW_ROOT}{from}");
        step(format!("moving {from} to {to}"), sys.move_mount(from, &to))?;
    }
    step(
        format!("switching root to {NEW_ROOT}"),
        sys.switch_root(NEW_ROOT),
    )?;

    // Report the root machined will run on, as the kernel's mount table
    // has it (tests read this line to check the booted root is read-only).
    let message = match sys.mountinfo().map(|t| mounts::find_mount(&t, "/")) {
        Ok(Some(m)) => format!(
            "root filesystem: {} on / type {} ({}): {}",
            m.source,
            m.fstype,
            m.options,
            if m.is_read_only() {
                "read-only"
            } else {
                "WRITABLE"
            }
        ),
        _ => "root filesystem: / is not in /proc/self/mountinfo".to_string(),
    };
    sys.log(Level::Info, &message);

    sys.log(Level::Info, &format!("starting {MACHINED}"));
    Err(Failure {
        doing: format!("starting {MACHINED}"),
        error: sys.exec(MACHINED),
    })
}

/// The real system calls.
#[derive(Default)]
pub struct RealSys {
    pub kmsg: Kmsg,
    /// Loop devices stay open until exec closes them (close-on-exec).
    loops: Vec<LoopDevice>,
}

impl Sys for RealSys {
    fn log(&mut self, level: Level, message: &str) {
        self.kmsg.log(level, message);
    }

    fn mkdir(&mut self, path: &str) -> io::Result<()> {
        std::fs::create_dir_all(path)
    }

    fn is_mount_point(&mut self, path: &str) -> io::Result<bool> {
        use std::os::unix::fs::MetadataExt;
        let here = std::fs::metadata(path)?;
        let parent = std::fs::metadata(Path::new(path).join(".."))?;
        Ok(here.dev() != parent.dev() || here.ino() == parent.ino())
    }

    fn mount(&mut self, m: &Mount) -> io::Result<()> {
        let data = m
            .data
            .map(std::ffi::CString::new)
            .transpose()
            .map_err(io::Error::other)?;
        rustix::mount::mount(m.source, m.target, m.fstype, m.flags, data.as_deref())?;
        Ok(())
    }

    fn devices_ready(&mut self) {
        self.kmsg.open();
        // The kernel opens /dev/console for init only if the initramfs has
        // the node; ours relies on devtmpfs, so give init (and machined
        // after it) a console now if stdin is closed.
        if rustix::io::fcntl_getfd(rustix::stdio::stdin()).is_err() {
            if let Ok(console) = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/console")
            {
                let _ = rustix::stdio::dup2_stdin(&console);
                let _ = rustix::stdio::dup2_stdout(&console);
                let _ = rustix::stdio::dup2_stderr(&console);
            }
        }
    }

    fn attach_loop(&mut self, image: &str) -> io::Result<String> {
        let device = loopdev::attach_read_only(Path::new(image))?;
        let path = device.path.display().to_string();
        self.loops.push(device);
        Ok(path)
    }

    fn move_mount(&mut self, from: &str, to: &str) -> io::Result<()> {
        rustix::mount::mount_move(from, to)?;
        Ok(())
    }

    fn mountinfo(&mut self) -> io::Result<String> {
        std::fs::read_to_string("/proc/self/mountinfo")
    }

    fn switch_root(&mut self, new_root: &str) -> io::Result<()> {
        switch_root::switch_root(Path::new(new_root))
    }

    fn exec(&mut self, program: &str) -> io::Error {
        use std::os::unix::process::CommandExt;
        std::process::Command::new(program).exec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    /// Records every call; fails the call whose description starts with
    /// `fail_on`, and reports the targets in `mounted` as mount points.
    #[derive(Default)]
    struct Recording {
        calls: Vec<String>,
        fail_on: Option<(&'static str, i32)>,
        mounted: HashSet<String>,
    }

    impl Recording {
        fn call(&mut self, call: String) -> io::Result<()> {
            let failing = matches!(self.fail_on, Some((p, _)) if call.starts_with(p));
            self.calls.push(call);
            match self.fail_on {
                Some((_, errno)) if failing => Err(io::Error::from_raw_os_error(errno)),
                _ => Ok(()),
            }
        }
    }

    impl Sys for Recording {
        fn log(&mut self, _: Level, message: &str) {
            self.calls.push(format!("log {message}"));
        }
        fn mkdir(&mut self, path: &str) -> io::Result<()> {
            self.call(format!("mkdir {path}"))
        }
        fn is_mount_point(&mut self, path: &str) -> io::Result<bool> {
            Ok(self.mounted.contains(path))
        }
        fn mount(&mut self, m: &Mount) -> io::Result<()> {
            self.call(format!("mount {} {} {}", m.fstype, m.source, m.target))
        }
        fn devices_ready(&mut self) {
            self.calls.push("devices_ready".into());
        }
        fn attach_loop(&mut self, image: &str) -> io::Result<String> {
            self.call(format!("attach_loop {image}"))?;
            Ok("/dev/loop0".into())
        }
        fn move_mount(&mut self, from: &str, to: &str) -> io::Result<()> {
            self.call(format!("move {from} {to}"))
        }
        fn mountinfo(&mut self) -> io::Result<String> {
            Ok("1 0 0:2 / / rw - rootfs rootfs rw\n25 1 7:0 / / ro,relatime - squashfs /dev/loop0 ro\n".into())
        }
        fn switch_root(&mut self, new_root: &str) -> io::Result<()> {
            self.call(format!("switch_root {new_root}"))
        }
        fn exec(&mut self, program: &str) -> io::Error {
            self.calls.push(format!("exec {program}"));
            io::Error::from_raw_os_error(2)
        }
    }

    fn without_logs(calls: &[String]) -> Vec<&str> {
        calls
            .iter()
            .map(String::as_str)
            .filter(|c| !c.starts_with("log "))
            .collect()
    }

    #[test]
    fn boots_in_order_and_execs_machined() {
        let mut sys = Recording::default();
        let failure = boot(&mut sys).unwrap_err();
        assert_eq!(
            without_logs(&sys.calls),
            [
                "mkdir /dev",
                "mount devtmpfs devtmpfs /dev",
                "devices_ready",
                "mkdir /proc",
                "mount proc proc /proc",
                "mkdir /sys",
                "mount sysfs sysfs /sys",
                "mkdir /newroot",
                "attach_loop /rootfs.sqsh",
                "mount squashfs /dev/loop0 /newroot",
                "move /dev /newroot/dev",
                "move /proc /newroot/proc",
                "move /sys /newroot/sys",
                "switch_root /newroot",
                "exec /sbin/machined",
            ]
        );
        // exec only returns on failure, and the failure names it.
        assert!(failure.to_string().starts_with("starting /sbin/machined: "));
    }

    #[test]
    fn the_root_is_reported_as_the_kernel_mounted_it() {
        let mut sys = Recording::default();
        let _ = boot(&mut sys);
        assert!(sys.calls.contains(
            &"log root filesystem: /dev/loop0 on / type squashfs (ro,relatime): read-only"
                .to_string()
        ));
    }

    #[test]
    fn existing_mount_points_are_not_mounted_again() {
        let mut sys = Recording {
            mounted: HashSet::from(["/dev".to_string()]),
            ..Default::default()
        };
        let _ = boot(&mut sys);
        assert!(!sys.calls.iter().any(|c| c.starts_with("mount devtmpfs")));
        assert!(sys.calls.contains(&"devices_ready".to_string()));
        assert!(sys.calls.contains(&"mount proc proc /proc".to_string()));
    }

    #[test]
    fn a_failing_step_stops_boot_and_says_what_it_was_doing() {
        let mut sys = Recording {
            fail_on: Some(("mount squashfs", 19)), // ENODEV
            ..Default::default()
        };
        let failure = boot(&mut sys).unwrap_err();
        assert_eq!(failure.doing, "mounting /rootfs.sqsh on /newroot");
        assert!(
            failure
                .to_string()
                .starts_with("mounting /rootfs.sqsh on /newroot: No such device"),
            "{failure}"
        );
        assert_eq!(
            sys.calls.last().unwrap(),
            "mount squashfs /dev/loop0 /newroot"
        );
        assert!(!sys.calls.iter().any(|c| c.starts_with("switch_root")));
    }

    #[test]
    fn a_missing_rootfs_image_is_reported_before_any_mount_of_it() {
        let mut sys = Recording {
            fail_on: Some(("attach_loop", 2)),
            ..Default::default()
        };
        let failure = boot(&mut sys).unwrap_err();
        assert!(failure
            .to_string()
            .starts_with("attaching /rootfs.sqsh to a loop device: No such file or directory"));
    }
}
