//! The kernel log for the Dmesg RPC: `/dev/kmsg` read without blocking,
//! from the oldest record the kernel still holds (or from the end with
//! `tail`), optionally following new records.

use std::io::Read;
use std::path::Path;

use futures::Stream;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

#[derive(Debug, thiserror::Error)]
pub enum DmesgError {
    #[error("cannot open {path}: {source}")]
    Open {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read the kernel log: {0}")]
    Read(#[source] std::io::Error),
}

/// One record's text as `dmesg` prints it: `[   12.345678] message`.
/// `None` for continuation lines (` KEY=value` metadata) and malformed
/// input.
pub fn format_record(raw: &str) -> Option<String> {
    let (prefix, message) = raw.split_once(';')?;
    let mut fields = prefix.split(',');
    let _priority: u32 = fields.next()?.parse().ok()?;
    let _seq: u64 = fields.next()?.parse().ok()?;
    let usec: u64 = fields.next()?.parse().ok()?;
    // The message ends at the first newline; what follows is metadata.
    let message = message.split('\n').next().unwrap_or_default();
    Some(format!(
        "[{:>5}.{:06}] {message}",
        usec / 1_000_000,
        usec % 1_000_000
    ))
}

/// Largest record the kernel hands out, with room to spare (a read with a
/// smaller buffer fails with EINVAL).
const RECORD_BUFFER: usize = 8192;
/// Bytes gathered into one message of the stream.
const CHUNK: usize = 32 * 1024;

pub struct Kmsg {
    fd: AsyncFd<std::fs::File>,
    follow: bool,
    buf: Vec<u8>,
}

impl Kmsg {
    /// Opens the kernel log at `path` (normally `/dev/kmsg`); with `tail`
    /// only records written from now on are read.
    pub fn open(path: &Path, follow: bool, tail: bool) -> Result<Self, DmesgError> {
        use std::os::unix::fs::OpenOptionsExt;
        let open_err = |source| DmesgError::Open {
            path: path.display().to_string(),
            source,
        };
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(path)
            .map_err(open_err)?;
        if tail {
            use std::io::{Seek, SeekFrom};
            (&file).seek(SeekFrom::End(0)).map_err(open_err)?;
        }
        // SAFETY: the File owns its descriptor, which stays open and
        // unchanged until the AsyncFd (which owns the File) drops.
        let fd = unsafe { AsyncFd::register_with_interest(file, Interest::READABLE) }
            .map_err(|e| open_err(e.into_parts().1))?;
        Ok(Self {
            fd,
            follow,
            buf: vec![0; RECORD_BUFFER],
        })
    }

    /// Reads what is there now (up to a chunk). Empty means nothing new.
    fn read_available(&mut self) -> Result<String, DmesgError> {
        let mut out = String::new();
        let mut file: &std::fs::File = self.fd.get_ref();
        while out.len() < CHUNK {
            match file.read(&mut self.buf) {
                Ok(0) => break,
                Ok(n) => {
                    if let Some(line) = format_record(&String::from_utf8_lossy(&self.buf[..n])) {
                        out.push_str(&line);
                        out.push('\n');
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                // EPIPE: records were overwritten before we read them; the
                // next read continues at the oldest one left.
                Err(e) if e.raw_os_error() == Some(libc::EPIPE) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(DmesgError::Read(e)),
            }
        }
        Ok(out)
    }

    /// The next chunk of formatted lines; `None` at the end when not
    /// following.
    pub async fn next_chunk(&mut self) -> Option<Result<String, DmesgError>> {
        loop {
            match self.read_available() {
                Ok(text) if !text.is_empty() => return Some(Ok(text)),
                Ok(_) if !self.follow => return None,
                Ok(_) => {
                    let mut guard = match self.fd.readable().await {
                        Ok(g) => g,
                        Err(e) => return Some(Err(DmesgError::Read(e))),
                    };
                    guard.clear_ready();
                }
                Err(e) => return Some(Err(e)),
            }
        }
    }

    /// The log as a stream of chunks.
    pub fn into_stream(self) -> impl Stream<Item = Result<String, DmesgError>> + Send {
        futures::stream::unfold(Some(self), |state| async move {
            let mut k = state?;
            match k.next_chunk().await {
                Some(Ok(text)) => Some((Ok(text), Some(k))),
                Some(Err(e)) => Some((Err(e), None)),
                None => None,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;
    use std::time::Duration;

    #[test]
    fn formats_records_like_dmesg() {
        assert_eq!(
            format_record("6,339,5140900,-;virtio_net virtio0 eth0: renamed\n SUBSYSTEM=virtio\n DEVICE=+virtio:virtio0\n")
                .as_deref(),
            Some("[    5.140900] virtio_net virtio0 eth0: renamed")
        );
        assert_eq!(
            format_record("13,2,123,c,more;cairn: x;y").as_deref(),
            Some("[    0.000123] cairn: x;y")
        );
        assert_eq!(format_record(" SUBSYSTEM=virtio"), None);
        assert_eq!(format_record("garbage"), None);
    }

    /// Reads the host's kernel log (root only: kmsg needs CAP_SYSLOG when
    /// dmesg_restrict is set).
    #[tokio::test]
    async fn reads_and_follows_the_live_kernel_log() {
        let path = Path::new("/dev/kmsg");
        let k = match Kmsg::open(path, false, false) {
            Ok(k) => k,
            Err(e) => {
                eprintln!("skipping: {e}");
                return;
            }
        };
        let all: Vec<String> = k.into_stream().map(|r| r.unwrap()).collect().await;
        let text = all.concat();
        assert!(text.lines().all(|l| l.starts_with('[')), "{text}");

        // Following from the end sees a record written now.
        let mut follow = Kmsg::open(path, true, true).unwrap();
        let marker = format!("machined-dmesg-test-{}", std::process::id());
        if std::fs::write(path, format!("<7>{marker}\n")).is_err() {
            eprintln!(
                "skipping the follow part: cannot write to {}",
                path.display()
            );
            return;
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let chunk = tokio::time::timeout_at(deadline, follow.next_chunk())
                .await
                .expect("the marker within 5 s")
                .unwrap()
                .unwrap();
            if chunk.contains(&marker) {
                break;
            }
        }
        assert!(matches!(
            Kmsg::open(Path::new("/nonexistent/kmsg"), false, false),
            Err(DmesgError::Open { .. })
        ));
    }
}
