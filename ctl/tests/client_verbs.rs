//! Verbs that talk to nodes, run as a user would (the built binary), in the
//! parts that need no Cairn node: local validation before anything is
//! sent, editing the cairnconfig, and the advice for unreachable nodes.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output};

fn cairnctl(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cairnctl"))
        .args(args)
        .current_dir(dir)
        .env_remove("CAIRNCONFIG")
        .env("HOME", dir)
        .output()
        .expect("run cairnctl")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn gen(dir: &Path) {
    let out = cairnctl(
        &["gen", "config", "lab", "https://10.5.0.2:6443", "-o", "out"],
        dir,
    );
    assert!(out.status.success(), "{}", stderr(&out));
}

/// A listening socket that no one may connect to.
fn tripwire() -> (TcpListener, String) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.set_nonblocking(true).unwrap();
    let addr = l.local_addr().unwrap().to_string();
    (l, addr)
}

fn untouched(l: &TcpListener) -> bool {
    matches!(l.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

#[test]
fn an_invalid_config_is_not_sent() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    gen(d);
    let text = std::fs::read_to_string(d.join("out/controlplane.yaml")).unwrap();
    std::fs::write(
        d.join("bad.yaml"),
        text.replace("10.244.0.0/16", "10.244.0.0/33"),
    )
    .unwrap();
    let (listener, node) = tripwire();

    let out = cairnctl(
        &["apply-config", "--insecure", "-n", &node, "-f", "bad.yaml"],
        d,
    );
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("bad.yaml: document 2 (ClusterConfig), line "),
        "{err}"
    );
    assert!(err.contains("cluster.network.podSubnets[0]"), "{err}");
    assert!(err.contains("not sent"), "{err}");
    assert!(
        untouched(&listener),
        "cairnctl connected although the config is invalid"
    );

    // A patch that breaks the config is caught the same way.
    let out = cairnctl(
        &[
            "apply-config",
            "--insecure",
            "-n",
            &node,
            "-f",
            "out/controlplane.yaml",
            "-p",
            "cluster: {network: {podSubnets: [nonsense]}}",
        ],
        d,
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("makes the config invalid"),
        "{}",
        stderr(&out)
    );
    assert!(untouched(&listener));
}

#[test]
fn unreachable_nodes_get_advice_and_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    gen(d);
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let node = format!("127.0.0.1:{port}");
    let out = cairnctl(
        &["--cairnconfig", "out/cairnconfig", "-e", &node, "services"],
        d,
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        format!("error: connection refused: is the node up and is {node} its apid port?\n")
    );
    assert_eq!(stdout(&out), "", "no table header without rows");

    // A node behind the context's endpoint (set to the closed port, so
    // nothing leaves this machine): the endpoint is named.
    let out = cairnctl(
        &[
            "--cairnconfig",
            "out/cairnconfig",
            "config",
            "endpoint",
            &node,
        ],
        d,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = cairnctl(
        &[
            "--cairnconfig",
            "out/cairnconfig",
            "-n",
            "10.5.0.7",
            "services",
        ],
        d,
    );
    assert_eq!(
        stderr(&out),
        format!("error: through endpoint {node}: connection refused: is the node up and is {node} its apid port?\n")
    );

    // Two nodes: each error names its node.
    let out = cairnctl(
        &[
            "--insecure",
            "-n",
            &format!("{node},{node}"),
            "memory",
            "-o",
            "json",
        ],
        d,
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stdout(&out).trim(), "[]");
    assert_eq!(
        stderr(&out)
            .matches(&format!("error: {node}: connection refused"))
            .count(),
        2
    );

    // No client config at all (HOME is the empty temp dir).
    let out = cairnctl(&["-n", &node, "services"], d);
    assert!(
        stderr(&out).contains("no client config"),
        "{}",
        stderr(&out)
    );
    // read refuses several nodes before connecting.
    let out = cairnctl(&["--insecure", "-n", "a,b", "read", "/etc/hosts"], d);
    assert!(
        stderr(&out).contains("read works on one node at a time"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn config_verbs_edit_the_cairnconfig() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    gen(d);
    // merge into the default ~/.cairn/config (HOME is the temp dir).
    let out = cairnctl(&["config", "merge", "out/cairnconfig"], d);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = cairnctl(&["config", "merge", "out/cairnconfig"], d);
    assert!(
        stderr(&out).contains("added context lab as lab-1"),
        "{}",
        stderr(&out)
    );
    let out = cairnctl(&["config", "context", "lab"], d);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = cairnctl(&["config", "endpoint", "127.0.0.1:50001", "10.5.0.3"], d);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = cairnctl(&["--context", "lab-1", "config", "node", "10.5.0.9"], d);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = cairnctl(&["config", "contexts"], d);
    assert_eq!(
        stdout(&out),
        "CURRENT   NAME    ENDPOINTS                  NODES\n\
         *         lab     127.0.0.1:50001,10.5.0.3\n\
         \x20         lab-1   10.5.0.2                   10.5.0.9\n"
    );
    let out = cairnctl(&["config", "endpoint", "a:b"], d);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("expected host or host:port"),
        "{}",
        stderr(&out)
    );
    let out = cairnctl(&["config", "context", "nope"], d);
    assert!(
        stderr(&out).contains("no context named \"nope\""),
        "{}",
        stderr(&out)
    );
}
