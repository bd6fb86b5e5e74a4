//! `/init` in the initramfs: mount /proc, /sys and /dev, attach the root
//! filesystem image `/rootfs.sqsh` to a loop device, mount it read-only,
//! switch root to it and exec `/sbin/machined` as PID 1.
//!
//! A failure is printed on the console with what init was doing; then init
//! syncs and reboots after a pause, or waits forever when the kernel command
//! line says `panic=0`.

mod boot;
mod cmdline;
mod kmsg;

use std::panic::{self, AssertUnwindSafe};
use std::time::Duration;

use boot::{Console, KernelConsole};
use cmdline::{Cmdline, OnFailure};
use kmsg::Level;

fn main() {
    let mut console = KernelConsole::default();
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
        boot::boot(&system::syscall::Real, &mut console)
    }));
    let message = match outcome {
        Ok(Ok(never)) => match never {},
        Ok(Err(failure)) => failure.to_string(),
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            format!("init panicked: {what}")
        }
    };
    fail(&mut console, &message)
}

/// Reports a failed boot and reboots or hangs, as the kernel's `panic=`
/// parameter asks. PID 1 must never exit: the kernel would panic without
/// saying why.
fn fail(sys: &mut KernelConsole, message: &str) -> ! {
    sys.kmsg.open();
    sys.log(Level::Error, message);
    let policy = std::fs::read_to_string("/proc/cmdline")
        .map(|text| Cmdline::parse(&text).on_failure())
        .unwrap_or(OnFailure::RebootAfterSecs(
            cmdline::DEFAULT_REBOOT_DELAY_SECS,
        ));
    rustix::fs::sync();
    match policy {
        OnFailure::Hang => {
            sys.log(
                Level::Error,
                "boot failed; halted (panic=0 on the kernel command line)",
            );
            hang()
        }
        OnFailure::RebootAfterSecs(secs) => {
            sys.log(Level::Error, &format!("boot failed; rebooting in {secs} s"));
            std::thread::sleep(Duration::from_secs(secs));
            rustix::fs::sync();
            if let Err(e) = rustix::system::reboot(rustix::system::RebootCommand::Restart) {
                sys.log(Level::Error, &format!("rebooting: {e}; halted"));
            }
            hang()
        }
    }
}

fn hang() -> ! {
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}
