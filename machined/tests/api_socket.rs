//! machined's API server, started in-process on a temporary unix socket
//! and called with the generated tonic client, the way apid calls it.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use api::machine::machine_service_client::MachineServiceClient;
use api::machine::resource_event::Kind as EventKind;
use api::machine::*;
use host::cmdline::Cmdline;
use hyper_util::rt::TokioIo;
use machined::shutdown::PowerAction;
use machined::state::Node;
use runtime::supervisor::logbuf::LogRing;
use runtime::supervisor::process::ProcessRunner;
use runtime::supervisor::restart::{RestartPolicy, RestartRunner};
use runtime::supervisor::{Service, State, Supervisor};
use tokio::sync::mpsc;
use tonic::transport::Channel;
use tonic::{Code, Request};

type Client = MachineServiceClient<Channel>;

struct Harness {
    _dir: tempfile::TempDir,
    client: Client,
    node: Arc<Node>,
    sup: Arc<Supervisor>,
    ring: Arc<LogRing>,
    power: mpsc::Receiver<PowerAction>,
}

async fn connect(path: PathBuf) -> Client {
    let channel = tonic::transport::Endpoint::try_from("http://machined.invalid")
        .unwrap()
        .connect_with_connector(tower::service_fn(move |_| {
            let path = path.clone();
            async move {
                Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(path).await?))
            }
        }))
        .await
        .unwrap();
    MachineServiceClient::new(channel)
}

async fn start() -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("run/machined.sock");
    let (tx, power) = mpsc::channel(1);
    let sup = Supervisor::new();
    let ring = Arc::new(LogRing::new(4096));
    ring.push("machined: hello");
    let node = Arc::new(Node::new(
        Cmdline::parse("cairn.slot=A"),
        sup.clone(),
        ring.clone(),
        tx,
    ));
    node.set_hostname("test-node");
    node.set_maintenance(true);
    machined::pid1::start_controllers(&node);
    let listener = machined::api::bind(&sock, None).unwrap();
    let mode = std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o660);
    let (n, p) = (node.clone(), sock.clone());
    tokio::spawn(async move { machined::api::serve(n, listener, &p).await });
    Harness {
        client: connect(sock).await,
        _dir: dir,
        node,
        sup,
        ring,
        power,
    }
}

fn sh(script: &str) -> ProcessRunner {
    ProcessRunner::new("/bin/sh").args(["-c", script])
}

/// Waits until the service runs again as another process than `old`.
async fn wait_new_pid(h: &runtime::supervisor::ServiceHandle, old: i32) {
    let mut rx = h.status.subscribe();
    tokio::time::timeout(
        Duration::from_secs(20),
        rx.wait_for(|s| s.state == State::Running && s.pid.is_some_and(|p| p != old)),
    )
    .await
    .unwrap_or_else(|_| panic!("{} never ran again after pid {old}", h.id))
    .unwrap();
}

async fn wait_state(h: &runtime::supervisor::ServiceHandle, want: State) {
    let mut rx = h.status.subscribe();
    tokio::time::timeout(Duration::from_secs(20), rx.wait_for(|s| s.state == want))
        .await
        .unwrap_or_else(|_| panic!("{} never became {want}", h.id))
        .unwrap();
}

async fn collect<T>(mut s: tonic::Streaming<T>) -> Vec<T> {
    let mut out = Vec::new();
    while let Some(m) = s.message().await.unwrap() {
        out.push(m);
    }
    out
}

