//! The boot sequence of the initramfs, written against the stack's one
//! syscall trait ([`system::syscall::Syscalls`]) and mount table
//! ([`system::mounts`]) so tests run it with the recording implementation:
//! every step says what it is doing, and the first failing step stops the
//! sequence with that description.

use std::convert::Infallible;
use std::fmt;
use std::path::Path;

use nix::mount::MsFlags;
use system::mounts::{self, MountPoint, NEW_ROOT, ROOTFS_IMAGE};
use system::syscall::Syscalls;

use crate::kmsg::{Kmsg, Level};

/// The PID 1 agent in the root filesystem.
pub const MACHINED: &str = "/sbin/machined";

/// Where init's messages go: the kernel log once /dev exists.
pub trait Console {
    fn log(&mut self, level: Level, message: &str);
    /// Called once devtmpfs is mounted: open /dev/kmsg, and /dev/console as
    /// stdin/stdout/stderr if the kernel could not give init a console.
    fn devices_ready(&mut self);
}

/// A failed boot step: what init was doing, and why it failed.
#[derive(Debug)]
pub struct Failure {
    pub doing: String,
    pub error: Box<dyn std::error::Error + Send + Sync>,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.doing, self.error)
    }
}

fn step<T, E: std::error::Error + Send + Sync + 'static>(
    doing: impl Into<String>,
    result: Result<T, E>,
) -> Result<T, Failure> {
    result.map_err(|error| Failure {
        doing: doing.into(),
        error: Box::new(error),
    })
}

fn describe(m: &MountPoint) -> String {
    format!("mounting {} on {}", m.source, m.target.display())
}

