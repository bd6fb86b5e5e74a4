//! `cairnctl gen`, `validate` and `machineconfig patch`, run as a user
//! would: the built binary, real files in a temporary directory.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn cairnctl(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cairnctl"))
        .args(args)
        .current_dir(dir)
        .env_remove("CAIRNCONFIG")
        .output()
        .expect("run cairnctl")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/tests/broken")
}

#[test]
fn gen_config_then_validate() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = cairnctl(
        &[
            "gen",
            "config",
            "demo",
            "https://10.5.0.2:6443",
            "-o",
            "out",
        ],
        d,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    for f in ["controlplane.yaml", "worker.yaml", "cairnconfig"] {
        assert_eq!(mode(&d.join("out").join(f)), 0o600, "{f} must be 0600");
    }
    for f in ["out/controlplane.yaml", "out/worker.yaml"] {
        let v = cairnctl(&["validate", "-f", f], d);
        assert_eq!(v.status.code(), Some(0), "{f}: {}", stderr(&v));
        assert!(String::from_utf8_lossy(&v.stdout).contains("valid"));
    }
    // No install disk was given: metal mode must reject it.
    let v = cairnctl(&["validate", "-f", "out/worker.yaml", "--mode", "metal"], d);
    assert_eq!(v.status.code(), Some(1));
    let err = stderr(&v);
    assert!(
        err.starts_with("out/worker.yaml: document 1 (MachineConfig), line "),
        "{err}"
    );
    assert!(
        err.contains(": machine.install.disk: required in metal mode"),
        "{err}"
    );

    // The client config is loadable and points at the endpoint.
    let client = config::client::ClientConfig::load(&d.join("out/cairnconfig")).unwrap();
    let (name, ctx) = client.context(None).unwrap();
    assert_eq!(name, "demo");
    assert_eq!(ctx.endpoints, ["10.5.0.2"]);

    // Existing files are not overwritten without --force.
    let before = std::fs::read(d.join("out/controlplane.yaml")).unwrap();
    let again = cairnctl(
        &[
            "gen",
            "config",
            "demo",
            "https://10.5.0.2:6443",
            "-o",
            "out",
        ],
        d,
    );
    assert_eq!(again.status.code(), Some(1));
    assert!(
        stderr(&again).contains("refusing to overwrite"),
        "{}",
        stderr(&again)
    );
    assert_eq!(
        std::fs::read(d.join("out/controlplane.yaml")).unwrap(),
        before
    );
    let forced = cairnctl(
        &[
            "gen",
            "config",
            "demo",
            "https://10.5.0.2:6443",
            "-o",
            "out",
            "--force",
        ],
        d,
    );
    assert!(forced.status.success(), "{}", stderr(&forced));
    assert_ne!(
        std::fs::read(d.join("out/controlplane.yaml")).unwrap(),
        before,
        "new secrets"
    );
}

#[test]
fn gen_secrets_and_reuse_them() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let s = cairnctl(&["gen", "secrets", "-o", "secrets.yaml"], d);
    assert!(s.status.success(), "{}", stderr(&s));
    assert_eq!(mode(&d.join("secrets.yaml")), 0o600);
    let again = cairnctl(&["gen", "secrets", "-o", "secrets.yaml"], d);
    assert_eq!(again.status.code(), Some(1));

    let args = [
        "gen",
        "config",
        "demo",
        "https://10.5.0.2:6443",
        "--with-secrets",
        "secrets.yaml",
        "--install-disk",
        "/dev/vda",
        "--kubernetes-version",
        "v1.20.2",
        "--config-patch-control-plane",
        "machine: {network: {hostname: cp-1}}",
        "--config-patch-worker",
        "@worker-patch.json",
        "-o",
        "out",
    ];
    std::fs::write(
        d.join("worker-patch.json"),
        r#"[{"op": "add", "path": "/machine/network", "value": {"hostname": "w-1"}}]"#,
    )
    .unwrap();
    let g = cairnctl(&args, d);
    assert!(g.status.success(), "{}", stderr(&g));
    let cp = std::fs::read_to_string(d.join("out/controlplane.yaml")).unwrap();
    let worker = std::fs::read_to_string(d.join("out/worker.yaml")).unwrap();
    assert!(cp.contains("hostname: cp-1") && worker.contains("hostname: w-1"));
    let bundle =
        config::SecretsBundle::parse(&std::fs::read(d.join("secrets.yaml")).unwrap()).unwrap();
    let parsed = config::MachineConfig::parse(cp.as_bytes()).unwrap();
    assert_eq!(
        config::SecretsBundle::from_config(&parsed).unwrap(),
        bundle,
        "the bundle's secrets were used"
    );
    for f in ["out/controlplane.yaml", "out/worker.yaml"] {
        let v = cairnctl(&["validate", "-f", f, "--mode", "metal"], d);
        assert_eq!(v.status.code(), Some(0), "{f}: {}", stderr(&v));
    }

    // A broken secrets bundle is reported with its field.
    std::fs::write(
        d.join("bad.yaml"),
        bundle.render().replace("bootstrapToken:", "bootstrapTokn:"),
    )
    .unwrap();
    let b = cairnctl(
        &[
            "gen",
            "config",
            "x",
            "https://1.2.3.4:6443",
            "--with-secrets",
            "bad.yaml",
            "-o",
            "o2",
        ],
        d,
    );
    assert_eq!(b.status.code(), Some(1));
    assert!(
        stderr(&b).contains("bad.yaml: document 1 (SecretsBundle)"),
        "{}",
        stderr(&b)
    );
    assert!(!d.join("o2/controlplane.yaml").exists());
}

