//! The kubelet's layout of container logs:
//! `/var/log/pods/<namespace>_<pod>_<uid>/<container>/<restart>.log`.
//!
//! Rotation (kubelet `containerLogMaxSize`) renames `0.log` to
//! `0.log.<timestamp>` and the runtime reopens a new `0.log`; later the
//! kubelet compresses the renamed file to `0.log.<timestamp>.gz` (through a
//! `.tmp` file) and removes the uncompressed one, and deletes the oldest
//! beyond `containerLogMaxFiles`. Namespace and pod names cannot contain
//! `_` (DNS labels and subdomains), so the directory name splits cleanly.

use std::path::{Path, PathBuf};

/// The labels a file's place gives its lines.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Labels {
    pub namespace: String,
    pub pod: String,
    pub pod_uid: String,
    pub container: String,
}

/// What a file in a container directory is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `<n>.log` (current) or `<n>.log.<timestamp>` (rotated): plain text.
    Plain,
    /// `<n>.log.<timestamp>.gz`: a rotated file, compressed.
    Gzip,
}

/// The kind of a file by its name; `None` for files that are not logs
/// (the kubelet's `.tmp` files while it compresses, anything else).
pub fn kind(name: &str) -> Option<Kind> {
    let (stem, rest) = name.split_once(".log")?;
    if stem.is_empty() || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if rest.is_empty() {
        return Some(Kind::Plain);
    }
    let rest = rest.strip_prefix('.')?;
    if rest.ends_with(".tmp") {
        return None;
    }
    if rest == "gz" || rest.ends_with(".gz") {
        Some(Kind::Gzip)
    } else {
        Some(Kind::Plain)
    }
}

/// The labels of a pod directory name and a container name.
pub fn labels(pod_dir: &str, container: &str) -> Option<Labels> {
    let mut parts = pod_dir.splitn(3, '_');
    let (namespace, pod, uid) = (parts.next()?, parts.next()?, parts.next()?);
    if namespace.is_empty() || pod.is_empty() || uid.is_empty() || container.is_empty() {
        return None;
    }
    Some(Labels {
        namespace: namespace.to_string(),
        pod: pod.to_string(),
        pod_uid: uid.to_string(),
        container: container.to_string(),
    })
}

/// A log file found by a scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub path: PathBuf,
    pub kind: Kind,
    pub labels: Labels,
    /// The container directory (its files rotate into each other).
    pub dir: PathBuf,
}

/// Every log file under `root`. Directories that vanish during the scan
/// (a pod removed) are skipped.
pub fn scan(root: &Path) -> std::io::Result<Vec<Found>> {
    let mut out = Vec::new();
    for pod in std::fs::read_dir(root)? {
        let Ok(pod) = pod else { continue };
        let pod_name = pod.file_name().to_string_lossy().into_owned();
        let Ok(containers) = std::fs::read_dir(pod.path()) else {
            continue;
        };
        for c in containers.flatten() {
            let cname = c.file_name().to_string_lossy().into_owned();
            let Some(labels) = labels(&pod_name, &cname) else {
                continue;
            };
            let Ok(files) = std::fs::read_dir(c.path()) else {
                continue;
            };
            for f in files.flatten() {
                let name = f.file_name().to_string_lossy().into_owned();
                if let Some(kind) = kind(&name) {
                    out.push(Found {
                        path: f.path(),
                        kind,
                        labels: labels.clone(),
                        dir: c.path(),
                    });
                }
            }
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_kinds() {
        assert_eq!(kind("0.log"), Some(Kind::Plain));
        assert_eq!(kind("12.log"), Some(Kind::Plain));
        assert_eq!(kind("0.log.20261205-071504"), Some(Kind::Plain));
        assert_eq!(kind("0.log.20261205-071504.gz"), Some(Kind::Gzip));
        assert_eq!(kind("0.log.20261205-071504.tmp"), None);
        assert_eq!(kind("0.log.20261205-071504.gz.tmp"), None);
        assert_eq!(kind("x.log"), None);
        assert_eq!(kind("0.txt"), None);
        assert_eq!(kind("0.log.gz"), Some(Kind::Gzip));
        assert_eq!(kind("0.logx"), None);
    }

    #[test]
    fn labels_from_the_directory() {
        let l = labels("kube-system_cairn-dns-5d9f_1b2c-3d4e", "cairn-dns").unwrap();
        assert_eq!(
            (
                l.namespace.as_str(),
                l.pod.as_str(),
                l.pod_uid.as_str(),
                l.container.as_str()
            ),
            ("kube-system", "cairn-dns-5d9f", "1b2c-3d4e", "cairn-dns")
        );
        assert!(labels("no-underscores", "c").is_none());
        assert!(labels("ns_pod", "c").is_none());
    }

    #[test]
    fn a_scan_finds_log_files_only() {
        let d = tempfile::tempdir().unwrap();
        let c = d.path().join("default_web_u1/app");
        std::fs::create_dir_all(&c).unwrap();
        for f in [
            "0.log",
            "1.log",
            "0.log.20261205-1",
            "0.log.20261205-0.gz",
            "0.log.x.tmp",
            "junk",
        ] {
            std::fs::write(c.join(f), "").unwrap();
        }
        std::fs::create_dir_all(d.path().join("broken/app")).unwrap();
        std::fs::write(d.path().join("broken/app/0.log"), "").unwrap();
        let names: Vec<String> = scan(d.path())
            .unwrap()
            .iter()
            .map(|f| f.path.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            ["0.log", "0.log.20261205-0.gz", "0.log.20261205-1", "1.log"]
        );
    }
}