#[tokio::test]
async fn version_services_and_logs() {
    let mut h = start().await;
    let c = &mut h.client;
    let v = c.version(()).await.unwrap().into_inner();
    assert_eq!(v.hostname, "test-node");
    assert_eq!(v.booted_slot, "A");
    assert!(v.maintenance);

    let svc = h
        .sup
        .start(Service::new("echoer", sh("echo from-echoer")))
        .unwrap();
    wait_state(&svc, State::Finished).await;
    let list = c.service_list(()).await.unwrap().into_inner();
    assert_eq!(list.services[0].id, "echoer");
    assert_eq!(list.services[0].state, "Finished");

    let logs = collect(
        c.logs(LogsRequest {
            id: "echoer".into(),
            follow: false,
            tail_lines: -1,
            kubernetes: false,
        })
        .await
        .unwrap()
        .into_inner(),
    )
    .await;
    assert_eq!(
        String::from_utf8(logs[0].bytes.clone()).unwrap(),
        "from-echoer\n"
    );

    // Following machined's own ring sees new lines.
    let mut follow = c
        .logs(LogsRequest {
            id: "machined".into(),
            follow: true,
            tail_lines: 1,
            kubernetes: false,
        })
        .await
        .unwrap()
        .into_inner();
    let first = follow.message().await.unwrap().unwrap().bytes;
    assert!(String::from_utf8_lossy(&first).ends_with('\n'));
    h.ring.push("machined: later");
    let mut seen = String::new();
    while !seen.contains("machined: later") {
        let m = tokio::time::timeout(Duration::from_secs(5), follow.message())
            .await
            .expect("the new line")
            .unwrap()
            .unwrap();
        seen.push_str(&String::from_utf8_lossy(&m.bytes));
    }

    let err = c
        .logs(LogsRequest {
            id: "nope".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert!(
        err.message().contains("cairnctl services"),
        "{}",
        err.message()
    );
}

#[tokio::test]
async fn service_start_stop_restart() {
    let mut h = start().await;
    let c = &mut h.client;
    let svc = h
        .sup
        .start(Service::new("sleeper", sh("exec sleep 1000")))
        .unwrap();
    wait_state(&svc, State::Running).await;
    let first_pid = svc.snapshot().pid.unwrap();

    let err = c
        .service_start(ServiceRequest {
            id: "sleeper".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("already running"));

    let r = c
        .service_restart(ServiceRequest {
            id: "sleeper".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.message, "service sleeper restarting");
    wait_new_pid(&svc, first_pid).await;

    let r = c
        .service_stop(ServiceRequest {
            id: "sleeper".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.message, "service sleeper stopped");
    assert_eq!(svc.snapshot().state, State::Stopped);
    c.service_start(ServiceRequest {
        id: "sleeper".into(),
    })
    .await
    .unwrap();
    wait_state(&svc, State::Running).await;

    let err = c
        .service_stop(ServiceRequest { id: "apid".into() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("restart"), "{}", err.message());
    for e in [
        c.service_stop(ServiceRequest { id: "ghost".into() })
            .await
            .unwrap_err(),
        c.service_restart(ServiceRequest { id: "ghost".into() })
            .await
            .unwrap_err(),
        c.service_start(ServiceRequest { id: "ghost".into() })
            .await
            .unwrap_err(),
    ] {
        assert_eq!(e.code(), Code::NotFound, "{e:?}");
    }
    h.sup.stop_all().await;
}

#[tokio::test]
async fn service_kill_signals_the_process_and_the_supervisor_restarts_it() {
    let mut h = start().await;
    let c = &mut h.client;
    let svc = h
        .sup
        .start(Service::new(
            "crashy",
            RestartRunner::new(sh("exec sleep 1000"), RestartPolicy::Always),
        ))
        .unwrap();
    wait_state(&svc, State::Running).await;
    let first_pid = svc.snapshot().pid.unwrap();

    let kill = |id: &str, signal: &str| ServiceKillRequest {
        id: id.into(),
        signal: signal.into(),
    };
    let r = c
        .service_kill(kill("crashy", ""))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        r.message,
        format!("service crashy: sent SIGKILL to pid {first_pid}")
    );
    wait_new_pid(&svc, first_pid).await;
    let status = svc.snapshot();
    assert_eq!(status.restarts, 1);
    assert!(
        status
            .events
            .iter()
            .any(|e| e.state == State::Failed && e.message.contains("KILL")),
        "the crash is in the events: {:?}",
        status.events
    );

    let second_pid = svc.snapshot().pid.unwrap();
    let r = c
        .service_kill(kill("crashy", "sigterm"))
        .await
        .unwrap()
        .into_inner();
    assert!(
        r.message.contains(&format!("SIGTERM to pid {second_pid}")),
        "{}",
        r.message
    );

    let e = c.service_kill(kill("crashy", "STOP")).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("\"STOP\""), "{}", e.message());
    let e = c.service_kill(kill("ghost", "")).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    h.sup.stop("crashy").await.unwrap();
    let e = c.service_kill(kill("crashy", "")).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(
        e.message().contains("no running process"),
        "{}",
        e.message()
    );
    h.sup.stop_all().await;
}

fn generated_config() -> config::MachineConfig {
    use config::generate::{generate_configs, GenerateInput};
    let input = GenerateInput::new(
        "demo".parse().unwrap(),
        "https://10.5.0.2:6443".parse().unwrap(),
        config::SecretsBundle::generate().unwrap(),
    );
    generate_configs(&input).unwrap().0
}

fn as_role<T>(msg: T, role: Option<&str>) -> Request<T> {
    let mut r = Request::new(msg);
    if let Some(role) = role {
        r.metadata_mut()
            .insert(machined::api::ROLE_METADATA, role.parse().unwrap());
    }
    r
}

#[tokio::test]
async fn resources_get_list_watch_and_redaction() {
    let mut h = start().await;
    let c = &mut h.client;
    let get = |t: &str, id: &str| ResourceGetRequest {
        namespace: String::new(),
        r#type: t.into(),
        id: id.into(),
    };

    let host = c
        .resource_get(get("hostname", "hostname"))
        .await
        .unwrap()
        .into_inner();
    let m = host.metadata.unwrap();
    assert_eq!(
        (m.namespace.as_str(), m.r#type.as_str(), m.version),
        ("network", "hostname", 1)
    );
    assert_eq!(host.spec, "hostname: test-node\n");

    let status = c
        .resource_get(get("machinestatus", "machine"))
        .await
        .unwrap()
        .into_inner();
    assert!(
        status.spec.contains("stage: maintenance"),
        "{}",
        status.spec
    );

    // Errors name what is wrong.
    let e = c.resource_get(get("widgets", "x")).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("machineconfig"), "{}", e.message());
    let e = c.resource_get(get("hostname", "nope")).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    assert!(e.message().contains("cairnctl get hostname"));
    let e = c
        .resource_list(ResourceListRequest {
            namespace: "runtime".into(),
            r#type: "links".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    assert!(e.message().contains("\"network\""), "{}", e.message());

    // Static pods: a type with nothing in it yet.
    let sp = c
        .resource_list(ResourceListRequest {
            namespace: String::new(),
            r#type: "staticpods".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(sp.resources.is_empty());

    // The network controller reads the host: lo is there.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let links = c
            .resource_list(ResourceListRequest {
                namespace: "network".into(),
                r#type: "links".into(),
            })
            .await
            .unwrap()
            .into_inner();
        if links
            .resources
            .iter()
            .any(|r| r.metadata.as_ref().unwrap().id == "lo")
        {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no lo link");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Watch: the current state, the marker, then changes.
    let mut w = c
        .resource_watch(ResourceWatchRequest {
            namespace: String::new(),
            r#type: "hostname".into(),
            id: String::new(),
            bootstrap: true,
        })
        .await
        .unwrap()
        .into_inner();
    let e = w.message().await.unwrap().unwrap();
    assert_eq!(e.kind(), EventKind::Created);
    assert_eq!(e.resource.unwrap().spec, "hostname: test-node\n");
    let e = w.message().await.unwrap().unwrap();
    assert_eq!(e.kind(), EventKind::Bootstrapped);
    assert!(e.resource.is_none());
    h.node.set_hostname("renamed");
    let e = tokio::time::timeout(Duration::from_secs(5), w.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(e.kind(), EventKind::Updated);
    let r = e.resource.unwrap();
    assert_eq!(r.metadata.unwrap().version, 2);
    assert_eq!(r.spec, "hostname: renamed\n");

    // The machine config: secrets only for os:admin.
    let cfg = generated_config();
    let token = cfg.machine.token.as_str().to_string();
    h.node.set_running_config(cfg, "a test");
    for role in [None, Some("os:reader"), Some("os:operator")] {
        let list = c
            .resource_list(as_role(
                ResourceListRequest {
                    namespace: String::new(),
                    r#type: "machineconfig".into(),
                },
                role,
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(list.resources.len(), 1);
        let spec = &list.resources[0].spec;
        assert!(
            !spec.contains("PRIVATE KEY") && !spec.contains(&token),
            "{role:?} saw secrets"
        );
        assert!(spec.contains("***"));
        let one = c
            .resource_get(as_role(get("machineconfig", "running"), role))
            .await
            .unwrap()
            .into_inner();
        assert!(
            !one.spec.contains("PRIVATE KEY"),
            "{role:?} saw a key via get"
        );
    }
    let admin = c
        .resource_get(as_role(get("machineconfig", "running"), Some("os:admin")))
        .await
        .unwrap()
        .into_inner();
    assert!(admin.spec.contains("PRIVATE KEY") && admin.spec.contains(&token));
    // Watching as a reader is redacted too.
    let mut w = c
        .resource_watch(as_role(
            ResourceWatchRequest {
                namespace: "config".into(),
                r#type: "machineconfig".into(),
                id: "running".into(),
                bootstrap: true,
            },
            Some("os:reader"),
        ))
        .await
        .unwrap()
        .into_inner();
    let e = w.message().await.unwrap().unwrap();
    assert!(!e.resource.unwrap().spec.contains("PRIVATE KEY"));
}

#[tokio::test]
async fn files_processes_memory_mounts_disks() {
    let mut h = start().await;
    let c = &mut h.client;
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
    std::fs::write(dir.path().join("a/b/file"), "contents").unwrap();
    let root = dir.path().to_str().unwrap().to_string();

    let shallow = collect(
        c.list_files(ListFilesRequest {
            root: root.clone(),
            recurse: false,
            recursion_depth: 0,
        })
        .await
        .unwrap()
        .into_inner(),
    )
    .await;
    let names: Vec<_> = shallow.iter().map(|f| f.relative_name.as_str()).collect();
    assert_eq!(names, vec![".", "a"]);
    let deep = collect(
        c.list_files(ListFilesRequest {
            root: root.clone(),
            recurse: true,
            recursion_depth: 0,
        })
        .await
        .unwrap()
        .into_inner(),
    )
    .await;
    assert!(deep
        .iter()
        .any(|f| f.relative_name == "a/b/file" && f.size == 8));
    let e = c
        .list_files(ListFilesRequest {
            root: "/nonexistent/x".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);

    let data = collect(
        c.read_file(ReadFileRequest {
            path: format!("{root}/a/b/file"),
        })
        .await
        .unwrap()
        .into_inner(),
    )
    .await;
    assert_eq!(data.concat_bytes(), b"contents");
    let e = c
        .read_file(ReadFileRequest { path: root.clone() })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("is a directory"), "{}", e.message());
    let e = c
        .read_file(ReadFileRequest {
            path: "/proc/self/mem".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);

    let procs = c.processes(()).await.unwrap().into_inner().processes;
    let me = procs
        .iter()
        .find(|p| p.pid == std::process::id() as i32)
        .expect("this process");
    assert!(me.resident_memory > 0 && me.threads >= 1);

    let mem = c.memory(()).await.unwrap().into_inner();
    assert!(mem.mem_total > 0 && mem.mem_free <= mem.mem_total);

    let mounts = c.mounts(()).await.unwrap().into_inner().mounts;
    assert!(mounts.iter().any(|m| m.target == "/"));
    assert!(mounts.iter().any(|m| m.filesystem == "proc" && m.size == 0));

    let disks = c.disks(()).await.unwrap().into_inner().disks;
    assert!(disks.iter().all(|d| d.device.starts_with("/dev/")));
}

trait ConcatBytes {
    fn concat_bytes(&self) -> Vec<u8>;
}
impl ConcatBytes for Vec<Data> {
    fn concat_bytes(&self) -> Vec<u8> {
        self.iter().flat_map(|d| d.bytes.clone()).collect()
    }
}

#[tokio::test]
async fn events_dmesg_power_and_preconditions() {
    let mut h = start().await;
    let c = &mut h.client;
    // set_maintenance(true) recorded "stage maintenance" already.
    let svc = h.sup.start(Service::new("brief", sh("exit 0"))).unwrap();
    wait_state(&svc, State::Finished).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let events = loop {
        let all = collect(
            c.events(EventsRequest {
                tail_events: -1,
                follow: false,
            })
            .await
            .unwrap()
            .into_inner(),
        )
        .await;
        if all.iter().any(|e| e.message == "brief: Finished") {
            break all;
        }
        assert!(tokio::time::Instant::now() < deadline, "{all:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(events[0].r#type, "stage");
    assert_eq!(events[0].message, "stage maintenance");
    assert_eq!(events[0].node, "test-node");
    assert!(events.windows(2).all(|w| w[0].id < w[1].id));
    let last = collect(
        c.events(EventsRequest {
            tail_events: 1,
            follow: false,
        })
        .await
        .unwrap()
        .into_inner(),
    )
    .await;
    assert_eq!(last.len(), 1);
    assert_eq!(last[0].id, events.last().unwrap().id);

    let mut follow = c
        .events(EventsRequest {
            tail_events: 0,
            follow: true,
        })
        .await
        .unwrap()
        .into_inner();
    h.node
        .events
        .record(runtime::resources::specs::EventType::Config, "a new event");
    let e = tokio::time::timeout(Duration::from_secs(5), follow.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(
        (e.r#type.as_str(), e.message.as_str()),
        ("config", "a new event")
    );

    // dmesg needs /dev/kmsg (root); the stream ends without follow.
    match c.dmesg(DmesgRequest::default()).await {
        Ok(s) => {
            let text: String = collect(s.into_inner())
                .await
                .iter()
                .map(|d| String::from_utf8_lossy(&d.bytes).into_owned())
                .collect();
            assert!(text.lines().all(|l| l.starts_with('[')));
        }
        Err(e) => eprintln!("dmesg unavailable here: {e}"),
    }

    // On a node with no config, no disk and no etcd, these say what is
    // missing and what to do.
    for (e, says) in [
        (
            c.bootstrap(BootstrapRequest {}).await.unwrap_err(),
            "the node has no machine config yet; `cairnctl apply-config` first",
        ),
        (
            c.reset(ResetRequest::default()).await.unwrap_err(),
            "this node runs live from the ISO and has no system disk to wipe",
        ),
        (
            c.rollback(()).await.unwrap_err(),
            "this node runs live from the ISO and has no boot slots",
        ),
        (
            c.etcd_member_list(()).await.unwrap_err(),
            "etcd is not running on this node",
        ),
    ] {
        assert_eq!(e.code(), Code::FailedPrecondition, "{}", e.message());
        assert!(e.message().starts_with(says), "{}", e.message());
    }

    // Reboot: the reply comes first, then the boot sequence is asked.
    c.reboot(RebootRequest::default()).await.unwrap();
    let asked = tokio::time::timeout(Duration::from_secs(5), h.power.recv())
        .await
        .unwrap();
    assert_eq!(asked, Some(PowerAction::Reboot));
    let e = c.shutdown(ShutdownRequest::default()).await.unwrap_err();
    assert_eq!(e.code(), Code::Unavailable);
}
