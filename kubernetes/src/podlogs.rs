//! `cairnctl logs -k namespace/pod/container`: the kubelet's log files
//! under /var/log/pods (`<namespace>_<pod>_<uid>/<container>/<restart>.log`
//! in the CRI format `<time> <stream> <P|F> <message>`), newest restart
//! first, with the CRI prefix removed like `kubectl logs` does.

use std::io::{BufRead, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::Stream;

#[derive(Debug, thiserror::Error)]
pub enum PodLogsError {
    #[error(
        "name the container as namespace/pod/container (or pod/container in default), not {0:?}"
    )]
    BadId(String),
    #[error("no logs for {0} on this node (no such pod or container in {1})")]
    NotFound(String, String),
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
}

/// `(namespace, pod, container)` from `ns/pod/container` or `pod/container`.
pub fn parse_id(id: &str) -> Result<(String, String, String), PodLogsError> {
    let parts: Vec<&str> = id.split('/').collect();
    match parts.as_slice() {
        [ns, pod, c] if !ns.is_empty() && !pod.is_empty() && !c.is_empty() => {
            Ok((ns.to_string(), pod.to_string(), c.to_string()))
        }
        [pod, c] if !pod.is_empty() && !c.is_empty() => {
            Ok(("default".into(), pod.to_string(), c.to_string()))
        }
        _ => Err(PodLogsError::BadId(id.to_string())),
    }
}

/// The log file of the container's latest run.
pub fn find(root: &Path, id: &str) -> Result<PathBuf, PodLogsError> {
    let (ns, pod, container) = parse_id(id)?;
    let prefix = format!("{ns}_{pod}_");
    let not_found = || PodLogsError::NotFound(id.to_string(), root.display().to_string());
    let pod_dir = std::fs::read_dir(root)
        .map_err(|_| not_found())?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        // A re-created pod has a new uid: take the newest directory.
        .max_by_key(|e| e.metadata().and_then(|m| m.modified()).ok())
        .ok_or_else(not_found)?
        .path();
    let dir = pod_dir.join(&container);
    std::fs::read_dir(&dir)
        .map_err(|_| not_found())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter_map(|p| {
            let n: u64 = p
                .file_name()?
                .to_str()?
                .strip_suffix(".log")?
                .parse()
                .ok()?;
            Some((n, p))
        })
        .max_by_key(|(n, _)| *n)
        .map(|(_, p)| p)
        .ok_or_else(not_found)
}

/// The message of one CRI log line (the line itself if it is not in the
/// CRI format).
pub fn message(line: &str) -> &str {
    let mut it = line.splitn(4, ' ');
    match (it.next(), it.next(), it.next(), it.next()) {
        (Some(_), Some("stdout" | "stderr"), Some("P" | "F"), Some(msg)) => msg,
        _ => line,
    }
}

fn read_lines(path: &Path, from: u64) -> Result<(Vec<String>, u64), PodLogsError> {
    let err = |source| PodLogsError::Read {
        path: path.display().to_string(),
        source,
    };
    let mut f = std::fs::File::open(path).map_err(err)?;
    let len = f.metadata().map_err(err)?.len();
    // A rotated (truncated) file starts again.
    let from = if from > len { 0 } else { from };
    f.seek(SeekFrom::Start(from)).map_err(err)?;
    let mut reader = std::io::BufReader::new(f);
    let mut out = Vec::new();
    let mut pos = from;
    let mut buf = String::new();
    loop {
        buf.clear();
        let n = reader.read_line(&mut buf).map_err(err)?;
        // Keep a line still being written for the next round.
        if n == 0 || !buf.ends_with('\n') {
            break;
        }
        pos += n as u64;
        out.push(message(buf.trim_end_matches('\n')).to_string());
    }
    Ok((out, pos))
}

