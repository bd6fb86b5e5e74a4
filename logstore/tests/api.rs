//! The store's HTTP and TCP API against a real `cairn-logstore` process:
//! ingest, query (full text, each filter, time range, newest first,
//! paging), live tail, bad input, restart, retention and refusal.

mod common;

use std::time::Duration;

use common::{ago, eventually, messages, StoreProcess};
use serde_json::{json, Value};

/// 60 container lines over two nodes, two namespaces, three pods, two
/// containers, both streams, one a second apart (oldest first), plus two
/// machined service lines.
fn corpus() -> Vec<Value> {
    let mut v = Vec::new();
    for i in 0..60i64 {
        let word = if i % 3 == 0 {
            "connection refused"
        } else {
            "request served"
        };
        v.push(json!({
            "time": ago(1000 - i, 0),
            "node": if i % 2 == 0 { "cp1" } else { "w1" },
            "namespace": if i % 4 < 2 { "default" } else { "kube-system" },
            "pod": format!("pod-{}", i % 3),
            "container": if i % 5 == 0 { "sidecar" } else { "app" },
            "stream": if i % 7 == 0 { "stderr" } else { "stdout" },
            "message": format!("line {i}: {word}"),
        }));
    }
    v.push(json!({"time": ago(10, 0), "node": "cp1", "service": "kubelet", "message": "kubelet started", "level": "info"}));
    v.push(json!({"time": ago(9, 0), "node": "cp1", "service": "etcd", "message": "etcd slow fdatasync", "level": "warn"}));
    v
}

fn line_numbers(records: &[Value]) -> Vec<i64> {
    messages(records)
        .iter()
        .filter_map(|m| m.strip_prefix("line ")?.split(':').next()?.parse().ok())
        .collect()
}

fn expected(pred: impl Fn(i64) -> bool) -> Vec<i64> {
    (0..60).rev().filter(|i| pred(*i)).collect()
}

