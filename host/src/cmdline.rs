//! The kernel command line: parsing and the typed keys machined reads.

use std::time::Duration;

/// `cairn.slot=A|B`: the boot slot GRUB booted (absent on a live ISO boot).
pub const SLOT: &str = "cairn.slot";
/// `cairn.debug.kill=<service>@<secs>`: test hook, SIGKILL a service once.
pub const DEBUG_KILL: &str = "cairn.debug.kill";
/// `cairn.debug.panic=<secs>`: test hook, panic machined after a delay.
pub const DEBUG_PANIC: &str = "cairn.debug.panic";
/// `cairn.debug.cut=<point>`: machined stops for good at that point of a
/// STATE write, an upgrade or an install, for a test to cut the power.
pub const DEBUG_CUT: &str = "cairn.debug.cut";
/// `cairn.log=debug`: more verbose machined logging.
pub const LOG: &str = "cairn.log";

/// The parsed kernel command line. Later keys win over earlier ones, as in
/// the kernel itself.
#[derive(Debug, Clone, Default)]
pub struct Cmdline {
    params: Vec<(String, Option<String>)>,
}

/// What to do when machined panics, from the kernel's own `panic=` key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PanicAction {
    /// `panic=0`: stay halted so the message can be read.
    Hang,
    /// Reboot after this delay (`panic=N`, or right away without the key).
    Reboot(Duration),
}

/// `cairn.debug.kill=<service>@<secs>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DebugKill {
    pub service: String,
    pub after: Duration,
}

impl Cmdline {
    /// Reads `/proc/cmdline`.
    pub fn read() -> std::io::Result<Self> {
        Ok(Self::parse(&std::fs::read_to_string("/proc/cmdline")?))
    }

    /// Splits on whitespace outside double quotes; quotes are removed from
    /// values (`key="a b"`), the way the kernel's `parse_args` does.
    pub fn parse(line: &str) -> Self {
        let mut params = Vec::new();
        let mut word = String::new();
        let mut in_quotes = false;
        let mut words = Vec::new();
        for c in line.chars() {
            match c {
                '"' => in_quotes = !in_quotes,
                c if c.is_whitespace() && !in_quotes => {
                    if !word.is_empty() {
                        words.push(std::mem::take(&mut word));
                    }
                }
                c => word.push(c),
            }
        }
        if !word.is_empty() {
            words.push(word);
        }
        for w in words {
            match w.split_once('=') {
                Some((k, v)) => params.push((k.to_string(), Some(v.to_string()))),
                None => params.push((w, None)),
            }
        }
        Self { params }
    }