/// The container's log as lines: the last `tail` (all with `None`), then,
/// with `follow`, new lines as they are written.
pub fn stream(
    root: &Path,
    id: &str,
    tail: Option<usize>,
    follow: bool,
) -> Result<impl Stream<Item = Result<String, PodLogsError>> + Send + 'static, PodLogsError> {
    let path = find(root, id)?;
    let (mut lines, pos) = read_lines(&path, 0)?;
    if let Some(n) = tail {
        lines.drain(..lines.len().saturating_sub(n));
    }
    let initial = futures::stream::iter(lines.into_iter().map(Ok));
    let more = futures::stream::unfold((path, pos, follow), |(path, pos, follow)| async move {
        if !follow {
            return None;
        }
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            match read_lines(&path, pos) {
                Ok((lines, new)) if !lines.is_empty() => {
                    let items: Vec<Result<String, PodLogsError>> =
                        lines.into_iter().map(Ok).collect();
                    return Some((futures::stream::iter(items), (path, new, true)));
                }
                Ok(_) => {}
                Err(e) => return Some((futures::stream::iter(vec![Err(e)]), (path, pos, false))),
            }
        }
    });
    Ok(futures::StreamExt::chain(
        initial,
        futures::StreamExt::flatten(more),
    ))
}

/// The stream the Logs RPC answers with.
pub type DataStream =
    std::pin::Pin<Box<dyn Stream<Item = Result<api::machine::Data, tonic::Status>> + Send>>;

/// The Logs RPC with `kubernetes` set: the container's log as `Data`
/// chunks, errors as statuses.
pub fn handle(req: &api::machine::LogsRequest) -> Result<DataStream, tonic::Status> {
    let to_status = |e: PodLogsError| match e {
        PodLogsError::BadId(_) => tonic::Status::invalid_argument(e.to_string()),
        PodLogsError::NotFound(..) => tonic::Status::not_found(e.to_string()),
        PodLogsError::Read { .. } => tonic::Status::internal(e.to_string()),
    };
    let tail = usize::try_from(req.tail_lines).ok();
    let lines = stream(
        Path::new(config::constants::k8s::POD_LOGS_DIR),
        &req.id,
        tail,
        req.follow,
    )
    .map_err(to_status)?;
    Ok(Box::pin(futures::StreamExt::map(lines, move |l| {
        l.map(|l| api::machine::Data {
            bytes: (l + "\n").into_bytes(),
        })
        .map_err(to_status)
    })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    #[test]
    fn ids_and_cri_lines() {
        assert_eq!(
            parse_id("kube-system/p/c").unwrap(),
            ("kube-system".into(), "p".into(), "c".into())
        );
        assert_eq!(parse_id("p/c").unwrap().0, "default");
        assert!(parse_id("p").is_err() && parse_id("a//c").is_err());
        assert_eq!(
            message("2026-11-25T19:00:00.1Z stdout F hello world"),
            "hello world"
        );
        assert_eq!(message("plain"), "plain");
    }

    #[tokio::test]
    async fn latest_run_tail_and_follow() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("kube-system_dns_uid1/cairn-dns");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("0.log"), "t stdout F old\n").unwrap();
        std::fs::write(
            dir.join("1.log"),
            "t stdout F a\nt stderr F b\nt stdout F c\n",
        )
        .unwrap();
        let lines: Vec<String> = stream(root.path(), "kube-system/dns/cairn-dns", Some(2), false)
            .unwrap()
            .map(|l| l.unwrap())
            .collect()
            .await;
        assert_eq!(lines, vec!["b", "c"]);
        let mut s =
            Box::pin(stream(root.path(), "kube-system/dns/cairn-dns", Some(0), true).unwrap());
        use std::io::Write as _;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(dir.join("1.log"))
            .unwrap();
        f.write_all(b"t stdout F d\n").unwrap();
        let next = tokio::time::timeout(Duration::from_secs(5), s.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(next, "d");
        let e = find(root.path(), "kube-system/nope/c").unwrap_err();
        assert!(e.to_string().contains("kube-system/nope/c"), "{e}");
    }
}
