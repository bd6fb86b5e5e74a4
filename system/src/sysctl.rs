//! Kernel hardening sysctls (the Kernel Self Protection Project's
//! recommendations that do not break Kubernetes), applied at boot.

use std::path::PathBuf;

/// One sysctl: dotted key and value.
#[derive(Debug, Clone, Copy)]
pub struct Sysctl {
    pub key: &'static str,
    pub value: &'static str,
}

const fn s(key: &'static str, value: &'static str) -> Sysctl {
    Sysctl { key, value }
}

/// KSPP settings. Left out on purpose: `kernel.kexec_load_disabled` (A/B
/// upgrades may kexec), `user.max_user_namespaces=0` (container runtimes
/// use user namespaces) and `rp_filter` (breaks DHCP before an address is
/// configured and some CNI plugins).
pub const KSPP: &[Sysctl] = &[
    s("kernel.kptr_restrict", "1"),
    s("kernel.dmesg_restrict", "1"),
    s("kernel.perf_event_paranoid", "3"),
    s("kernel.yama.ptrace_scope", "1"),
    s("kernel.unprivileged_bpf_disabled", "1"),
    s("net.core.bpf_jit_harden", "2"),
    s("kernel.randomize_va_space", "2"),
    s("fs.protected_symlinks", "1"),
    s("fs.protected_hardlinks", "1"),
    s("fs.protected_fifos", "2"),
    s("fs.protected_regular", "2"),
    s("fs.suid_dumpable", "0"),
    s("dev.tty.ldisc_autoload", "0"),
    s("vm.unprivileged_userfaultfd", "0"),
    s("vm.mmap_min_addr", "65536"),
];

/// `/proc/sys` path of a dotted key.
pub fn path(key: &str) -> PathBuf {
    PathBuf::from("/proc/sys").join(key.replace('.', "/"))
}

/// The result of applying one sysctl.
#[derive(Debug)]
pub enum Applied {
    Set,
    /// The kernel has no such knob (built without the feature).
    Missing,
    Failed(std::io::Error),
}

/// Writes each sysctl under `root` (normally `/proc/sys`'s parent, `/`),
/// returning what happened to each. A missing knob is not an error: the
/// kernel config decides which exist.
pub fn apply(root: &std::path::Path, table: &[Sysctl]) -> Vec<(Sysctl, Applied)> {
    table
        .iter()
        .map(|s| {
            let p = root.join(path(s.key).strip_prefix("/").unwrap_or(&path(s.key)));
            // Never create: a knob that does not exist is reported missing.
            let res = match std::fs::OpenOptions::new()
                .write(true)
                .open(&p)
                .and_then(|mut f| std::io::Write::write_all(&mut f, s.value.as_bytes()))
            {
                Ok(()) => Applied::Set,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Applied::Missing,
                Err(e) => Applied::Failed(e),
            };
            (*s, res)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_to_path() {
        assert_eq!(
            path("kernel.yama.ptrace_scope"),
            PathBuf::from("/proc/sys/kernel/yama/ptrace_scope")
        );
    }

    #[test]
    fn applies_present_and_reports_missing() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("proc/sys/kernel");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("kptr_restrict"), "0").unwrap();
        let out = apply(root.path(), &KSPP[..2]);
        assert!(matches!(out[0].1, Applied::Set));
        assert_eq!(
            std::fs::read_to_string(dir.join("kptr_restrict")).unwrap(),
            "1"
        );
        // dmesg_restrict does not exist under the fake root: reported
        // missing, and not created.
        assert!(matches!(out[1].1, Applied::Missing));
        assert!(!dir.join("dmesg_restrict").exists());
    }
}
