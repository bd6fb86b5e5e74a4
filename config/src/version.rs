//! The version of this build, shared by every binary.

/// The version these programs were compiled as: the crate version. Images
/// carry theirs in /etc/os-release instead (see [`running`]), so no build
/// input but the sources decides what cargo compiles.
pub const VERSION: &str = concat!("v", env!("CARGO_PKG_VERSION"));

/// The build id of a local cargo build; an image's is in its os-release.
pub const BUILD_ID: &str = "dev";

/// The version and build id of a system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    pub version: String,
    pub build_id: String,
}

/// The running system's release, read once. On a Cairn node it comes from
/// the image's /etc/os-release (images/build-image.sh writes it), so the
/// programs are built once for images of any version: the upgrade tests'
/// second image reuses the first one's binaries instead of recompiling
/// them. Elsewhere (cairnctl, tests on a host) it is VERSION and BUILD_ID.
pub fn running() -> &'static Release {
    static RUNNING: std::sync::OnceLock<Release> = std::sync::OnceLock::new();
    RUNNING.get_or_init(|| {
        std::fs::read_to_string("/etc/os-release")
            .ok()
            .and_then(|text| from_os_release(&text))
            .unwrap_or_else(|| Release {
                version: VERSION.to_string(),
                build_id: BUILD_ID.to_string(),
            })
    })
}

/// VERSION and BUILD_ID of an os-release file whose ID is `cairn`.
pub fn from_os_release(text: &str) -> Option<Release> {
    let field = |key: &str| {
        text.lines()
            .filter_map(|l| l.trim().strip_prefix(key)?.strip_prefix('='))
            .map(|v| v.trim().trim_matches('"').to_string())
            .next_back()
    };
    (field("ID")? == "cairn").then_some(())?;
    Some(Release {
        version: field("VERSION")?,
        build_id: field("BUILD_ID").unwrap_or_default(),
    })
}

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

    #[test]
    fn the_release_is_read_from_a_cairn_os_release_only() {
        let cairn =
            "NAME=\"Cairn\"\nID=cairn\nVERSION=\"v1.2.3\"\nVERSION_ID=1.2.3\nBUILD_ID=abc123\n";
        assert_eq!(
            from_os_release(cairn),
            Some(Release {
                version: "v1.2.3".into(),
                build_id: "abc123".into()
            })
        );
        assert_eq!(
            from_os_release("ID=debian\nVERSION=\"12 (bookworm)\"\n"),
            None
        );
        assert_eq!(from_os_release("ID=cairn\n"), None, "no VERSION");
        // On this host (not a Cairn node) the compiled-in values.
        if from_os_release(&std::fs::read_to_string("/etc/os-release").unwrap_or_default())
            .is_none()
        {
            assert_eq!(running().version, VERSION);
        }
    }
}