/// Every file of the broken-config corpus: exit code 1 and exactly the
/// problems the library reports, each prefixed with the file name.
#[test]
fn validate_rejects_the_whole_corpus() {
    let dir = corpus_dir();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 30);
    for file in files {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let mode = if name.ends_with(".metal.yaml") {
            "metal"
        } else {
            "cloud"
        };
        let out = cairnctl(&["validate", "-f", &name, "--mode", mode], &dir);
        assert_eq!(out.status.code(), Some(1), "{name}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(!err.contains("panicked"), "{name}: {err}");
        let expected: String = std::fs::read_to_string(file.with_extension("expect"))
            .unwrap()
            .lines()
            .map(|l| format!("{name}: {l}\n"))
            .collect();
        assert_eq!(err, expected, "{name}");
    }
}

#[test]
fn machineconfig_patch() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    assert!(cairnctl(
        &["gen", "config", "demo", "https://10.5.0.2:6443", "-o", "."],
        d
    )
    .status
    .success());
    std::fs::write(
        d.join("net.yaml"),
        "machine:\n  network:\n    hostname: w-7\n    nameservers: [10.5.0.1]\n",
    )
    .unwrap();
    std::fs::write(
        d.join("ops.json"),
        r#"[{"op": "replace", "path": "/cluster/network/podSubnets/0", "value": "10.32.0.0/16"}]"#,
    )
    .unwrap();
    let out = cairnctl(
        &[
            "machineconfig",
            "patch",
            "worker.yaml",
            "-p",
            "@net.yaml",
            "-p",
            "@ops.json",
            "-o",
            "w7.yaml",
        ],
        d,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(mode(&d.join("w7.yaml")), 0o600);
    let text = std::fs::read_to_string(d.join("w7.yaml")).unwrap();
    assert!(text.contains("hostname: w-7") && text.contains("10.32.0.0/16"));
    assert_eq!(
        cairnctl(&["validate", "-f", "w7.yaml"], d).status.code(),
        Some(0)
    );

    // To stdout without -o.
    let out = cairnctl(
        &["machineconfig", "patch", "worker.yaml", "-p", "@net.yaml"],
        d,
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("hostname: w-7"));

    // A patch that breaks the config: exit 1, the patch and the field named.
    std::fs::write(
        d.join("bad.yaml"),
        "cluster:\n  network:\n    podSubnets: [10.244.0.0/33]\n",
    )
    .unwrap();
    let out = cairnctl(
        &["machineconfig", "patch", "worker.yaml", "-p", "@bad.yaml"],
        d,
    );
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("patch bad.yaml makes the config invalid"),
        "{err}"
    );
    assert!(
        err.contains(r#"cluster.network.podSubnets[0]: "10.244.0.0/33" is not a CIDR"#),
        "{err}"
    );
    let out = cairnctl(
        &[
            "machineconfig",
            "patch",
            "worker.yaml",
            "-p",
            "@missing.yaml",
        ],
        d,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("missing.yaml"));
}

#[test]
fn every_verb_has_help_with_an_example() {
    let dir = tempfile::tempdir().unwrap();
    for verb in [
        &["gen", "--help"][..],
        &["gen", "secrets", "--help"],
        &["gen", "config", "--help"],
        &["validate", "--help"],
        &["machineconfig", "--help"],
        &["machineconfig", "patch", "--help"],
    ] {
        let out = cairnctl(verb, dir.path());
        assert!(out.status.success());
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("Examples:\n  cairnctl "),
            "{verb:?} has no example:\n{text}"
        );
    }
}
