//! Supervisor tests with real child processes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::backoff::Backoff;
use super::process::ProcessRunner;
use super::restart::{RestartPolicy, RestartRunner};
use super::*;

fn sh(script: &str) -> ProcessRunner {
    ProcessRunner::new("/bin/sh").args(["-c", script])
}

async fn wait_state(h: &ServiceHandle, f: impl Fn(&Status) -> bool) -> Status {
    let mut rx = h.status.subscribe();
    let s = tokio::time::timeout(Duration::from_secs(20), rx.wait_for(|s| f(s)))
        .await
        .expect("timed out waiting for service state")
        .unwrap()
        .clone();
    s
}

#[tokio::test]
async fn killed_service_restarts_with_growing_backoff() {
    let sup = Supervisor::new();
    let runner = RestartRunner::new(sh("exec sleep 1000"), RestartPolicy::Always).backoff(
        Backoff::new(Duration::from_millis(200), Duration::from_secs(5)),
        Duration::from_secs(60),
    );
    let h = sup.start(Service::new("crashy", runner)).unwrap();

    let mut pid = wait_state(&h, |s| s.state == State::Running && s.pid.is_some())
        .await
        .pid
        .unwrap();
    let mut gaps = Vec::new();
    for _ in 0..3 {
        let killed_at = Instant::now();
        kill(Pid::from_raw(pid), Signal::SIGKILL).unwrap();
        let old = pid;
        let s = wait_state(&h, |s| {
            s.state == State::Running && s.pid.is_some_and(|p| p != old)
        })
        .await;
        gaps.push(killed_at.elapsed());
        pid = s.pid.unwrap();
    }
    assert!(gaps[0] >= Duration::from_millis(200), "{gaps:?}");
    assert!(gaps[1] >= Duration::from_millis(400), "{gaps:?}");
    assert!(gaps[2] >= Duration::from_millis(800), "{gaps:?}");
    assert!(
        gaps[0] < gaps[1] && gaps[1] < gaps[2],
        "intervals must grow: {gaps:?}"
    );
    let status = h.snapshot();
    assert_eq!(status.restarts, 3);
    assert!(status
        .events
        .iter()
        .any(|e| e.state == State::Failed && e.message.contains("SIGKILL")));
    sup.stop_all().await;
    assert_eq!(h.snapshot().state, State::Stopped);
}

#[tokio::test]
async fn dependents_wait_for_a_healthy_dependency() {
    let sup = Supervisor::new();
    static HEALTHY: AtomicBool = AtomicBool::new(false);
    // The dependent registers first: order of start() must not matter.
    let b = sup
        .start(Service::new("b", sh("exec sleep 1000")).depends_on("a"))
        .unwrap();
    let check = HealthCheck::new(
        Duration::from_millis(50),
        Duration::from_secs(1),
        || async {
            if HEALTHY.load(Ordering::SeqCst) {
                Ok(())
            } else {
                Err("not yet".to_string())
            }
        },
    )
    .startup_grace(Duration::from_millis(300));
    let a = sup
        .start(Service::new("a", sh("exec sleep 1000")).health(check))
        .unwrap();

    // Within the startup grace a failure is "starting", not Failing.
    let s = wait_state(&a, |s| {
        s.state == State::Running && s.health_message.starts_with("starting")
    })
    .await;
    assert_eq!(s.health, Health::Unknown);
    assert_eq!(s.health_message, "starting: not yet");
    let s = wait_state(&a, |s| s.health == Health::Failing).await;
    assert_eq!(s.health_message, "not yet");
    assert_eq!(
        b.snapshot().state,
        State::Waiting,
        "b started before a was healthy"
    );

    HEALTHY.store(true, Ordering::SeqCst);
    wait_state(&a, |s| s.health == Health::Ok).await;
    wait_state(&b, |s| s.state == State::Running).await;

    assert_eq!(sup.start_order(), vec!["a".to_string(), "b".to_string()]);
    sup.stop_all().await;
    // b was stopped first: its Stopped event is older than a's.
    let stopped_at = |h: &ServiceHandle| {
        h.snapshot()
            .events
            .iter()
            .rev()
            .find(|e| e.state == State::Stopped)
            .map(|e| e.time)
            .unwrap()
    };
    assert!(stopped_at(&b) <= stopped_at(&a));
}

#[tokio::test]
async fn log_ring_captures_stdout_and_stderr() {
    let sup = Supervisor::new();
    let h = sup
        .start(Service::new(
            "talker",
            sh("echo to-stdout; echo to-stderr >&2; printf 'no-newline'"),
        ))
        .unwrap();
    let s = wait_state(&h, |s| s.state == State::Finished).await;
    assert!(s.pid.is_none());
    let logs = h.logs.contents();
    assert!(logs.contains("to-stdout\n"), "{logs}");
    assert!(logs.contains("to-stderr\n"), "{logs}");
    assert!(logs.contains("no-newline\n"), "{logs}");
}

#[tokio::test]
async fn failing_exit_is_reported_and_on_failure_policy_retries() {
    let sup = Supervisor::new();
    let h = sup.start(Service::new("fails", sh("exit 3"))).unwrap();
    let s = wait_state(&h, |s| s.state == State::Failed).await;
    assert_eq!(s.message, "exited with code 3");

    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("ran-once");
    // Fails the first time, succeeds the second.
    let script = format!(
        "if [ -e {m} ]; then exit 0; else touch {m}; exit 1; fi",
        m = marker.display()
    );
    let runner = RestartRunner::new(sh(&script), RestartPolicy::OnFailure).backoff(
        Backoff::new(Duration::from_millis(50), Duration::from_secs(1)),
        Duration::from_secs(60),
    );
    let h = sup.start(Service::new("flaky", runner)).unwrap();
    let s = wait_state(&h, |s| s.state == State::Finished).await;
    assert_eq!(s.restarts, 1);
}

