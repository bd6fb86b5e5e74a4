//! ListFiles and ReadFile: walking a directory tree to a depth without
//! following symbolic links, and streaming a regular file in chunks.
//! Both run on blocking threads and hand results over a small channel, so
//! a huge tree or file never sits in memory and a slow reader slows the
//! walk instead of growing a buffer.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use api::machine::FileInfo;
use futures::Stream;
use tokio::sync::mpsc;
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

/// Lists `root` (the root itself first, as `.`) to `max_depth` levels.
/// Symbolic links are listed as links and never followed, the root
/// included. Entries that cannot be read come with `error` set.
pub fn list(
    root: &str,
    max_depth: usize,
) -> Result<impl Stream<Item = FileInfo> + Send, FilesError> {
    let root = absolute(root)?;
    std::fs::symlink_metadata(&root).map_err(|e| io_error(&root, e))?;
    let (tx, rx) = mpsc::channel(LIST_BACKLOG);
    tokio::task::spawn_blocking(move || {
        let walk = walkdir::WalkDir::new(&root)
            .follow_links(false)
            .follow_root_links(false)
            .max_depth(max_depth)
            .sort_by_file_name();
        for entry in walk {
            let info = match entry {
                Ok(e) => file_info(&root, &e),
                Err(e) => FileInfo {
                    name: e.path().unwrap_or(&root).display().to_string(),
                    error: e
                        .io_error()
                        .map_or_else(|| e.to_string(), ToString::to_string),
                    ..Default::default()
                },
            };
            // The caller went away: stop walking.
            if tx.blocking_send(info).is_err() {
                return;
            }
        }
    });
    Ok(ReceiverStream::new(rx))
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

/// Streams a regular file in chunks of [`READ_CHUNK`] bytes.
pub fn read(
    path: &str,
) -> Result<impl Stream<Item = Result<Vec<u8>, FilesError>> + Send, FilesError> {
    use std::io::Read;
    let (path, mut file) = open(path)?;
    let (tx, rx) = mpsc::channel(2);
    tokio::task::spawn_blocking(move || loop {
        let mut buf = vec![0u8; READ_CHUNK];
        let item = match file.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                buf.truncate(n);
                Ok(buf)
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => Err(io_error(&path, e)),
        };
        let failed = item.is_err();
        if tx.blocking_send(item).is_err() || failed {
            return;
        }
    });
    Ok(ReceiverStream::new(rx))
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;
    use std::os::unix::fs::symlink;

    async fn names(root: &Path, depth: usize) -> Vec<String> {
        list(root.to_str().unwrap(), depth)
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
        let infos: Vec<FileInfo> = list(root.to_str().unwrap(), 1).unwrap().collect().await;
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
            list("relative/path", 1),
            Err(FilesError::NotAbsolute(_))
        ));
        assert!(matches!(
            list("/nonexistent/cairn", 1),
            Err(FilesError::NotFound(_))
        ));
    }

    #[tokio::test]
    async fn reads_files_in_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("big");
        let data: Vec<u8> = (0..READ_CHUNK * 2 + 10).map(|i| (i % 251) as u8).collect();
        std::fs::write(&p, &data).unwrap();
        let chunks: Vec<Vec<u8>> = read(p.to_str().unwrap())
            .unwrap()
            .map(|c| c.unwrap())
            .collect()
            .await;
        assert_eq!(chunks.len(), 3);
        assert_eq!(chunks.concat(), data);
        // Through a symlink to a regular file is fine.
        symlink(&p, dir.path().join("link")).unwrap();
        let via: Vec<Vec<u8>> = read(dir.path().join("link").to_str().unwrap())
            .unwrap()
            .map(|c| c.unwrap())
            .collect()
            .await;
        assert_eq!(via.concat(), data);
        // /proc files report size 0 but have content.
        let status: Vec<u8> = read("/proc/self/status")
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
