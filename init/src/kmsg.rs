//! Logging to the kernel log.
//!
//! init runs before anything else and must stay tiny, so it writes records
//! straight to `/dev/kmsg` rather than pulling in `tracing`: one `write` per
//! record, prefixed with the syslog priority the kernel expects
//! (`<6>` info, `<3>` error) and `cairn-init: `. The kernel copies records
//! below the console log level to the console, so failures reach the screen
//! and the serial port. Until devtmpfs is mounted there is no `/dev/kmsg`;
//! records then go to stderr, which may be closed (std ignores EBADF there).

use std::fs::{File, OpenOptions};
use std::io::Write;

const PREFIX: &str = "cairn-init: ";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Error = 3,
    Info = 6,
}

#[derive(Default)]
pub struct Kmsg {
    file: Option<File>,
}

impl Kmsg {
    /// Opens `/dev/kmsg`; keeps logging to stderr if it cannot.
    pub fn open(&mut self) {
        if self.file.is_none() {
            self.file = OpenOptions::new().write(true).open("/dev/kmsg").ok();
        }
    }

    pub fn log(&mut self, level: Level, message: &str) {
        match &mut self.file {
            Some(f) => {
                for line in message.lines() {
                    let _ = f.write_all(record(level, line).as_bytes());
                }
            }
            None => {
                let _ = std::io::stderr().write_all(format!("{PREFIX}{message}\n").as_bytes());
            }
        }
    }
}

/// One kmsg record: priority, prefix, text, newline.
pub fn record(level: Level, line: &str) -> String {
    format!("<{}>{PREFIX}{line}\n", level as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_carry_priority_and_prefix() {
        assert_eq!(
            record(
                Level::Error,
                "mounting /rootfs.sqsh on /newroot: No such device"
            ),
            "<3>cairn-init: mounting /rootfs.sqsh on /newroot: No such device\n"
        );
        assert_eq!(record(Level::Info, "hi"), "<6>cairn-init: hi\n");
    }
}
