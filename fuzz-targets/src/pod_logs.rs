//! Pod logs (`cairnctl logs -k`): container ids and CRI log lines from the
//! kubelet's files. Never panics; a message is the end of its line; a log
//! file streams (tail or not) the messages of its complete lines.

use std::path::PathBuf;
use std::sync::OnceLock;

use futures::StreamExt as _;
use kubernetes::podlogs;

fn root() -> &'static PathBuf {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        let base = if std::path::Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        let root = base.join(format!("cairn-fuzz-podlogs-{}", std::process::id()));
        std::fs::create_dir_all(root.join("ns_pod_0000/c")).expect("the scratch directory");
        root
    })
}

/// One input, as the fuzzer gives it.
pub fn run(data: &[u8]) {
    let Some((&tail, log)) = data.split_first() else {
        return;
    };
    if let Ok(text) = std::str::from_utf8(log) {
        for line in text.split('\n') {
            let m = podlogs::message(line);
            assert!(line.ends_with(m), "{m:?} is not the end of {line:?}");
        }
        if let Ok((ns, pod, c)) = podlogs::parse_id(text) {
            for part in [&ns, &pod, &c] {
                assert!(!part.is_empty() && !part.contains('/'), "{text:?}");
            }
        }
    }

    std::fs::write(root().join("ns_pod_0000/c/0.log"), log).expect("writing the log");
    let tail = (tail < 128).then_some(usize::from(tail));
    // Today a log that is not UTF-8 anywhere (even in a line still being
    // written) fails as a whole with a read error: reported to the lead.
    let lines = match podlogs::stream(root(), "ns/pod/c", tail, false) {
        Ok(lines) => lines,
        Err(podlogs::PodLogsError::Read { .. }) => {
            assert!(
                std::str::from_utf8(log).is_err(),
                "a text log failed to read"
            );
            return;
        }
        Err(e) => panic!("the log file is not found: {e}"),
    };
    let got: Vec<String> = futures::executor::block_on(lines.collect::<Vec<_>>())
        .into_iter()
        .map(|l| l.expect("a line of a readable log"))
        .collect();
    let text = std::str::from_utf8(log).expect("a log that read is text");
    // The complete lines: everything up to the last newline.
    let Some(end) = text.rfind('\n') else {
        assert!(got.is_empty(), "lines from a log without a newline");
        return;
    };
    let mut want: Vec<&str> = text[..end].split('\n').map(podlogs::message).collect();
    if let Some(n) = tail {
        want.drain(..want.len().saturating_sub(n));
    }
    assert_eq!(got, want);
}
