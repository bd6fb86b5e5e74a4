//! The collector against a real store process on loopback and a temporary
//! directory laid out like /var/log/pods: CRI parsing with partial lines,
//! rotation (rename and new file, then gzip), crashes of the collector in
//! the middle of a stream, and the store away for a while. Every line must
//! arrive exactly once.

mod common;

use std::time::Duration;

use common::*;

/// Not a test: the entry point of the store process the tests start (see
/// common/mod.rs). It does nothing unless CAIRN_TEST_LOGSTORE_ARGS is set.
#[test]
#[ignore = "entry point of the store child process, run by the tests themselves"]
fn logstore_process() {
    store_process_main();
}

fn ids(prefix: &str, range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("{prefix}-{i:06}")).collect()
}

#[test]
fn cri_lines_with_partials_reach_the_store_labelled() {
    let dir = tempfile::tempdir().unwrap();
    let pods = dir.path().join("pods");
    let store = free_addr();
    let _s = start_store(&dir.path().join("store"), store);
    let web = ContainerLog::new(&pods, "default", "web-7d4f", "app");
    let dns = ContainerLog::new(&pods, "kube-system", "cairn-dns-1", "cairn-dns");
    let t = "2026-12-05T07:15:04.000000001Z";
    // stdout: a line in three parts, interleaved with stderr lines; an
    // empty line; a line that is not CRI.
    web.append_raw(&format!(
        "{t} stdout F plain one\n\
         {t} stdout P joined-a \n\
         {t} stderr F error while joining\n\
         {t} stdout P joined-b \n\
         {t} stdout F joined-c\n\
         {t} stdout F \n\
         this is not cri\n"
    ));
    dns.write_lines(&["dns up".to_string()]);
    let (c, health_addr) = start_collector(&pods, &dir.path().join("state"), store, &[]);
    let records = wait_for_records(store, "q=", 6, 20);
    let by_msg = |m: &str| {
        records
            .iter()
            .find(|r| r["message"] == m)
            .unwrap_or_else(|| panic!("{m:?} missing from {records:#?}"))
            .clone()
    };
    let joined = by_msg("joined-a joined-b joined-c");
    assert_eq!(joined["stream"], "stdout");
    assert_eq!(joined["time"], t);
    assert_eq!(
        (
            joined["node"].as_str(),
            joined["namespace"].as_str(),
            joined["pod"].as_str(),
            joined["container"].as_str()
        ),
        (
            Some("node-1"),
            Some("default"),
            Some("web-7d4f"),
            Some("app")
        )
    );
    assert_eq!(by_msg("error while joining")["stream"], "stderr");
    assert_eq!(by_msg("plain one")["pod"], "web-7d4f");
    assert_eq!(by_msg("")["stream"], "stdout");
    let raw = by_msg("this is not cri");
    assert!(
        raw["labels"]["unparsed"]
            .as_str()
            .unwrap()
            .contains("stream"),
        "{raw}"
    );
    let d = by_msg("dns up");
    assert_eq!(
        (d["namespace"].as_str(), d["container"].as_str()),
        (Some("kube-system"), Some("cairn-dns"))
    );
    assert_eq!(records.len(), 6, "{records:#?}");
    let h = health(health_addr);
    assert_eq!(h["followed_files"], 2, "{h}");
    assert_eq!(h["store_reachable"], true, "{h}");
    c.stop();
}

#[test]
fn rotation_rename_new_file_and_gzip_lose_and_repeat_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let pods = dir.path().join("pods");
    let state = dir.path().join("state");
    let store = free_addr();
    let _s = start_store(&dir.path().join("store"), store);
    let mut log = ContainerLog::new(&pods, "default", "rotor", "app");
    let mut expected = vec!["rot-late".to_string()];
    let mut write = |log: &ContainerLog, from: usize, to: usize| {
        let lines = ids("rot", from..to);
        log.write_lines(&lines);
        expected.extend(lines);
    };
    write(&log, 0, 500);
    let (c, _) = start_collector(&pods, &state, store, &[]);
    wait_for_records(store, "q=", 500, 20);
    // Rotation while running: lines written to the old file just before
    // the rename, to the renamed file after it (the runtime's descriptor),
    // and to the new file.
    write(&log, 500, 600);
    let rotated = log.rotate();
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&rotated)
        .unwrap();
    std::io::Write::write_all(
        &mut f,
        format!("{} stdout F rot-late\n", cri_time()).as_bytes(),
    )
    .unwrap();
    drop(f);
    write(&log, 600, 700);
    wait_for_records(store, "q=", 701, 20);
    // The rotated file compressed and removed while running.
    log.compress(&rotated);
    write(&log, 700, 800);
    wait_for_records(store, "q=", 801, 20);
    // Now with the collector down: more lines, a rotation, a compression
    // and more lines, all while nobody reads.
    c.stop();
    write(&log, 800, 900);
    let rotated = log.rotate();
    write(&log, 900, 1000);
    log.compress(&rotated);
    // A container restart: a new file next to the old one.
    log.restart = 1;
    write(&log, 1000, 1100);
    let (c, _) = start_collector(&pods, &state, store, &[]);
    let records = wait_for_records(store, "q=", expected.len(), 30);
    assert_exactly_once(&records, &expected);
    c.stop();
}