#[tokio::test]
async fn stop_escalates_to_sigkill() {
    let sup = Supervisor::new();
    let mut runner = sh("trap '' TERM; echo ready; while :; do sleep 0.1; done");
    runner.stop_timeout = Duration::from_millis(300);
    let h = sup.start(Service::new("stubborn", runner)).unwrap();
    wait_state(&h, |s| s.state == State::Running).await;
    // Wait until the trap is installed.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !h.logs.contents().contains("ready") && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let t = Instant::now();
    sup.stop("stubborn").await.unwrap();
    assert!(t.elapsed() >= Duration::from_millis(300));
    assert_eq!(h.snapshot().state, State::Stopped);
}

#[tokio::test]
async fn condition_and_spawn_failures() {
    let sup = Supervisor::new();
    let h = sup
        .start(
            Service::new("never", sh("exit 0")).condition(Condition::file_exists(
                "/nonexistent/cairn-marker",
                Duration::from_millis(200),
            )),
        )
        .unwrap();
    let s = wait_state(&h, |s| s.state == State::Skipped).await;
    assert!(s.message.contains("did not appear"), "{}", s.message);

    let h = sup
        .start(Service::new(
            "missing",
            ProcessRunner::new("/nonexistent/bin"),
        ))
        .unwrap();
    let s = wait_state(&h, |s| s.state == State::Failed).await;
    assert!(
        s.message.contains("cannot start /nonexistent/bin"),
        "{}",
        s.message
    );

    assert!(matches!(
        sup.start(Service::new("missing", sh("true"))),
        Err(SupervisorError::AlreadyRegistered(_))
    ));
}

#[tokio::test]
async fn pre_and_post_hooks_run_around_the_service() {
    let sup = Supervisor::new();
    let dir = tempfile::tempdir().unwrap();
    let pre_file = dir.path().join("pre");
    let post_file = dir.path().join("post");
    let (p1, p2) = (pre_file.clone(), post_file.clone());
    let svc = Service::new("hooked", sh(&format!("test -e {}", pre_file.display())))
        .pre(std::sync::Arc::new(move || {
            let p = p1.clone();
            Box::pin(async move { Ok(std::fs::write(p, "x")?) })
        }))
        .post(std::sync::Arc::new(move || {
            let p = p2.clone();
            Box::pin(async move { Ok(std::fs::write(p, "x")?) })
        }));
    let h = sup.start(svc).unwrap();
    // Finished (not Failed) proves the pre hook ran before the process.
    wait_state(&h, |s| s.state == State::Finished).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while !post_file.exists() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(post_file.exists());
}

#[tokio::test]
async fn passes_files_at_fixed_descriptors_on_every_run() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a");
    let b = dir.path().join("b");
    std::fs::write(&a, "first").unwrap();
    std::fs::write(&b, "second").unwrap();
    let marker = dir.path().join("ran");
    // Reads both descriptors; fails on the first run so it is restarted,
    // and the second run must read the files from the start again.
    let mut runner = sh(&format!(
        "cat <&3; echo; cat <&4; echo; if [ -e {m} ]; then exit 0; fi; touch {m}; exit 1",
        m = marker.display()
    ));
    runner.pass_files = vec![(b, 4), (a, 3)];
    runner.no_new_privs = true;
    let runner = RestartRunner::new(runner, RestartPolicy::OnFailure).backoff(
        Backoff::new(Duration::from_millis(20), Duration::from_secs(1)),
        Duration::from_secs(60),
    );
    let sup = Supervisor::new();
    let h = sup.start(Service::new("fds", runner)).unwrap();
    wait_state(&h, |s| s.state == State::Finished).await;
    assert_eq!(h.logs.contents(), "first\nsecond\nfirst\nsecond\n");
}

#[tokio::test]
async fn missing_passed_file_fails_the_run() {
    let mut runner = sh("true");
    runner.pass_files = vec![("/nonexistent/key.pem".into(), 3)];
    let sup = Supervisor::new();
    let h = sup.start(Service::new("nofile", runner)).unwrap();
    let s = wait_state(&h, |s| s.state == State::Failed).await;
    assert!(
        s.message.contains("cannot open /nonexistent/key.pem"),
        "{}",
        s.message
    );
}

#[tokio::test]
async fn stopped_services_start_again_and_restart_keeps_the_handle() {
    let sup = Supervisor::new();
    let h = sup
        .start(Service::new("again", sh("exec sleep 1000")))
        .unwrap();
    let first = wait_state(&h, |s| s.state == State::Running && s.pid.is_some())
        .await
        .pid
        .unwrap();
    assert!(matches!(
        sup.start_again("again"),
        Err(SupervisorError::AlreadyRunning(_))
    ));
    sup.restart("again").await.unwrap();
    let second = wait_state(&h, |s| {
        s.state == State::Running && s.pid.is_some_and(|p| p != first)
    })
    .await
    .pid
    .unwrap();
    assert_ne!(first, second);
    sup.stop("again").await.unwrap();
    assert_eq!(h.snapshot().state, State::Stopped);
    sup.start_again("again").unwrap();
    wait_state(&h, |s| s.state == State::Running).await;
    // Same handle throughout: one entry, the log ring and history kept.
    assert_eq!(sup.list().len(), 1);
    assert!(std::sync::Arc::ptr_eq(&sup.handle("again").unwrap(), &h));
    assert!(h.snapshot().transitions >= 5);
    assert!(matches!(
        sup.start_again("ghost"),
        Err(SupervisorError::NotFound(_))
    ));
    sup.stop_all().await;
}
