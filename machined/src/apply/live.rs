//! The parts of a machine config machined puts into effect on a running
//! node without a reboot (the `Impact::Live` rows of the plan): hostname,
//! kernel parameters and files. The same code runs at boot, so a config
//! applied live and one read from STATE end up the same.

use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use config::spec::FileOp;
use config::MachineConfig;

/// Where live changes are written: `/` on a node, a temp dir in tests.
#[derive(Debug, Clone)]
pub struct Roots {
    /// Prefix for `/proc/sys` and the files of `machine.files`.
    pub root: PathBuf,
    /// Set the kernel hostname (only PID 1 on a node does).
    pub set_hostname: bool,
}

impl Roots {
    pub fn node() -> Roots {
        Roots {
            root: PathBuf::from("/"),
            set_hostname: true,
        }
    }

    fn under(&self, absolute: &str) -> PathBuf {
        self.root.join(absolute.trim_start_matches('/'))
    }
}

/// What applying live did not manage, one line each, for the console and
/// the apply summary.
pub type Problems = Vec<String>;

/// Sets the hostname (when the config names one), the sysctls and the
/// files of `config`. Returns the hostname now in effect, if the config
/// set one, and the problems.
pub fn apply(config: &MachineConfig, roots: &Roots) -> (Option<String>, Problems) {
    let mut problems = Problems::new();
    let hostname = config
        .machine
        .network
        .hostname
        .as_ref()
        .map(|h| h.to_string());
    if let Some(h) = &hostname {
        if roots.set_hostname {
            if let Err(e) = nix::unistd::sethostname(h) {
                problems.push(format!("machine.network.hostname: cannot set {h}: {e}"));
            }
        }
    }
    for (key, value) in &config.machine.sysctls {
        let path = roots.under(&format!("/proc/sys/{}", key.to_string().replace('.', "/")));
        if let Err(e) = std::fs::write(&path, value.to_string()) {
            problems.push(format!(
                "machine.sysctls.{key}: cannot write {}: {e}",
                path.display()
            ));
        }
    }
    for (i, f) in config.machine.files.iter().enumerate() {
        let path = roots.under(f.path.as_str());
        if let Err(e) = write_file(&path, f.content.as_bytes(), f.permissions.bits(), f.op) {
            problems.push(format!("machine.files[{i}]: {}: {e}", f.path));
        }
    }
    (hostname, problems)
}

/// What the node had, before a tried config, in every place that config
/// writes: each sysctl's value and each file's content and mode (or that it
/// did not exist). Restoring it undoes the try exactly.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Undo {
    sysctls: Vec<(PathBuf, Option<String>)>,
    files: Vec<(PathBuf, Option<FileBefore>)>,
}

/// A file's content and mode before a try wrote it.
type FileBefore = (Vec<u8>, u32);

/// Records what `config`'s sysctls and files would overwrite.
pub fn snapshot(config: &MachineConfig, roots: &Roots) -> Undo {
    let mut undo = Undo::default();
    for key in config.machine.sysctls.keys() {
        let path = roots.under(&format!("/proc/sys/{}", key.to_string().replace('.', "/")));
        let before = std::fs::read_to_string(&path)
            .ok()
            .map(|v| v.trim_end().to_string());
        undo.sysctls.push((path, before));
    }
    for f in &config.machine.files {
        let path = roots.under(f.path.as_str());
        if undo.files.iter().any(|(p, _)| *p == path) {
            continue;
        }
        let before = std::fs::read(&path).ok().map(|bytes| {
            let mode = std::fs::metadata(&path)
                .map(|m| m.permissions().mode() & 0o7777)
                .unwrap_or(0o644);
            (bytes, mode)
        });
        undo.files.push((path, before));
    }
    undo
}

/// Puts back what [`snapshot`] recorded: old sysctl values, old file
/// contents and modes, and removes files that did not exist. Returns what
/// could not be restored.
pub fn restore(undo: &Undo) -> Problems {
    let mut problems = Problems::new();
    for (path, before) in &undo.sysctls {
        if let Some(v) = before {
            if let Err(e) = std::fs::write(path, v) {
                problems.push(format!("cannot restore {}: {e}", path.display()));
            }
        }
    }
    for (path, before) in &undo.files {
        let r = match before {
            Some((bytes, mode)) => write_file(path, bytes, *mode, FileOp::Overwrite),
            None => match std::fs::remove_file(path) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                other => other,
            },
        };
        if let Err(e) = r {
            problems.push(format!("cannot restore {}: {e}", path.display()));
        }
    }
    problems
}

