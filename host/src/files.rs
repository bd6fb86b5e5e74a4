//! ListFiles and ReadFile: walking a directory tree to a depth without
//! following symbolic links, and streaming a regular file in chunks.
//! Both run on blocking threads and hand results over a small channel, so
//! a huge tree or file never sits in memory and a slow reader slows the
//! walk instead of growing a buffer.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use api::machine::FileInfo;
use futures::Stream;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_stream::wrappers::ReceiverStream;

#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    #[error("{0}: the path must be absolute")]
    NotAbsolute(String),
    #[error("{0}: no such file or directory")]
    NotFound(String),
    #[error("{0}: permission denied")]
    PermissionDenied(String),
    #[error("{0} is a directory; `cairnctl ls {0}` lists it")]
    IsDirectory(String),
    #[error("{path} is a {what}, not a regular file; only regular files can be read")]
    NotRegular { path: String, what: &'static str },
    #[error("{path} is not served: {why}")]
    Refused { path: String, why: &'static str },
    #[error(
        "{0} file streams (ls, read) are open on this node already; close one or try again shortly"
    )]
    TooManyStreams(usize),
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

fn io_error(path: &Path, e: std::io::Error) -> FilesError {
    let p = path.display().to_string();
    match e.kind() {
        std::io::ErrorKind::NotFound => FilesError::NotFound(p),
        std::io::ErrorKind::PermissionDenied => FilesError::PermissionDenied(p),
        _ => FilesError::Io { path: p, source: e },
    }
}

fn absolute(path: &str) -> Result<PathBuf, FilesError> {
    let p = PathBuf::from(if path.is_empty() { "/" } else { path });
    if p.is_absolute() {
        Ok(p)
    } else {
        Err(FilesError::NotAbsolute(path.to_string()))
    }
}

/// How deep a listing goes: 1 (the entries of the directory) without
/// `recurse`; `depth` levels with it, no limit for 0 or less.
pub fn max_depth(recurse: bool, depth: i32) -> usize {
    match (recurse, depth) {
        (false, _) => 1,
        (true, d) if d <= 0 => usize::MAX,
        (true, d) => d as usize,
    }
}

/// Lines a listing may be ahead of the reader.
const LIST_BACKLOG: usize = 64;

fn file_info(root: &Path, entry: &walkdir::DirEntry) -> FileInfo {
    let path = entry.path();
    let relative = match path.strip_prefix(root) {
        Ok(r) if r.as_os_str().is_empty() => ".".to_string(),
        Ok(r) => r.display().to_string(),
        Err(_) => path.display().to_string(),
    };
    let mut info = FileInfo {
        name: path.display().to_string(),
        relative_name: relative,
        is_dir: entry.file_type().is_dir(),
        ..Default::default()
    };
    match entry.metadata() {
        Ok(m) => {
            info.size = m.len();
            info.mode = m.mode();
            info.modified = m.mtime();
        }
        Err(e) => info.error = e.to_string(),
    }
    if entry.path_is_symlink() {
        match std::fs::read_link(path) {
            Ok(target) => info.link = target.display().to_string(),
            Err(e) => info.error = format!("cannot read the link: {e}"),
        }
    }
    info
}

/// Lists `root` down to `max_depth`, as a stream. The walk runs on a
/// blocking thread one batch at a time; between batches it waits, off the
/// blocking pool, for the caller to take what it listed (see [`Streams`]).
pub fn list(
    root: &str,
    max_depth: usize,
    permit: StreamPermit,
) -> Result<impl Stream<Item = FileInfo> + Send, FilesError> {
    let root = absolute(root)?;
    std::fs::symlink_metadata(&root).map_err(|e| io_error(&root, e))?;
    let (tx, rx) = mpsc::channel(LIST_BACKLOG);
    tokio::spawn(async move {
        let _permit = permit;
        let walk = walkdir::WalkDir::new(&root)
            .follow_links(false)
            .follow_root_links(false)
            .max_depth(max_depth)
            .sort_by_file_name()
            .into_iter();
        let mut walk = Some(walk);
        while let Some(mut w) = walk.take() {
            let root = root.clone();
            let Ok((w, batch, done)) = tokio::task::spawn_blocking(move || {
                let mut batch = Vec::with_capacity(LIST_BACKLOG);
                let mut done = false;
                while batch.len() < LIST_BACKLOG {
                    let Some(entry) = w.next() else {
                        done = true;
                        break;
                    };
                    batch.push(match entry {
                        Ok(e) => file_info(&root, &e),
                        Err(e) => FileInfo {
                            name: e.path().unwrap_or(&root).display().to_string(),
                            error: e
                                .io_error()
                                .map_or_else(|| e.to_string(), ToString::to_string),
                            ..Default::default()
                        },
                    });
                }
                (w, batch, done)
            })
            .await
            else {
                return;
            };
            for info in batch {
                // The caller went away or stopped reading: stop walking.
                if !send_within(&tx, info, STREAM_IDLE).await {
                    return;
                }
            }
            if !done {
                walk = Some(w);
            }
        }
    });
    Ok(ReceiverStream::new(rx))
}

