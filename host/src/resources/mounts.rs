//! The mounts controller: `/proc/self/mountinfo` as `mounts` resources.
//! The kernel marks mountinfo readable with priority (POLLPRI) whenever the
//! mount table changes, so changes show at once; a slow periodic re-read is
//! the backstop.

use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use crate::procfs::{parse_mountinfo, MountLine};
use runtime::resources::controller::{Controller, ControllerError, Input};
use runtime::resources::specs::MountSpec;
use runtime::resources::{kind, Kind, Writer};

const REFRESH: Duration = Duration::from_secs(60);

#[derive(Clone)]
pub struct MountsController {
    pub mountinfo: PathBuf,
}

impl Default for MountsController {
    fn default() -> Self {
        Self {
            mountinfo: PathBuf::from("/proc/self/mountinfo"),
        }
    }
}

/// Resources for a mount table: one per mount point, the topmost mount
/// (the one listed last) winning where several are stacked.
pub fn specs(lines: Vec<MountLine>) -> Vec<(String, MountSpec)> {
    let mut by_target = std::collections::BTreeMap::new();
    for m in lines {
        let spec = MountSpec {
            read_only: m.read_only(),
            source: m.source,
            target: m.target.clone(),
            filesystem: m.fstype,
            options: m.options,
        };
        by_target.insert(m.target, spec);
    }
    by_target.into_iter().collect()
}

fn refresh(path: &Path, writer: &Writer) {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            if let Err(e) = writer.reconcile(specs(parse_mountinfo(&text))) {
                tracing::warn!(controller = "mounts", error = %e, "cannot write");
            }
        }
        Err(e) => {
            tracing::warn!(controller = "mounts", error = %e, "cannot read {}", path.display())
        }
    }
}

impl Controller for MountsController {
    fn name(&self) -> &'static str {
        "mounts"
    }

    fn inputs(&self) -> Vec<Input> {
        vec![Input::External("/proc/self/mountinfo")]
    }

    fn outputs(&self) -> Vec<&'static Kind> {
        vec![kind::MOUNTS]
    }

    fn run(self, writer: Writer) -> BoxFuture<'static, Result<(), ControllerError>> {
        Box::pin(async move {
            // Kept open only to be polled; each refresh reads the file anew.
            let watched = std::fs::File::open(&self.mountinfo).and_then(|f| {
                // SAFETY: the File owns its descriptor, which stays open and
                // unchanged until the AsyncFd (which owns the File) drops.
                unsafe { AsyncFd::register_with_interest(f, Interest::PRIORITY) }
                    .map_err(|e| e.into_parts().1)
            });
            let watched = match watched {
                Ok(w) => Some(w),
                Err(e) => {
                    tracing::warn!(controller = "mounts", error = %e, "cannot poll mountinfo; re-reading it periodically");
                    None
                }
            };
            loop {
                refresh(&self.mountinfo, &writer);
                match &watched {
                    Some(fd) => {
                        tokio::select! {
                            ready = fd.ready(Interest::PRIORITY) => match ready {
                                Ok(mut guard) => {
                                    // Reading to the end re-arms the poll.
                                    let _ = drain(fd.get_ref());
                                    guard.clear_ready();
                                }
                                Err(_) => tokio::time::sleep(REFRESH).await,
                            },
                            () = tokio::time::sleep(REFRESH) => {}
                        }
                    }
                    None => tokio::time::sleep(REFRESH).await,
                }
            }
        })
    }
}

/// Reads the polled file from the start to its end: the kernel re-arms
/// the mountinfo poll once the new table has been read.
fn drain(mut f: &std::fs::File) -> std::io::Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    f.seek(SeekFrom::Start(0))?;
    let mut sink = Vec::new();
    f.read_to_end(&mut sink).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use runtime::resources::Store;

    #[test]
    fn one_resource_per_mount_point_topmost_wins() {
        let lines = parse_mountinfo(
            "20 1 7:0 / / ro - squashfs /dev/loop0 ro\n\
             30 20 0:40 / /var rw - tmpfs tmpfs rw\n\
             31 30 254:6 / /var rw,relatime - ext4 /dev/vda6 rw\n",
        );
        let specs = specs(lines);
        assert_eq!(specs.len(), 2);
        assert_eq!(specs[1].0, "/var");
        assert_eq!(specs[1].1.filesystem, "ext4");
        assert!(specs[0].1.read_only);
    }

    /// Mounts a tmpfs and sees the resource appear through the poll (root
    /// only; skipped otherwise).
    #[tokio::test]
    async fn sees_a_new_mount_promptly() {
        if !nix::unistd::Uid::effective().is_root() {
            eprintln!("skipping: mounting needs root");
            return;
        }
        // A tmpfs on a fresh temporary directory, unmounted below.
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("m");
        std::fs::create_dir(&target).unwrap();
        let store = Store::new();
        runtime::resources::controller::spawn(&store, MountsController::default()).unwrap();
        let mut watch = runtime::resources::Watch::new(
            &store,
            runtime::resources::Filter {
                kinds: vec![kind::MOUNTS],
                id: Some(target.to_string_lossy().into_owned()),
            },
            false,
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        nix::mount::mount(
            Some("tmpfs"),
            &target,
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            Some("size=1m"),
        )
        .unwrap();
        let e = tokio::time::timeout(Duration::from_secs(5), watch.next()).await;
        let _ = nix::mount::umount(&target);
        let e = e.expect("the new mount within 5 s (well before the periodic re-read)");
        let r = e.resource.unwrap();
        assert_eq!(r.spec_as::<MountSpec>().unwrap().filesystem, "tmpfs");
    }
}