fn write_file(path: &Path, content: &[u8], mode: u32, op: FileOp) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut open = std::fs::OpenOptions::new();
    open.write(true).mode(mode);
    match op {
        FileOp::Create => {
            if path.exists() {
                return Ok(());
            }
            open.create_new(true);
        }
        FileOp::Overwrite => {
            open.create(true).truncate(true);
        }
        FileOp::Append => {
            open.create(true).append(true);
        }
    }
    let mut f = open.open(path)?;
    f.write_all(content)?;
    if op != FileOp::Append {
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
    }
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apply::tests::generated;

    #[test]
    fn writes_sysctls_and_files_under_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let roots = Roots {
            root: dir.path().to_path_buf(),
            set_hostname: false,
        };
        std::fs::create_dir_all(dir.path().join("proc/sys/net/ipv4")).unwrap();
        let (mut cfg, _) = generated();
        cfg.machine.network.hostname = Some("n1".parse().unwrap());
        cfg.machine.sysctls.insert(
            "net.ipv4.ip_forward".parse().unwrap(),
            config::types::ScalarString::new("1"),
        );
        cfg.machine.sysctls.insert(
            "kernel.nope".parse().unwrap(),
            config::types::ScalarString::new("1"),
        );
        let file = |path: &str, content: &str, op: FileOp| config::spec::File {
            path: path.parse().unwrap(),
            content: content.into(),
            permissions: "0600".parse().unwrap(),
            op,
        };
        cfg.machine.files = vec![
            file("/var/etc/a.conf", "one\n", FileOp::Create),
            file("/var/etc/a.conf", "ignored\n", FileOp::Create),
            file("/var/etc/a.conf", "two\n", FileOp::Append),
            file("/var/etc/b.conf", "b\n", FileOp::Overwrite),
        ];
        let (hostname, problems) = apply(&cfg, &roots);
        assert_eq!(hostname.as_deref(), Some("n1"));
        assert_eq!(
            std::fs::read_to_string(dir.path().join("proc/sys/net/ipv4/ip_forward")).unwrap(),
            "1"
        );
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].starts_with("machine.sysctls.kernel.nope"),
            "{problems:?}"
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("var/etc/a.conf")).unwrap(),
            "one\ntwo\n"
        );
        let b = dir.path().join("var/etc/b.conf");
        assert_eq!(
            std::fs::metadata(&b).unwrap().permissions().mode() & 0o777,
            0o600
        );
        // Applying again changes nothing for `create`, replaces `overwrite`.
        let _ = apply(&cfg, &roots);
        assert_eq!(std::fs::read_to_string(&b).unwrap(), "b\n");
    }

    /// Hole 8 of the hardening issue: a try that is not confirmed left its
    /// files and sysctls behind. The snapshot taken before it puts back
    /// exactly what was there.
    #[test]
    fn restoring_a_snapshot_undoes_a_tried_configs_files_and_sysctls() {
        let dir = tempfile::tempdir().unwrap();
        let roots = Roots {
            root: dir.path().to_path_buf(),
            set_hostname: false,
        };
        let sysctl = dir.path().join("proc/sys/net/ipv4/ip_forward");
        std::fs::create_dir_all(sysctl.parent().unwrap()).unwrap();
        std::fs::write(&sysctl, "0\n").unwrap();
        let kept = dir.path().join("var/etc/kept.conf");
        std::fs::create_dir_all(kept.parent().unwrap()).unwrap();
        std::fs::write(&kept, "old\n").unwrap();
        std::fs::set_permissions(&kept, std::fs::Permissions::from_mode(0o640)).unwrap();

        let (mut tried, _) = generated();
        tried.machine.sysctls.insert(
            "net.ipv4.ip_forward".parse().unwrap(),
            config::types::ScalarString::new("1"),
        );
        let file = |path: &str, content: &str| config::spec::File {
            path: path.parse().unwrap(),
            content: content.into(),
            permissions: "0600".parse().unwrap(),
            op: FileOp::Overwrite,
        };
        tried.machine.files = vec![
            file("/var/etc/kept.conf", "new\n"),
            file("/var/etc/added.conf", "added\n"),
        ];
        let undo = snapshot(&tried, &roots);
        let (_, problems) = apply(&tried, &roots);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(std::fs::read_to_string(&sysctl).unwrap(), "1");
        assert!(dir.path().join("var/etc/added.conf").exists());

        assert!(restore(&undo).is_empty());
        assert_eq!(std::fs::read_to_string(&sysctl).unwrap(), "0");
        assert_eq!(std::fs::read_to_string(&kept).unwrap(), "old\n");
        assert_eq!(
            std::fs::metadata(&kept).unwrap().permissions().mode() & 0o777,
            0o640
        );
        assert!(!dir.path().join("var/etc/added.conf").exists());
    }
}