#[test]
fn a_collector_killed_mid_stream_and_restarted_delivers_every_line_once() {
    let dir = tempfile::tempdir().unwrap();
    let pods = dir.path().join("pods");
    let state = dir.path().join("state");
    let store = free_addr();
    let _s = start_store(&dir.path().join("store"), store);
    let mut logs = [
        ContainerLog::new(&pods, "default", "busy-a", "app"),
        ContainerLog::new(&pods, "default", "busy-b", "app"),
    ];
    // Small batches, so a crash lands between many of them.
    let flags = ["--batch-lines=50"];
    let (mut c, _) = start_collector(&pods, &state, store, &flags);
    let mut logs_of_collectors = vec![c.log.clone()];
    let mut expected = Vec::new();
    let total = 12_000;
    let mut crashes = 0;
    for round in 0..24 {
        for (i, log) in logs.iter_mut().enumerate() {
            let from = round * 250 + i * 6000;
            let lines = ids("busy", from..from + 250);
            log.write_lines(&lines);
            expected.extend(lines);
            if round % 6 == 5 {
                let r = log.rotate();
                if round % 12 == 11 {
                    log.compress(&r);
                }
            }
        }
        if round % 5 == 2 {
            // A crash: no flush, no goodbye.
            std::thread::sleep(Duration::from_millis(40 + (round as u64 * 37) % 120));
            c.crash();
            crashes += 1;
            c = start_collector(&pods, &state, store, &flags).0;
            logs_of_collectors.push(c.log.clone());
        } else {
            std::thread::sleep(Duration::from_millis(60));
        }
    }
    assert_eq!(expected.len(), total);
    let records = try_wait_for_records(store, "q=", total, 60).unwrap_or_else(|got| {
        panic!(
            "only {} of {total} records arrived in 60 s; missing {:?}; the collectors' logs: {logs_of_collectors:?}",
            got.len(),
            missing_runs(&got, &expected),
        )
    });
    assert_exactly_once(&records, &expected);
    assert!(crashes >= 4);
    c.stop();
}

#[test]
fn with_the_store_down_lines_wait_in_the_buffer_and_arrive_once() {
    let dir = tempfile::tempdir().unwrap();
    let pods = dir.path().join("pods");
    let state = dir.path().join("state");
    let store_data = dir.path().join("store");
    let store = free_addr();
    let s = start_store(&store_data, store);
    let log = ContainerLog::new(&pods, "default", "patient", "app");
    // A small buffer: it fills while the store is away, and reading stops.
    let (c, health_addr) = start_collector(
        &pods,
        &state,
        store,
        &["--buffer-size=64KiB", "--batch-lines=100"],
    );
    let mut expected = ids("wait", 0..200);
    log.write_lines(&expected);
    wait_for_records(store, "q=", 200, 20);
    // The store crashes; lines keep coming.
    s.crash();
    for k in 0..10 {
        let lines = ids("wait", 200 + k * 500..200 + (k + 1) * 500);
        log.write_lines(&lines);
        expected.extend(lines);
    }
    eventually(20, "the collector to notice and fill its buffer", || {
        let h = health(health_addr);
        h["store_reachable"] == false && h["buffer_full"] == true
    });
    assert!(
        c.log_text().contains("cannot deliver to the store"),
        "{}",
        c.log_text()
    );
    assert!(
        c.log_text().contains("disk buffer full"),
        "{}",
        c.log_text()
    );
    let buffered = std::fs::read_dir(state.join("buffer")).unwrap().count();
    assert!(buffered > 0);
    // Away for a while longer, then back on its data.
    std::thread::sleep(Duration::from_millis(1500));
    let _s = start_store(&store_data, store);
    let records = wait_for_records(store, "q=", expected.len(), 40);
    assert_exactly_once(&records, &expected);
    eventually(10, "the buffer to empty", || {
        std::fs::read_dir(state.join("buffer")).unwrap().count() == 0
    });
    assert!(c.log_text().contains("the store takes batches again"));
    c.stop();
}

/// Many containers rotating fast while the collector scans often: a
/// rotation between a scan's listing and its look at a name must not make
/// the collector read the new file under the old one's identity (which it
/// did once: the renamed file's lines were lost).
#[test]
fn a_storm_of_rotations_loses_and_repeats_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let pods = dir.path().join("pods");
    let store = free_addr();
    let _s = start_store(&dir.path().join("store"), store);
    let mut logs: Vec<ContainerLog> = (0..24)
        .map(|i| ContainerLog::new(&pods, "storm", &format!("p{i}"), "app"))
        .collect();
    let (c, _) = start_collector(
        &pods,
        &dir.path().join("state"),
        store,
        &["--scan-interval=20ms", "--poll-interval=10ms"],
    );
    let expected = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for (i, log) in logs.iter_mut().enumerate() {
            let expected = &expected;
            s.spawn(move || {
                for r in 0..6 {
                    let lines = ids(&format!("storm-{i}-{r}"), 0..300);
                    log.write_lines(&lines);
                    expected.lock().unwrap().extend(lines);
                    log.rotate();
                    std::thread::sleep(Duration::from_millis(5 + (i as u64 * 7) % 30));
                }
            });
        }
    });
    let expected = expected.into_inner().unwrap();
    let records = wait_for_records(store, "q=", expected.len(), 40);
    assert_exactly_once(&records, &expected);
    c.stop();
}