#[tokio::test]
async fn ingest_then_query_by_text_filters_time_and_pages() {
    let dir = tempfile::tempdir().unwrap();
    let s = StoreProcess::start(&dir.path().join("data"), &[]).await;
    let (status, ack) = s.ingest("?source=node-a&batch=1", &corpus()).await;
    assert_eq!((status, &ack["accepted"]), (200, &json!(62)), "{ack}");

    // Everything, newest first.
    let all = s.all("q=", 1000).await;
    assert_eq!(all.len(), 62);
    assert_eq!(
        messages(&all)[..2],
        ["etcd slow fdatasync", "kubelet started"]
    );
    assert_eq!(line_numbers(&all), expected(|_| true));
    let times: Vec<&str> = all.iter().map(|r| r["time"].as_str().unwrap()).collect();
    assert!(
        times.windows(2).all(|w| w[0] >= w[1]),
        "newest first: {times:?}"
    );

    // Full text (terms joined by AND), a phrase, and a field query.
    let refused = s.all("q=refused", 1000).await;
    assert_eq!(line_numbers(&refused), expected(|i| i % 3 == 0));
    let phrase = s.all("q=%22connection%20refused%22", 1000).await;
    assert_eq!(phrase.len(), 20);
    assert!(s.all("q=%22refused%20connection%22", 1000).await.is_empty());
    assert_eq!(s.all("q=request%20refused", 1000).await.len(), 0);
    let warn = s.all("q=labels.level:warn", 1000).await;
    assert_eq!(messages(&warn), ["etcd slow fdatasync"]);

    // Each filter.
    let n = |p: &str| {
        let s = &s;
        let p = p.to_string();
        async move { line_numbers(&s.all(&p, 1000).await) }
    };
    assert_eq!(n("node=w1").await, expected(|i| i % 2 == 1));
    assert_eq!(n("namespace=kube-system").await, expected(|i| i % 4 >= 2));
    assert_eq!(n("pod=pod-1").await, expected(|i| i % 3 == 1));
    assert_eq!(n("container=sidecar").await, expected(|i| i % 5 == 0));
    assert_eq!(n("stream=stderr").await, expected(|i| i % 7 == 0));
    assert_eq!(
        n("q=refused&node=cp1&namespace=default").await,
        expected(|i| i % 3 == 0 && i % 2 == 0 && i % 4 < 2)
    );
    let services = s.all("service=kubelet", 1000).await;
    assert_eq!(messages(&services), ["kubelet started"]);
    assert_eq!(services[0]["node"], "cp1");

    // Time range [time of line 10, time of line 21): lines 10 to 20.
    let time_of = |i: i64| {
        all[all.len() - 1 - i as usize]["time"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let q = format!("start={}&end={}", time_of(10), time_of(21)).replace('+', "%2B");
    assert_eq!(n(&q).await, (10..=20).rev().collect::<Vec<_>>());
    assert_eq!(n("since=995s&q=served").await.first(), Some(&59));
    assert!(!n("since=995s").await.contains(&0));

    // Paging: pages of 7 give the same records in the same order, once each.
    for params in ["q=", "q=refused", "node=cp1"] {
        let whole = s.all(params, 1000).await;
        let paged = s.all(params, 7).await;
        assert_eq!(paged, whole, "{params}");
    }
    let first = s.query("limit=5").await;
    assert_eq!(first["records"].as_array().unwrap().len(), 5);
    assert!(first["next_cursor"].is_string());
    assert_eq!(first["last_seq"], 62);
    s.stop();
}

#[tokio::test]
async fn records_with_one_timestamp_page_without_gaps_or_repeats() {
    let dir = tempfile::tempdir().unwrap();
    let s = StoreProcess::start(&dir.path().join("data"), &[]).await;
    let t = ago(5, 0);
    let lines: Vec<Value> = (0..50)
        .map(|i| json!({"time": t, "node": "n", "message": format!("same {i}")}))
        .collect();
    assert_eq!(s.ingest("", &lines).await.0, 200);
    let paged = s.all("q=same", 3).await;
    let seqs: Vec<u64> = paged.iter().map(|r| r["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=50).rev().collect::<Vec<_>>());
}

#[tokio::test]
async fn bad_queries_and_bad_lines_get_400_naming_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let s = StoreProcess::start(&dir.path().join("data"), &[]).await;
    for (params, says) in [
        ("q=(unclosed", "q: Syntax Error"),
        ("q=nosuchfield:x", "Field does not exist: 'nosuchfield'"),
        ("limit=0", "limit:"),
        ("limit=lots", "limit:"),
        (
            "start=yesterday",
            "start: \"yesterday\" is not an RFC 3339 time",
        ),
        ("since=soon", "since:"),
        (
            "stream=stdin",
            "stream: \"stdin\" is neither stdout nor stderr",
        ),
        ("cursor=abc", "cursor:"),
        ("namespase=x", "namespase: unknown parameter"),
        ("after_seq=3", "after_seq: only /api/v1/tail"),
    ] {
        let (status, v) = s.get(&format!("/api/v1/query?{params}")).await;
        assert_eq!(status, 400, "{params}: {v}");
        let msg = v["error"].as_str().unwrap();
        assert!(
            msg.contains(says),
            "{params}: {msg:?} does not say {says:?}"
        );
    }
    let (status, v) = s.get("/api/v1/tail?q=(").await;
    assert_eq!(status, 400, "{v}");
    // kubectl --request-timeout adds `timeout`; the API server's proxy
    // passes it on (the add-on checks got 400s for it).
    let (status, v) = s.get("/api/v1/query?q=fine&timeout=30s").await;
    assert_eq!(status, 200, "{v}");

    let (status, v) = s
        .ingest(
            "",
            &[
                json!({"message": "fine"}),
                json!({"message": "bad", "stream": "stdin"}),
            ],
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(
        v["error"],
        "line 2: field `stream`: \"stdin\" is neither stdout nor stderr"
    );
    let (status, v) = s.ingest("?source=a", &[json!({"message": "m"})]).await;
    assert_eq!(status, 400, "{v}");
    assert!(v["error"]
        .as_str()
        .unwrap()
        .contains("source and batch go together"));
    // Nothing of a refused body was stored.
    assert!(s.all("q=fine", 10).await.is_empty());
}

#[tokio::test]
async fn live_tail_streams_matching_records_after_a_position() {
    use http_body_util::BodyExt;
    let dir = tempfile::tempdir().unwrap();
    let s = StoreProcess::start(&dir.path().join("data"), &[]).await;
    s.ingest("", &[json!({"message": "before the tail", "node": "a"})])
        .await;
    let last_seq = s.query("limit=1").await["last_seq"].as_u64().unwrap();
    assert_eq!(last_seq, 1);
    let req = hyper::Request::get(format!(
        "http://{}/api/v1/tail?q=wanted&node=a&after_seq={last_seq}",
        s.http
    ))
    .body(http_body_util::Full::new(bytes::Bytes::new()))
    .unwrap();
    let res = s.client.request(req).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "application/x-ndjson");
    let mut body = res.into_body();
    for batch in 0..3 {
        let lines: Vec<Value> = (0..4)
            .map(|i| {
                json!({"message": format!("{} {batch}.{i}", if i % 2 == 0 { "wanted" } else { "other" }),
                       "node": if i == 2 { "b" } else { "a" }})
            })
            .collect();
        assert_eq!(s.ingest("", &lines).await.0, 200);
    }
    let mut got = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while got.lines().filter(|l| !l.is_empty()).count() < 3 {
        let frame = tokio::time::timeout_at(deadline, body.frame())
            .await
            .expect("tail lines within 10 s")
            .unwrap()
            .unwrap();
        if let Ok(data) = frame.into_data() {
            got.push_str(std::str::from_utf8(&data).unwrap());
        }
    }
    let records: Vec<Value> = got
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        messages(&records),
        ["wanted 0.0", "wanted 1.0", "wanted 2.0"]
    );
    let seqs: Vec<u64> = records.iter().map(|r| r["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]) && seqs[0] > last_seq);
    // Nothing else arrives.
    let more = tokio::time::timeout(Duration::from_millis(700), body.frame()).await;
    assert!(more.is_err(), "unexpected tail data: {more:?}");

    // TCP JSON lines (machined's way) reach the tail too.
    use tokio::io::AsyncWriteExt;
    let mut tcp = tokio::net::TcpStream::connect(s.tcp).await.unwrap();
    tcp.write_all(
        b"{\"node\":\"a\",\"service\":\"apid\",\"message\":\"wanted from tcp\"}\nnot json\n",
    )
    .await
    .unwrap();
    tcp.shutdown().await.unwrap();
    let frame = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let f = body.frame().await.unwrap().unwrap();
            if let Ok(d) = f.into_data() {
                if !d.iter().all(|b| *b == b'\n') {
                    return d;
                }
            }
        }
    })
    .await
    .expect("the TCP line within 10 s");
    let r: Value = serde_json::from_slice(frame.trim_ascii()).unwrap();
    assert_eq!(
        (r["service"].as_str(), r["message"].as_str()),
        (Some("apid"), Some("wanted from tcp"))
    );
    s.stop();
}

#[tokio::test]
async fn a_restart_keeps_records_sequence_and_batch_memory() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let s = StoreProcess::start(&data, &[]).await;
    let lines: Vec<Value> = (0..100)
        .map(|i| json!({"message": format!("kept {i}"), "node": "n"}))
        .collect();
    assert_eq!(s.ingest("?source=c1&batch=7", &lines).await.0, 200);
    s.stop();
    let s = StoreProcess::start(&data, &[]).await;
    assert_eq!(s.all("q=kept", 1000).await.len(), 100);
    // The same batch again (its ack was lost, say): recognised, not stored twice.
    let (status, ack) = s.ingest("?source=c1&batch=7", &lines).await;
    assert_eq!(
        (status, ack["duplicate"].as_bool()),
        (200, Some(true)),
        "{ack}"
    );
    assert_eq!(s.all("q=kept", 1000).await.len(), 100);
    let (_, ack) = s
        .ingest("?source=c1&batch=8", &[json!({"message": "kept new"})])
        .await;
    assert_eq!(ack["accepted"], 1);
    let newest = s.query("q=kept&limit=1").await;
    assert_eq!(newest["records"][0]["seq"], 101);
    s.stop();
}