/// Sends `item`, unless the receiver is gone or does not take it within
/// `idle`. Returns whether it was sent.
async fn send_within<T>(tx: &mpsc::Sender<T>, item: T, idle: Duration) -> bool {
    matches!(tokio::time::timeout(idle, tx.send(item)).await, Ok(Ok(())))
}

/// At most this many ListFiles and ReadFile streams are open at once, far
/// below the runtime's blocking pool (512 threads): a caller that opens
/// streams and never reads them can hold only these, never the threads
/// that Processes, Mounts, Disks, Netstat or certificate issuance need.
pub const MAX_STREAMS: usize = 32;
/// A stream whose caller has not taken the next item for this long is
/// closed (and its permit returned).
pub const STREAM_IDLE: Duration = Duration::from_secs(30);

/// The permits for open file streams.
#[derive(Clone)]
pub struct Streams(Arc<Semaphore>);

/// One open stream's share of [`MAX_STREAMS`].
pub struct StreamPermit(#[allow(dead_code)] OwnedSemaphorePermit);

impl Default for Streams {
    fn default() -> Self {
        Self::new(MAX_STREAMS)
    }
}

impl Streams {
    pub fn new(max: usize) -> Self {
        Self(Arc::new(Semaphore::new(max)))
    }

    /// A permit, or [`FilesError::TooManyStreams`] when all are taken.
    pub fn open(&self) -> Result<StreamPermit, FilesError> {
        self.0
            .clone()
            .try_acquire_owned()
            .map(StreamPermit)
            .map_err(|_| FilesError::TooManyStreams(MAX_STREAMS))
    }
}

/// Files that are regular files in name only: reading them is dangerous,
/// endless, or steals data from someone else.
fn refusal(canonical: &Path) -> Option<&'static str> {
    let s = canonical.to_string_lossy();
    let name = canonical
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let in_process = s.starts_with("/proc/") && s[6..].starts_with(|c: char| c.is_ascii_digit());
    match s.as_ref() {
        "/proc/kcore" => Some("it is an image of the kernel's memory"),
        "/proc/kmsg" => {
            Some("reading it takes messages away from the kernel log; `cairnctl dmesg` shows them")
        }
        "/proc/kpagecount" | "/proc/kpageflags" | "/proc/kpagecgroup" => {
            Some("it describes every page of physical memory")
        }
        _ if in_process && (name == "mem" || name == "pagemap") => Some("it is a process's memory"),
        _ => None,
    }
}

fn kind_of(ft: std::fs::FileType) -> &'static str {
    if ft.is_block_device() {
        "block device"
    } else if ft.is_char_device() {
        "character device"
    } else if ft.is_fifo() {
        "named pipe"
    } else if ft.is_socket() {
        "socket"
    } else {
        "special file"
    }
}

/// Bytes per message of a file stream.
pub const READ_CHUNK: usize = 64 * 1024;

/// Checks `path` and opens it: a regular file (symbolic links are
/// followed to one), not one of the refused kernel files.
pub fn open(path: &str) -> Result<(PathBuf, std::fs::File), FilesError> {
    let path = absolute(path)?;
    let meta = std::fs::metadata(&path).map_err(|e| io_error(&path, e))?;
    let shown = path.display().to_string();
    if meta.is_dir() {
        return Err(FilesError::IsDirectory(shown));
    }
    if !meta.is_file() {
        return Err(FilesError::NotRegular {
            path: shown,
            what: kind_of(meta.file_type()),
        });
    }
    let canonical = std::fs::canonicalize(&path).map_err(|e| io_error(&path, e))?;
    if let Some(why) = refusal(&canonical) {
        return Err(FilesError::Refused { path: shown, why });
    }
    let file = std::fs::File::open(&path).map_err(|e| io_error(&path, e))?;
    Ok((path, file))
}

