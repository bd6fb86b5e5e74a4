//! Running the real `cairnctl` binary, the way a user does.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::OnceLock;

/// Path of a freshly built `cairnctl` (`$CAIRNCTL` if set). Built once per
/// test process with the same cargo that runs the tests.
pub fn path() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        if let Some(p) = std::env::var_os("CAIRNCTL") {
            return PathBuf::from(p);
        }
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let out = Command::new(cargo)
            .args([
                "build",
                "-q",
                "-p",
                "ctl",
                "--bin",
                "cairnctl",
                "--message-format=json",
            ])
            .current_dir(crate::images::workspace_root())
            .stderr(std::process::Stdio::inherit())
            .output()
            .expect("running cargo build -p ctl");
        assert!(out.status.success(), "cargo build -p ctl failed");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["reason"] == "compiler-artifact" && v["target"]["name"] == "cairnctl")
            .find_map(|v| v["executable"].as_str().map(PathBuf::from))
            .expect("cargo build reported no cairnctl executable")
    })
    .clone()
}

/// Runs `cairnctl <args>` and returns its output.
pub fn run(args: &[&str]) -> Output {
    Command::new(path())
        .args(args)
        .env_remove("CAIRNCONFIG")
        .output()
        .expect("running cairnctl")
}

/// Runs `cairnctl <args>`, panicking with its stderr unless it succeeds;
/// returns stdout.
pub fn run_ok(args: &[&str]) -> String {
    let out = run(args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "cairnctl {} failed ({}):\n{}{}",
        args.join(" "),
        out.status,
        stdout,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}