#[tokio::test]
async fn retention_by_age_deletes_old_records() {
    let dir = tempfile::tempdir().unwrap();
    let s = StoreProcess::start(
        &dir.path().join("data"),
        &["--max-age=1h", "--retention-interval=200ms"],
    )
    .await;
    let mut lines = Vec::new();
    for i in 0..20 {
        lines.push(json!({"time": ago(2 * 3600 + i, 0), "message": format!("ancient {i}")}));
        lines.push(json!({"time": ago(60 + i, 0), "message": format!("recent {i}")}));
    }
    assert_eq!(s.ingest("", &lines).await.0, 200);
    eventually(10, "old records deleted", || async {
        s.all("q=ancient", 100).await.is_empty().then_some(())
    })
    .await;
    assert_eq!(s.all("q=recent", 100).await.len(), 20);
    assert!(s.log_text().contains("older than --max-age"));
    s.stop();
}

/// A batch of `n` records of about 1 KiB each, `age_secs` old.
fn kib_lines(tag: &str, n: usize, age_secs: i64) -> Vec<Value> {
    (0..n)
        .map(|i| {
            // Varied text, so compression does not make it vanish.
            let words: String = (0..120)
                .map(|w| format!("{:x} ", (i * 7919 + w * 104729) % 1000003))
                .collect();
            json!({"time": ago(age_secs, i as i64), "message": format!("{tag} {i} {words}")})
        })
        .collect()
}