/// Streams a regular file in chunks of [`READ_CHUNK`] bytes; each chunk
/// is read on a blocking thread, and the wait for the caller to take it
/// holds none.
pub fn read(
    path: &str,
    permit: StreamPermit,
) -> Result<impl Stream<Item = Result<Vec<u8>, FilesError>> + Send, FilesError> {
    use std::io::Read;
    let (path, file) = open(path)?;
    let (tx, rx) = mpsc::channel(2);
    tokio::spawn(async move {
        let _permit = permit;
        let mut file = Some(file);
        while let Some(mut f) = file.take() {
            let p = path.clone();
            let Ok((f, item)) = tokio::task::spawn_blocking(move || loop {
                let mut buf = vec![0u8; READ_CHUNK];
                match f.read(&mut buf) {
                    Ok(0) => return (f, None),
                    Ok(n) => {
                        buf.truncate(n);
                        return (f, Some(Ok(buf)));
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => return (f, Some(Err(io_error(&p, e)))),
                }
            })
            .await
            else {
                return;
            };
            let Some(item) = item else { return };
            let failed = item.is_err();
            if !send_within(&tx, item, STREAM_IDLE).await || failed {
                return;
            }
            file = Some(f);
        }
    });
    Ok(ReceiverStream::new(rx))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn permit() -> StreamPermit {
        Streams::default().open().unwrap()
    }

    /// Hole 4 of the hardening issue: unread `ls` streams held a blocking
    /// thread each until the pool was gone. Now a stream holds none while
    /// it waits for its reader: with 4 blocking threads and 16 unread
    /// streams, blocking work still runs at once.
    #[test]
    fn unread_streams_hold_no_blocking_threads() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .max_blocking_threads(4)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            for i in 0..(3 * LIST_BACKLOG) {
                std::fs::write(dir.path().join(format!("f{i}")), b"x").unwrap();
            }
            let streams = Streams::new(16);
            let mut open = Vec::new();
            for _ in 0..16 {
                let p = streams.open().unwrap();
                open.push(list(dir.path().to_str().unwrap(), 1, p).unwrap());
            }
            let big = dir.path().join("f0");
            for _ in 0..4 {
                let p = Streams::new(1).open().unwrap();
                let _unread = read(big.to_str().unwrap(), p).unwrap();
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
            let r =
                tokio::time::timeout(Duration::from_secs(5), tokio::task::spawn_blocking(|| 42))
                    .await;
            assert_eq!(r.expect("the blocking pool is exhausted").unwrap(), 42);
            // A 17th stream is refused with a clear error.
            assert!(matches!(
                streams.open(),
                Err(FilesError::TooManyStreams(MAX_STREAMS))
            ));
            drop(open);
        });
    }

    #[tokio::test(start_paused = true)]
    async fn a_reader_that_stops_reading_is_dropped_after_the_idle_time() {
        let (tx, mut rx) = mpsc::channel(1);
        assert!(send_within(&tx, 1, STREAM_IDLE).await);
        // The channel is full and nobody reads: given up after STREAM_IDLE.
        let started = tokio::time::Instant::now();
        assert!(!send_within(&tx, 2, STREAM_IDLE).await);
        assert_eq!(started.elapsed(), STREAM_IDLE);
        assert_eq!(rx.recv().await, Some(1));
        drop(rx);
        assert!(!send_within(&tx, 3, STREAM_IDLE).await);
    }
    use futures::StreamExt;
    use std::os::unix::fs::symlink;

    async fn names(root: &Path, depth: usize) -> Vec<String> {
        list(root.to_str().unwrap(), depth, permit())
            .unwrap()
            .map(|f| {
                assert!(f.error.is_empty(), "{f:?}");
                if f.link.is_empty() {
                    f.relative_name
                } else {
                    format!("{} -> {}", f.relative_name, f.link)
                }
            })
            .collect()
            .await
    }

    #[tokio::test]
    async fn depth_limits_and_symlinks_are_never_followed() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::create_dir(outside.path().join("secret-dir")).unwrap();
        std::fs::write(outside.path().join("secret-dir/secret"), "x").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("a/b/c")).unwrap();
        std::fs::write(root.join("a/b/c/deep"), "deep").unwrap();
        std::fs::write(root.join("top"), "12345").unwrap();
        symlink(outside.path(), root.join("out")).unwrap();

        assert_eq!(
            names(root, 1).await,
            vec![
                ".".to_string(),
                "a".into(),
                format!("out -> {}", outside.path().display()),
                "top".into()
            ]
        );
        assert_eq!(names(root, 2).await.len(), 5); // + a/b
        let all = names(root, max_depth(true, 0)).await;
        assert!(all.contains(&"a/b/c/deep".to_string()), "{all:?}");
        assert!(
            !all.iter().any(|n| n.contains("secret")),
            "followed a link out: {all:?}"
        );

        // Sizes, modes and kinds.
        let infos: Vec<FileInfo> = list(root.to_str().unwrap(), 1, permit())
            .unwrap()
            .collect()
            .await;
        let top = infos.iter().find(|f| f.relative_name == "top").unwrap();
        assert_eq!(top.size, 5);
        assert_eq!(top.mode & 0o170000, 0o100000);
        assert!(
            infos
                .iter()
                .find(|f| f.relative_name == "a")
                .unwrap()
                .is_dir
        );
        assert_eq!(top.name, root.join("top").display().to_string());

        // A symlinked root is listed as the link, not entered.
        let via_link = names(&root.join("out"), 3).await;
        assert_eq!(via_link, vec![format!(". -> {}", outside.path().display())]);
    }

    #[test]
    fn depth_rules() {
        assert_eq!(max_depth(false, 5), 1);
        assert_eq!(max_depth(true, 0), usize::MAX);
        assert_eq!(max_depth(true, -1), usize::MAX);
        assert_eq!(max_depth(true, 3), 3);
    }

    #[tokio::test]
    async fn listing_errors() {
        assert!(matches!(
            list("relative/path", 1, permit()),
            Err(FilesError::NotAbsolute(_))
        ));
        assert!(matches!(
            list("/nonexistent/cairn", 1, permit()),
            Err(FilesError::NotFound(_))
        ));
    }

    #[tokio::test]
    async fn reads_files_in_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("big");
        let data: Vec<u8> = (0..READ_CHUNK * 2 + 10).map(|i| (i % 251) as u8).collect();
        std::fs::write(&p, &data).unwrap();
        let chunks: Vec<Vec<u8>> = read(p.to_str().unwrap(), permit())
            .unwrap()
            .map(|c| c.unwrap())
            .collect()
            .await;
        assert_eq!(chunks.len(), 3);
        assert_eq!(chunks.concat(), data);
        // Through a symlink to a regular file is fine.
        symlink(&p, dir.path().join("link")).unwrap();
        let via: Vec<Vec<u8>> = read(dir.path().join("link").to_str().unwrap(), permit())
            .unwrap()
            .map(|c| c.unwrap())
            .collect()
            .await;
        assert_eq!(via.concat(), data);
        // /proc files report size 0 but have content.
        let status: Vec<u8> = read("/proc/self/status", permit())
            .unwrap()
            .map(|c| c.unwrap())
            .collect::<Vec<_>>()
            .await
            .concat();
        assert!(String::from_utf8_lossy(&status).contains("VmRSS"));
    }

    #[test]
    fn read_errors_say_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_str().unwrap();
        let e = open(d).unwrap_err();
        assert!(matches!(e, FilesError::IsDirectory(_)));
        assert!(e.to_string().contains("cairnctl ls"), "{e}");
        assert!(matches!(
            open("/nonexistent/x"),
            Err(FilesError::NotFound(_))
        ));
        assert!(matches!(open("etc/hosts"), Err(FilesError::NotAbsolute(_))));
        let e = open("/dev/null").unwrap_err();
        assert!(
            matches!(
                e,
                FilesError::NotRegular {
                    what: "character device",
                    ..
                }
            ),
            "{e}"
        );
        // Not every kernel has /proc/kcore; the rule holds either way.
        assert!(refusal(Path::new("/proc/kcore")).is_some());
        assert!(refusal(Path::new("/proc/123/task/124/mem")).is_some());
        assert!(refusal(Path::new("/proc/123/status")).is_none());
        assert!(refusal(Path::new("/var/mem")).is_none());
        let e = open("/proc/self/mem").unwrap_err();
        assert!(matches!(e, FilesError::Refused { .. }), "{e}");
        assert!(e.to_string().contains("memory"), "{e}");
        // A symlink to a refused file is refused too.
        symlink("/proc/kmsg", dir.path().join("kmsg")).unwrap();
        let e = open(dir.path().join("kmsg").to_str().unwrap()).unwrap_err();
        assert!(matches!(e, FilesError::Refused { .. }), "{e}");
    }
}