    /// The value of the last `key=value`; `None` when absent or valueless.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.params
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .and_then(|(_, v)| v.as_deref())
    }

    /// Whether `key` appears at all (with or without a value).
    pub fn has(&self, key: &str) -> bool {
        self.params.iter().any(|(k, _)| k == key)
    }

    /// The booted slot, `A` or `B`.
    pub fn slot(&self) -> Option<&str> {
        self.get(SLOT).filter(|s| !s.is_empty())
    }

    /// `cairn.config=<url>`.
    pub fn config_url(&self) -> Option<&str> {
        self.get(config::constants::cmdline::CONFIG)
            .filter(|s| !s.is_empty())
    }

    /// What a config fetched from [`Self::config_url`] is checked against:
    /// `cairn.config.sha256=` and `cairn.config.fingerprint=`.
    pub fn config_pins(&self) -> Result<crate::http::Pins, crate::http::HttpError> {
        use config::constants::cmdline::{CONFIG_FINGERPRINT, CONFIG_SHA256};
        let value = |k| self.get(k).filter(|s| !s.is_empty());
        crate::http::Pins::new(value(CONFIG_SHA256), value(CONFIG_FINGERPRINT))
    }

    /// `cairn.hostname=<name>`.
    pub fn hostname(&self) -> Option<&str> {
        self.get(config::constants::cmdline::HOSTNAME)
            .filter(|s| !s.is_empty())
    }

    /// Whether the kernel configured networking itself (`ip=` other than
    /// `off`/`none`), in which case machined leaves addresses alone.
    pub fn kernel_ip_autoconfig(&self) -> bool {
        matches!(self.get("ip"), Some(v) if !matches!(v, "off" | "none" | ""))
    }

    /// The kernel's `ip=` settings, parsed (see [`crate::network::kernel_ip`]).
    pub fn ip(&self) -> Option<Result<crate::network::kernel_ip::KernelIp, String>> {
        self.get("ip")
            .map(crate::network::kernel_ip::KernelIp::parse)
    }

    /// What a panic in machined should end in.
    pub fn panic_action(&self) -> PanicAction {
        match self.get("panic").map(str::parse::<i64>) {
            Some(Ok(0)) => PanicAction::Hang,
            Some(Ok(n)) if n > 0 => PanicAction::Reboot(Duration::from_secs(n as u64)),
            _ => PanicAction::Reboot(Duration::ZERO),
        }
    }

    /// The `cairn.debug.kill` test hook, if set and well formed.
    pub fn debug_kill(&self) -> Option<DebugKill> {
        let (service, secs) = self.get(DEBUG_KILL)?.split_once('@')?;
        Some(DebugKill {
            service: service.to_string(),
            after: Duration::from_secs(secs.parse().ok()?),
        })
    }

    /// The `cairn.debug.panic` test hook, if set and well formed.
    pub fn debug_panic(&self) -> Option<Duration> {
        Some(Duration::from_secs(self.get(DEBUG_PANIC)?.parse().ok()?))
    }

    /// The `cairn.debug.cut` test hook's point, if set.
    pub fn debug_cut(&self) -> Option<&str> {
        self.get(DEBUG_CUT)
    }

    /// Whether `cairn.log=debug` asks for debug logging.
    pub fn debug_logging(&self) -> bool {
        self.get(LOG) == Some("debug")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_keys_flags_and_quotes() {
        let c = Cmdline::parse(
            "console=tty0 console=ttyS0,115200 quiet cairn.slot=A foo=\"a b\" cairn.config=http://10.0.2.2:8080/c.yaml\n",
        );
        assert_eq!(c.get("console"), Some("ttyS0,115200"));
        assert!(c.has("quiet"));
        assert_eq!(c.get("quiet"), None);
        assert_eq!(c.slot(), Some("A"));
        assert_eq!(c.get("foo"), Some("a b"));
        assert_eq!(c.config_url(), Some("http://10.0.2.2:8080/c.yaml"));
        assert_eq!(c.hostname(), None);
    }

    #[test]
    fn panic_action_follows_kernel_key() {
        assert_eq!(Cmdline::parse("panic=0").panic_action(), PanicAction::Hang);
        assert_eq!(
            Cmdline::parse("panic=5").panic_action(),
            PanicAction::Reboot(Duration::from_secs(5))
        );
        assert_eq!(
            Cmdline::parse("panic=-1").panic_action(),
            PanicAction::Reboot(Duration::ZERO)
        );
        assert_eq!(
            Cmdline::parse("").panic_action(),
            PanicAction::Reboot(Duration::ZERO)
        );
    }

    #[test]
    fn debug_hooks_parse_or_stay_off() {
        let c = Cmdline::parse("cairn.debug.kill=apid@20 cairn.debug.panic=7");
        assert_eq!(
            c.debug_kill(),
            Some(DebugKill {
                service: "apid".into(),
                after: Duration::from_secs(20)
            })
        );
        assert_eq!(c.debug_panic(), Some(Duration::from_secs(7)));
        let bad = Cmdline::parse("cairn.debug.kill=apid cairn.debug.panic=soon");
        assert_eq!(bad.debug_kill(), None);
        assert_eq!(bad.debug_panic(), None);
        assert_eq!(Cmdline::parse("").debug_kill(), None);
    }

    #[test]
    fn ip_autoconfig_detection() {
        assert!(Cmdline::parse("ip=dhcp").kernel_ip_autoconfig());
        assert!(!Cmdline::parse("ip=off").kernel_ip_autoconfig());
        assert!(!Cmdline::parse("console=ttyS0").kernel_ip_autoconfig());
    }
}