#[tokio::test]
async fn retention_by_size_deletes_the_oldest_first() {
    let dir = tempfile::tempdir().unwrap();
    let s = StoreProcess::start(
        &dir.path().join("data"),
        &[
            "--max-size=400KiB",
            "--protect-recent=0s",
            "--retention-interval=200ms",
        ],
    )
    .await;
    // Ten batches of ~200 KiB of index each, the first the oldest.
    for b in 0..10 {
        let (status, v) = s
            .ingest("", &kib_lines(&format!("b{b}"), 100, 3600 - b * 60))
            .await;
        assert_eq!(status, 200, "batch {b}: {v}");
    }
    let h = eventually(20, "the store back under --max-size", || async {
        let h = s.health().await;
        (h["live_bytes"].as_u64().unwrap() <= 400 * 1024).then_some(h)
    })
    .await;
    assert_eq!(h["accepting"], true, "{h}");
    assert!(
        s.all("q=b0", 2000).await.is_empty(),
        "the oldest batch is gone"
    );
    assert_eq!(
        s.all("q=b9", 2000).await.len(),
        100,
        "the newest batch is whole"
    );
    let left = s.all("q=", 2000).await;
    let oldest_left = left.last().unwrap()["message"]
        .as_str()
        .unwrap()
        .to_string();
    let first_kept_batch: i64 = oldest_left[1..].split(' ').next().unwrap().parse().unwrap();
    // Whatever is kept is a suffix of the batches in time order.
    for b in first_kept_batch + 1..10 {
        assert_eq!(
            s.all(&format!("q=b{b}"), 2000).await.len(),
            100,
            "batch {b}"
        );
    }
    eventually(20, "the files of deleted records removed", || async {
        let h = s.health().await;
        (h["bytes"].as_u64().unwrap() <= 500 * 1024).then_some(())
    })
    .await;
    s.stop();
}

#[tokio::test]
async fn at_the_size_limit_with_only_recent_records_writes_are_refused_and_queries_work() {
    let dir = tempfile::tempdir().unwrap();
    let s = StoreProcess::start(
        &dir.path().join("data"),
        &["--max-size=200KiB", "--retention-interval=200ms"],
    )
    .await;
    let mut refused = None;
    for b in 0..60 {
        let (status, v) = s.ingest("", &kib_lines(&format!("r{b}"), 20, 5)).await;
        if status == 507 {
            refused = Some(v);
            break;
        }
        assert_eq!(status, 200, "batch {b}: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let v = refused.expect("the store refused data at its size limit");
    let msg = v["error"].as_str().unwrap();
    assert!(
        msg.contains("size limit") && msg.contains("--protect-recent"),
        "{msg}"
    );
    let h = s.health().await;
    assert_eq!(h["accepting"], false, "{h}");
    // Queries still work, and nothing was deleted.
    let all = s.all("q=", 5000).await;
    assert!(!all.is_empty());
    assert_eq!(s.all("q=r0", 100).await.len(), 20);
    // The TCP listener drops (and reports) lines while refusing.
    use tokio::io::AsyncWriteExt;
    let mut tcp = tokio::net::TcpStream::connect(s.tcp).await.unwrap();
    tcp.write_all(b"{\"message\":\"dropped while full\"}\n")
        .await
        .unwrap();
    tcp.shutdown().await.unwrap();
    eventually(10, "the refused TCP line reported", || async {
        s.log_text().contains("refused=1").then_some(())
    })
    .await;
    assert!(s.all("q=dropped", 10).await.is_empty());
    s.stop();
}

/// Unmounts on drop.
struct Mount(std::path::PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = rustix::mount::unmount(&self.0, rustix::mount::UnmountFlags::DETACH);
    }
}

#[tokio::test]
async fn a_full_disk_refuses_writes_with_507_and_queries_still_work() {
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("small");
    std::fs::create_dir(&mnt).unwrap();
    if !rustix::process::geteuid().is_root() {
        eprintln!("SKIP a_full_disk_refuses_writes: needs root to mount a 2 MiB tmpfs");
        return;
    }
    if let Err(e) = rustix::mount::mount(
        "tmpfs",
        &mnt,
        "tmpfs",
        rustix::mount::MountFlags::empty(),
        Some(c"size=2m"),
    ) {
        eprintln!("SKIP a_full_disk_refuses_writes: cannot mount a tmpfs here ({e})");
        return;
    }
    let _mount = Mount(mnt.clone());
    // The harness sets no free-space floor: the disk itself runs out
    // (ENOSPC in a commit).
    let s = StoreProcess::start(&mnt.join("data"), &[]).await;
    let mut refused = None;
    for b in 0..100 {
        let (status, v) = s.ingest("", &kib_lines(&format!("d{b}"), 20, 5)).await;
        if status == 507 {
            refused = Some(v);
            break;
        }
        assert_eq!(status, 200, "batch {b}: {v}");
    }
    let v = refused.expect("a full disk refuses data");
    let msg = v["error"].as_str().unwrap();
    assert!(msg.contains("space"), "{msg}");
    eprintln!("refused with: {msg}");
    // What was acknowledged is there, and queries work.
    assert_eq!(s.all("q=d0", 100).await.len(), 20);
    let (status, _) = s.get("/api/v1/query?q=d1").await;
    assert_eq!(status, 200);
    let h = s.health().await;
    assert_eq!(h["accepting"], false, "{h}");
    s.stop();
}