/// Runs the whole initramfs stage; on success it never returns, because
/// machined has replaced this process.
pub fn boot(sys: &dyn Syscalls, console: &mut dyn Console) -> Result<Infallible, Failure> {
    for m in mounts::init_table() {
        step(describe(&m), mounts::apply_one(sys, &m))?;
        if m.fstype == "devtmpfs" {
            console.devices_ready();
        }
    }

    let new_root = Path::new(NEW_ROOT);
    step(
        format!("creating {NEW_ROOT}"),
        sys.create_dir_all(new_root, 0o755),
    )?;
    let device = step(
        format!("attaching {ROOTFS_IMAGE} to a loop device"),
        sys.attach_loop(Path::new(ROOTFS_IMAGE)),
    )?;
    let root = mounts::rootfs(&device.display().to_string());
    step(
        format!("mounting {ROOTFS_IMAGE} on {NEW_ROOT}"),
        sys.mount(
            Some(&root.source),
            &root.target,
            Some(&root.fstype),
            root.flags,
            None,
        ),
    )?;
    for m in mounts::init_table() {
        let to = new_root.join(m.target.strip_prefix("/").unwrap_or(&m.target));
        step(
            format!("moving {} to {}", m.target.display(), to.display()),
            sys.mount(m.target.to_str(), &to, None, MsFlags::MS_MOVE, None),
        )?;
    }
    step(
        format!("switching root to {NEW_ROOT}"),
        sys.switch_root(new_root),
    )?;

    // Report the root machined will run on, as the kernel's mount table
    // has it (tests read this line to check the booted root is read-only).
    let message = match sys
        .mountinfo()
        .map(|t| mounts::find_mount(&t, Path::new("/")))
    {
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
    console.log(Level::Info, &message);

    console.log(Level::Info, &format!("starting {MACHINED}"));
    Err(Failure {
        doing: format!("starting {MACHINED}"),
        error: Box::new(sys.exec(Path::new(MACHINED))),
    })
}

/// The kernel log, and the console as init's stdio.
#[derive(Default)]
pub struct KernelConsole {
    pub kmsg: Kmsg,
}

impl Console for KernelConsole {
    fn log(&mut self, level: Level, message: &str) {
        self.kmsg.log(level, message);
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use system::syscall::{Call, Recording};

    /// Records what init logged and when the devices became ready.
    #[derive(Default)]
    struct Log(Vec<String>);

    impl Console for Log {
        fn log(&mut self, _: Level, message: &str) {
            self.0.push(message.to_string());
        }
        fn devices_ready(&mut self) {
            self.0.push("devices_ready".into());
        }
    }

    /// The calls as short strings, in order.
    fn calls(sys: &Recording) -> Vec<String> {
        sys.calls()
            .into_iter()
            .map(|c| match c {
                Call::CreateDir(p, _) => format!("mkdir {}", p.display()),
                Call::Mount {
                    source,
                    target,
                    flags,
                    ..
                } if flags.contains(MsFlags::MS_MOVE) => {
                    format!("move {} {}", source.unwrap_or_default(), target.display())
                }
                Call::Mount {
                    source,
                    target,
                    fstype,
                    ..
                } => format!(
                    "mount {} {} {}",
                    fstype.unwrap_or_default(),
                    source.unwrap_or_default(),
                    target.display()
                ),
                Call::AttachLoop(p) => format!("attach_loop {}", p.display()),
                Call::SwitchRoot(p) => format!("switch_root {}", p.display()),
                Call::Exec(p) => format!("exec {}", p.display()),
                other => format!("{other:?}"),
            })
            .collect()
    }

    /// The root as the kernel reports it after switch_root.
    const ROOT: &str = "25 1 7:0 / / ro,relatime - squashfs /dev/loop0 ro\n";

    #[test]
    fn boots_in_order_and_execs_machined() {
        let sys = Recording::default();
        let mut log = Log::default();
        let failure = boot(&sys, &mut log).unwrap_err();
        assert_eq!(
            calls(&sys),
            [
                "mkdir /dev",
                "mount devtmpfs devtmpfs /dev",
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
        assert_eq!(log.0[0], "devices_ready", "kmsg opens right after /dev");
        // exec only returns on failure, and the failure names it.
        assert!(failure.to_string().starts_with("starting /sbin/machined: "));
    }

    #[test]
    fn the_root_is_reported_as_the_kernel_mounted_it() {
        let sys = Recording::with_mountinfo(ROOT);
        let mut log = Log::default();
        let _ = boot(&sys, &mut log);
        assert!(log.0.contains(
            &"root filesystem: /dev/loop0 on / type squashfs (ro,relatime): read-only".to_string()
        ));
    }

    #[test]
    fn existing_mount_points_are_not_mounted_again() {
        let sys = Recording::with_mountinfo("21 1 0:5 / /dev rw,nosuid - devtmpfs devtmpfs rw\n");
        let mut log = Log::default();
        let _ = boot(&sys, &mut log);
        let calls = calls(&sys);
        assert!(!calls.iter().any(|c| c.starts_with("mount devtmpfs")));
        assert!(log.0.contains(&"devices_ready".to_string()));
        assert!(calls.contains(&"mount proc proc /proc".to_string()));
    }

    #[test]
    fn a_failing_step_stops_boot_and_says_what_it_was_doing() {
        let sys = Recording {
            failing: vec![(PathBuf::from(NEW_ROOT), 19)], // ENODEV
            ..Default::default()
        };
        let failure = boot(&sys, &mut Log::default()).unwrap_err();
        assert_eq!(failure.doing, "mounting /rootfs.sqsh on /newroot");
        assert!(
            failure
                .to_string()
                .starts_with("mounting /rootfs.sqsh on /newroot: No such device"),
            "{failure}"
        );
        assert!(!calls(&sys).iter().any(|c| c.starts_with("switch_root")));
    }

    #[test]
    fn a_missing_rootfs_image_is_reported_before_any_mount_of_it() {
        let sys = Recording {
            failing: vec![(PathBuf::from(ROOTFS_IMAGE), 2)],
            ..Default::default()
        };
        let failure = boot(&sys, &mut Log::default()).unwrap_err();
        assert!(failure
            .to_string()
            .starts_with("attaching /rootfs.sqsh to a loop device: No such file or directory"));
        assert!(!calls(&sys)
            .iter()
            .any(|c| c.contains("/newroot ") && c.starts_with("mount")));
    }
}
