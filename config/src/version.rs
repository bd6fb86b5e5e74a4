//! The version of this build, shared by every binary.

/// Release version (`CAIRN_VERSION` at build time, else the crate version).
pub const VERSION: &str = match option_env!("CAIRN_VERSION") {
    Some(v) => v,
    None => concat!("v", env!("CARGO_PKG_VERSION")),
};

/// Build identifier (`CAIRN_BUILD_ID` at build time, set by the image build
/// from the hash of its inputs), or "dev" for a local cargo build.
pub const BUILD_ID: &str = match option_env!("CAIRN_BUILD_ID") {
    Some(v) => v,
    None => "dev",
};

/// The Kubernetes version a generated config uses and the image carries.
pub const KUBERNETES_VERSION: &str = "v1.20.2";

/// The etcd version the image carries (Debian bookworm's etcd-server).
pub const ETCD_VERSION: &str = "v3.4.23";

/// The architecture as Kubernetes and container images name it.
pub fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// The running kernel's release (`uname -r`), read once: it cannot change
/// while the system runs, and Version is the API's most frequent call.
pub fn kernel_release() -> String {
    static RELEASE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    RELEASE
        .get_or_init(|| {
            std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|s| s.trim().to_string())
                .unwrap_or_default()
        })
        .clone()
}

/// The boot slot (`cairn.slot=` on the kernel command line GRUB built for
/// that slot), or "" on a live boot; read once.
pub fn booted_slot() -> String {
    static SLOT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SLOT.get_or_init(|| {
        std::fs::read_to_string("/proc/cmdline")
            .map(|c| slot_from_cmdline(&c).to_string())
            .unwrap_or_default()
    })
    .clone()
}

/// The value of the last `cairn.slot=` in a kernel command line.
pub fn slot_from_cmdline(cmdline: &str) -> &str {
    cmdline
        .split_whitespace()
        .filter_map(|w| w.strip_prefix("cairn.slot="))
        .next_back()
        .unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_is_read_from_the_command_line() {
        assert_eq!(slot_from_cmdline("console=ttyS0 cairn.slot=B quiet"), "B");
        assert_eq!(slot_from_cmdline("cairn.slot=A cairn.slot=B"), "B");
        assert_eq!(slot_from_cmdline("console=ttyS0"), "");
        assert_eq!(arch(), "amd64");
    }
}
